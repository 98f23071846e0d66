"""Browser tests: Playwright drives the system Chromium against Django's live server.

Agencies are reached at `<slug>.localhost:<port>`; Chromium resolves every `*.localhost` name to loopback.
Screenshots of each main page, at desktop and phone widths, land in `artifacts/screenshots/` (git-ignored).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
PASSWORD = "pw-correct-horse-9"


@pytest.hookimpl(trylast=True)  # after pytest-django's own ordering
def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    browser_items = [item for item in items if here in Path(item.fspath).parents]
    # Browser tests last: the Playwright event loop they start lives until the end of the session.
    others = [item for item in items if here not in Path(item.fspath).parents]
    items[:] = others + browser_items
    for item in browser_items:
        item.add_marker(pytest.mark.browser)
        if not Path(CHROMIUM).exists():
            item.add_marker(
                pytest.mark.skip(reason=f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
            )


@pytest.fixture(scope="package", autouse=True)
def _async_unsafe_allowed():
    """Playwright's sync API keeps an event loop running in the test thread from the first browser test to
    the end of the session, and the tests' database work is synchronous code on that thread. The browser
    tests run last (see pytest_collection_modifyitems), so the variable is set only once no other test
    (e.g. a `check --deploy` subprocess, which refuses it) is left to see it."""
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": shutil.which(CHROMIUM) or CHROMIUM,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--disable-sync",
            "--disable-quic",
        ],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": DESKTOP, "accept_downloads": True, "locale": "en-US"}


@pytest.fixture
def site(live_server):
    """URLs of the live server by host: site("alpha", "/billing/"), site(None, "/") for the platform."""
    port = live_server.url.rsplit(":", 1)[1]

    def url(slug: str | None, path: str = "/") -> str:
        host = f"{slug}.localhost" if slug else "localhost"
        return f"http://{host}:{port}{path}"

    return url


# axe-core rules of WCAG 2.1 levels A and AA; a page may have no violation of impact "serious" or "critical"
# (contrast, names of controls and links, labels, landmarks, ARIA misuse). Minor and moderate findings are
# recorded in artifacts/accessibility.json for a person to review.
AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}
BLOCKING_IMPACTS = ("serious", "critical")


def accessibility_violations(page, name: str) -> list[str]:
    """axe-core's WCAG A/AA findings on the current page, appended to artifacts/accessibility.json; returns the
    blocking ones as readable lines."""
    from axe_playwright_python.sync_playwright import Axe

    found = Axe().run(page, options=AXE_OPTIONS).response["violations"]
    report = SCREENSHOTS.parent / "accessibility.json"
    pages = json.loads(report.read_text()) if report.exists() else {}
    pages[name] = [
        {
            "id": v["id"],
            "impact": v["impact"],
            "nodes": len(v["nodes"]),
            "targets": [n["target"] for n in v["nodes"][:5]],
        }
        for v in found
    ]
    report.write_text(json.dumps(pages, indent=1))
    return [
        f"{name}: {v['id']} ({v['impact']}) on {[n['target'] for n in v['nodes'][:3]]}: {v['help']}"
        for v in found
        if v["impact"] in BLOCKING_IMPACTS
    ]


def screenshot(page, name: str) -> None:
    """The current page at desktop and at phone width (full page), then back to desktop; at each width the page
    is scanned with axe-core and must have no serious or critical WCAG 2.1 A/AA violation."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    blocking: list[str] = []
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
        blocking += accessibility_violations(page, f"{name}-{label}")
    page.set_viewport_size(DESKTOP)
    assert not blocking, "\n".join(blocking)


def sign_in(page, url: str, email: str, password: str = PASSWORD) -> None:
    page.goto(url)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state("networkidle")


@pytest.fixture
def page(page):
    """Every browser test fails if Chromium reports a Content-Security-Policy violation (a blocked script,
    style or frame): the policy is enforced, so a violation is a broken page."""
    violations: list[str] = []

    def on_console(message) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            violations.append(f"{page.url} ({message.location}): {message.text}")

    page.on("console", on_console)
    yield page
    assert not violations, "\n".join(violations)
