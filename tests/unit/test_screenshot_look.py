"""The browser tests replace a committed screenshot only when the page's look changed (tests/browser/conftest.py)."""

from __future__ import annotations

from PIL import Image, ImageDraw

from tests.browser.conftest import look_changed


def _page(path, size=(200, 100), *, box=None, colour=(0, 0, 0)):
    image = Image.new("RGB", size, (255, 255, 255))
    if box:
        ImageDraw.Draw(image).rectangle(box, fill=colour)
    image.save(path)
    return path


def test_a_date_sized_difference_keeps_the_committed_screenshot(tmp_path):
    old = _page(tmp_path / "old.png", box=(10, 10, 20, 20))
    new = _page(tmp_path / "new.png", box=(12, 10, 22, 20))  # a few characters moved: 2 columns of 11 pixels
    assert not look_changed(old, new)


def test_another_size_or_a_visible_change_replaces_it(tmp_path):
    old = _page(tmp_path / "old.png")
    assert look_changed(old, _page(tmp_path / "taller.png", size=(200, 140)))
    assert look_changed(old, _page(tmp_path / "boxed.png", box=(0, 0, 49, 9)))  # 500 of 20,000 pixels: 2.5 %
    assert not look_changed(old, _page(tmp_path / "faint.png", box=(0, 0, 99, 99), colour=(250, 250, 250)))
    assert look_changed(tmp_path / "missing.png", old)
