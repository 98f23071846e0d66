"""INV-1 rendering helpers: the invoice's user-agent stylesheet (docs/performance.md, P4)."""

from __future__ import annotations

from importlib.resources import files

from billing.pdf import _renderer, invoice_ua_css

WEASYPRINT_UA = files("weasyprint").joinpath("css", "html5_ua.css").read_text("utf-8")


def test_invoice_ua_css_keeps_markers_for_list_items_only_and_drops_footnote_rules():
    css = invoice_ua_css(WEASYPRINT_UA)
    assert not [line for line in css.splitlines() if line.startswith("::")]
    assert "li::marker, summary::marker {" in css
    assert "::footnote-call" not in css and "::note-call" not in css
    # Every other rule is WeasyPrint's own.
    kept = [line for line in WEASYPRINT_UA.splitlines() if not line.startswith("::")]
    assert [line for line in css.splitlines() if not line.startswith("li::marker")] == kept


def test_invoice_html_cascade_uses_the_invoice_ua_stylesheet():
    """The override is a WeasyPrint method, not a public option: fail here if an upgrade stops calling it."""
    from weasyprint.css import get_all_computed_styles

    renderer = _renderer()
    fetcher = renderer.fetcher
    html = renderer.html_class(string="<p>Invoice <strong>1</strong></p>", url_fetcher=fetcher)
    style_for = get_all_computed_styles(html)
    pseudo = [pseudo_type for (_element, pseudo_type) in style_for._computed_styles if pseudo_type]
    assert pseudo == []
    plain = type(html).__mro__[1](string="<p>Invoice <strong>1</strong></p>", url_fetcher=fetcher)
    assert [p for (_e, p) in get_all_computed_styles(plain)._computed_styles if p], "WeasyPrint's own sheet"
