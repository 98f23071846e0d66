"""A run is complete or says it is not: the system packages the commands need are installed or named
(scripts/system-packages), and a skipped test fails the run unless ALLOW_INCOMPLETE=1 accepts it (last line)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


def _packages(tmp_path: Path, *, uid: int, installed: set[str], apt_ok: bool = True) -> subprocess.CompletedProcess:
    """scripts/system-packages against stand-ins for dpkg-query, id, apt-get and docker on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / "apt-calls"
    cases = " ".join(sorted(installed)) or "none"
    _stub(
        bin_dir,
        "dpkg-query",
        f'for p in {cases}; do [ "$p" = "$3" ] && {{ printf "install ok installed"; exit 0; }}; done; exit 1',
    )
    _stub(bin_dir, "id", f"echo {uid}")
    _stub(bin_dir, "apt-get", f'echo "$@" >> {record}; exit {0 if apt_ok else 100}')
    _stub(bin_dir, "docker", "exit 1")  # a client without the compose plugin
    for tool in ("bash", "grep", "date", "mktemp", "tail", "rm", "cat"):
        if not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(shutil.which(tool))
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}  # only the stand-ins and the basic tools
    result = subprocess.run(
        [str(ROOT / "scripts" / "system-packages"), "test"], env=env, capture_output=True, text=True, timeout=30
    )
    result.apt_calls = record.read_text().splitlines() if record.exists() else []  # type: ignore[attr-defined]
    return result


def test_missing_packages_are_named_in_one_line_with_the_command_when_not_root(tmp_path):
    result = _packages(tmp_path, uid=1000, installed={"libpango-1.0-0", "libpangoft2-1.0-0", "fonts-dejavu-core"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "missing Debian packages: libharfbuzz-subset0 chromium fonts-liberation poppler-utils curl jq" in lines[0]
    assert "docker-compose" in lines[0]  # no compose client: the Debian one is named
    assert "apt-get update && apt-get install -y --no-install-recommends" in lines[0]
    assert result.apt_calls == []


def test_missing_packages_are_installed_as_root_after_apt_get_update(tmp_path):
    result = _packages(tmp_path, uid=0, installed={"chromium", "fonts-liberation", "curl", "jq", "poppler-utils"})
    assert result.returncode == 0, result.stderr
    assert result.apt_calls[0] == "update -qq"
    assert result.apt_calls[1].startswith("install -y -qq --no-install-recommends")
    assert result.apt_calls[1].split()[4:] == [
        "libpango-1.0-0",
        "libpangoft2-1.0-0",
        "fonts-dejavu-core",
        "libharfbuzz-subset0",
        "docker-compose",
        "pgbouncer",  # the multi-host test's pool (tests/cluster)
    ]


def test_a_failed_install_stops_with_the_command(tmp_path):
    result = _packages(tmp_path, uid=0, installed=set(), apt_ok=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: could not install libpango-1.0-0")


def test_nothing_is_done_when_everything_is_there(tmp_path):
    everything = {"libpango-1.0-0", "libpangoft2-1.0-0", "fonts-dejavu-core", "libharfbuzz-subset0", "chromium"}
    everything |= {"fonts-liberation", "poppler-utils", "curl", "jq", "pgbouncer"}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "docker-compose", "exit 0")
    result = _packages(tmp_path, uid=1000, installed=everything)
    assert result.returncode == 0 and result.stderr == "" and result.apt_calls == []


def _pytest_with_a_skip(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text("from tests.complete_run import pytest_sessionfinish, pytest_unconfigure\n")
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n\ndef test_runs():\n    pass\n\ndef test_skips():\n    pytest.skip('no such package')\n"
    )
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "ALLOW_INCOMPLETE"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "."],
        cwd=tmp_path,
        # Only pytest and the hooks under test: no installed plugin (Django, Playwright, …) is loaded.
        env={**child_env, "PYTHONPATH": str(ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_skipped_test_fails_the_run_and_its_last_line_says_so(tmp_path):
    result = _pytest_with_a_skip(tmp_path)
    assert result.returncode == 1, result.stdout
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("error: 1 test was skipped") and "ALLOW_INCOMPLETE=1" in last


def test_allow_incomplete_accepts_skips_and_still_says_so(tmp_path):
    result = _pytest_with_a_skip(tmp_path, ALLOW_INCOMPLETE="1")
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip().splitlines()[-1] == "incomplete run: 1 test was skipped (ALLOW_INCOMPLETE=1)"
