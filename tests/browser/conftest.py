"""Browser tests: Playwright drives the system Chromium against Django's live server.

Agencies are reached at `<slug>.localhost:<port>`; Chromium resolves every `*.localhost` name to loopback.
Screenshots of every page, at desktop (1440 px) and phone (390 px) widths, land in `artifacts/screenshots/` (committed).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
DESKTOP = {"width": 1440, "height": 900}
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


# axe-core, vendored from npm (tests/browser/vendor/README.md), evaluated in the page under test: its WCAG 2.0, 2.1
# and 2.2 A/AA rules and its best practices. A page passes with no violation at all, whatever its impact; every
# finding is also written to artifacts/accessibility.json.
AXE_VERSION = "4.14.1"
AXE_SOURCE = Path(__file__).parent / "vendor" / "axe.min.js"
AXE_OPTIONS = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"],
    },
    "resultTypes": ["violations"],
}


def accessibility_violations(page, name: str) -> list[str]:
    """axe-core's findings on the current page, appended to artifacts/accessibility.json, as readable lines."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        # Evaluated through the DevTools protocol, so the page's Content-Security-Policy does not apply to it.
        page.evaluate(AXE_SOURCE.read_text())
    assert page.evaluate("() => window.axe.version") == AXE_VERSION
    found = page.evaluate("options => window.axe.run(document, options)", AXE_OPTIONS)["violations"]
    report = SCREENSHOTS.parent / "accessibility.json"
    report.parent.mkdir(parents=True, exist_ok=True)
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
    return [f"{name}: {v['id']} ({v['impact']}) on {[n['target'] for n in v['nodes'][:3]]}: {v['help']}" for v in found]


def horizontal_overflow(page) -> str | None:
    """None when nothing is wider than the viewport; else the widths and the widest element sticking out."""
    return page.evaluate(
        """() => {
        const width = window.innerWidth, doc = document.documentElement.scrollWidth;
        if (doc <= width) return null;
        let widest = null;
        for (const el of document.querySelectorAll('body *')) {
            const r = el.getBoundingClientRect();
            if (r.right > width + 1 && (!widest || r.right > widest.right)) {
                const cls = typeof el.className === 'string' ? el.className : '';
                widest = {tag: el.tagName, id: el.id, cls: cls, right: Math.round(r.right)};
            }
        }
        return `scrollWidth ${doc} > innerWidth ${width}; widest ${JSON.stringify(widest)}`;
    }"""
    )


def _small_png(path: Path) -> None:
    """Screenshots are committed: a 128-colour palette keeps them a fraction of the size and still legible."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


# A committed screenshot is replaced only when the page's look changed: another size, or more than this share of
# its pixels visibly different. Dates, ids and anti-aliasing differ from run to run; rewriting every file on every
# run would bury a real change of look in noise.
LOOK_CHANGED_SHARE = 0.01


def look_changed(old: Path, new: Path) -> bool:
    from PIL import Image, ImageChops

    if not old.exists():
        return True
    with Image.open(old) as before, Image.open(new) as after:
        if before.size != after.size:
            return True
        difference = ImageChops.difference(before.convert("RGB"), after.convert("RGB")).convert("L")
        visible = difference.point(lambda level: 255 if level > 24 else 0).histogram()[255]
        return visible > LOOK_CHANGED_SHARE * before.size[0] * before.size[1]


def keep_screenshot(page, path: Path, *, full_page: bool = True) -> None:
    """Photograph the page (small palette) into `path`, unless the committed one looks the same."""
    fresh = path.with_name(f".{path.stem}-{os.getpid()}.png")
    page.screenshot(path=str(fresh), full_page=full_page)
    _small_png(fresh)
    if look_changed(path, fresh):
        os.replace(fresh, path)
    else:
        fresh.unlink()


def screenshot(page, name: str) -> None:
    """The current page at desktop (1440 px) and phone (390 px) width, full page, into artifacts/screenshots/; at
    each width: no horizontal overflow and no axe-core violation."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.wait_for_timeout(50)
        if overflow := horizontal_overflow(page):
            problems.append(f"{name}-{label}: wider than the viewport: {overflow}")
        keep_screenshot(page, SCREENSHOTS / f"{name}-{label}.png")
        problems += accessibility_violations(page, f"{name}-{label}")
    page.set_viewport_size(DESKTOP)
    assert not problems, "\n".join(problems)


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
