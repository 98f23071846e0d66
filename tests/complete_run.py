"""Nothing is skipped silently: a skipped test fails the run, and the run's last line says so; ALLOW_INCOMPLETE=1
accepts an incomplete run (the last line still says it was). A missing system package shows up here as the skip
of the tests that need it; `scripts/system-packages` installs them. Hooks of tests/conftest.py; no Django here."""

from __future__ import annotations

import os

import pytest

ALLOW_INCOMPLETE = "ALLOW_INCOMPLETE"
_INCOMPLETE_LINE = pytest.StashKey[str]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped test fails the run: nothing is skipped silently (a missing system package shows up here;
    `scripts/system-packages` installs them). ALLOW_INCOMPLETE=1 accepts skips; the run's last line says so."""
    if hasattr(session.config, "workerinput"):
        return  # a pytest-xdist worker: the controller sees every report and decides
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if not skipped:
        return
    allowed = os.environ.get(ALLOW_INCOMPLETE) == "1"
    noun = "test was" if skipped == 1 else "tests were"
    if allowed:
        session.config.stash[_INCOMPLETE_LINE] = f"incomplete run: {skipped} {noun} skipped ({ALLOW_INCOMPLETE}=1)"
    else:
        session.config.stash[_INCOMPLETE_LINE] = (
            f"error: {skipped} {noun} skipped (reasons above): a complete run skips nothing; "
            f"run scripts/system-packages test, or set {ALLOW_INCOMPLETE}=1 to accept an incomplete run"
        )
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    line = config.stash.get(_INCOMPLETE_LINE, None)
    if line:
        # After pytest's own summary line, so it is the run's last line.
        config.get_terminal_writer().line(line, red=not line.startswith("incomplete"), bold=True)
