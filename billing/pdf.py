"""Invoice PDFs (INV-1), rendered in-process with WeasyPrint from `templates/pdf/invoice.html`.

A PDF shows the agency's branding (logo, colour, address), the lines grouped by billing category, taxes,
totals, status, period and number. It is stored once and served from storage afterwards (MON-3: the
invoice row's `pdf` path may be set once, by database trigger). It is stored as soon as the invoice's
status is settled (Paid, Paid Out, Agency Invoiced): before that the status printed on it may still
change, so it is rendered fresh on each download and nothing is stored.

`invoice_pdf` runs in the invoice's agency schema; `agency_invoice_pdf` in any schema (public tables).
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import re
import threading
from datetime import timedelta
from importlib.resources import files

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import connection
from django.db.models import Model
from django.template.loader import render_to_string

from billing.models import BillingSettings, Invoice
from billing.overview import invoice_status, is_settled, lines_by_category
from billing.platform.models import AgencyInvoice
from billing.statuses import ChargeStatus
from core.money import format_minor
from tenants.models import Agency

logger = logging.getLogger(__name__)

PLATFORM_NAME = "agencybilling"


LOGO_SCHEME = "invoice-logo:"


def _logo(agency: Agency) -> tuple[str, tuple[bytes, str] | None]:
    """The logo's URL for the invoice and its bytes and type. The URL names the content (its SHA-256) and the
    renderer's URL fetcher answers it from memory, so rendering needs no URL fetching and works with any
    storage backend. Not a data: URI in the HTML: the HTML parser read a large logo's base64 text character by
    character (80 ms for a 550 KB PNG), and WeasyPrint keeps decoded images by URL (docs/performance.md, P4)."""
    if not agency.logo:
        return "", None
    try:
        with agency.logo.open("rb") as handle:
            data = handle.read()
    except OSError:
        logger.warning("logo of agency %s is missing from storage", agency.schema_name)
        return "", None
    mime = mimetypes.guess_type(agency.logo.name)[0] or "image/png"
    return LOGO_SCHEME + hashlib.sha256(data).hexdigest(), (data, mime)


def _money(amount_minor: int, currency: str) -> str:
    return format_minor(amount_minor, currency)


def _document(
    *, invoice, kind: str, issuer: dict, recipient: dict, branding: dict, category_order: list[str], statuses: list[str]
) -> dict:
    lines = list(invoice.lines.all())
    groups, taxes = lines_by_category(lines, category_order)
    status = invoice_status(statuses)
    currency = invoice.currency

    def row(line) -> dict:
        return {
            "description": line.description,
            "quantity": line.quantity,
            "unit": _money(line.unit_amount_minor, currency),
            "amount": _money(line.amount_minor, currency),
        }

    return {
        "kind": kind,
        "number": invoice.number,
        "currency": currency,
        "period_start": invoice.period_start,
        "period_last_day": invoice.period_end - timedelta(days=1),
        "issued_on": invoice.issued_on,
        "due_on": invoice.due_on,
        "statuses": statuses,
        "status": status,
        "status_label": ChargeStatus(status).label,
        "groups": [
            {"label": g.label, "lines": [row(x) for x in g.lines], "total": _money(g.total_minor, currency)}
            for g in groups
        ],
        "taxes": [row(x) for x in taxes],
        "subtotal": _money(invoice.subtotal_minor, currency),
        "tax": _money(invoice.tax_minor, currency),
        "total": _money(invoice.total_minor, currency),
        "issuer": issuer,
        "recipient": recipient,
        "branding": branding,
    }


def _branding(agency: Agency) -> dict:
    logo, logo_image = _logo(agency)
    return {
        "name": agency.name,
        "color": agency.brand_color or DEFAULT_BRAND_COLOR,
        "logo": logo,
        "logo_image": logo_image,
        "address": agency.address,
    }


_fetchers = threading.local()

# WeasyPrint's user-agent stylesheet styles every element's ::marker and footnote/note pseudo-elements
# (`::marker { … }`, `::footnote-call { … }`, …): the cascade then computes six pseudo-element styles for each
# element of the invoice, which has no list items, footnotes or notes. The same stylesheet with those rules
# kept only where they can apply (list items and <summary>) cut the style step by about 40 % (docs/performance.md,
# P4); everything else in it is unchanged.
_UNIVERSAL_PSEUDO_RULE = re.compile(r"^::([a-z-]+)\s*\{", re.MULTILINE)


def invoice_ua_css(source: str) -> str:
    """WeasyPrint's user-agent stylesheet without rules that give every element a pseudo-element style."""
    found = _UNIVERSAL_PSEUDO_RULE.findall(source)
    if "marker" not in found:
        raise RuntimeError("WeasyPrint's user-agent stylesheet changed: review billing.pdf.invoice_ua_css")
    lines = []
    for line in source.splitlines():
        match = _UNIVERSAL_PSEUDO_RULE.match(line)
        if match is None:
            lines.append(line)
        elif match.group(1) == "marker":
            lines.append("li::marker, summary::marker" + line[len("::marker") :])
        # footnote and note pseudo-elements only exist for `float: footnote`, which invoices do not use
    return "\n".join(lines)


class _Renderer:
    """What every render of this thread shares: see `_renderer`."""

    def __init__(self) -> None:
        from weasyprint import CSS, HTML
        from weasyprint.text.fonts import FontConfiguration
        from weasyprint.urls import URLFetcher, URLFetcherResponse

        class InvoiceURLFetcher(URLFetcher):
            """data: and file: URLs, and the logo of the invoice being rendered from memory."""

            def __init__(self) -> None:
                super().__init__(allowed_protocols=("data", "file"))
                self.logos: dict[str, tuple[bytes, str]] = {}

            def fetch(self, url, headers=None):
                if url.startswith(LOGO_SCHEME):
                    data, mime = self.logos[url]
                    return URLFetcherResponse(url, body=data, headers={"Content-Type": mime})
                return super().fetch(url, headers)

        self.fetcher, self.fonts = InvoiceURLFetcher(), FontConfiguration()
        # Decoded images by URL (WeasyPrint's `cache` option); logo URLs name their content, so a kept entry
        # is never stale. Bounded: emptied when it grows past a few agencies' logos.
        self.images: dict = {}
        self.stylesheet = CSS(filename=str(INVOICE_CSS), url_fetcher=self.fetcher, font_config=self.fonts)
        ua = CSS(
            string=invoice_ua_css(files("weasyprint").joinpath("css", "html5_ua.css").read_text("utf-8")),
            url_fetcher=self.fetcher,
        )
        self._brands: dict[str, object] = {}

        class InvoiceHTML(HTML):
            # WeasyPrint has no public option for the user-agent stylesheet; this is the method its cascade
            # asks (weasyprint 70, pinned in requirements.lock; tests/unit/test_pdf.py checks it is used).
            def _ua_stylesheets(self, forms=False):
                return [ua]

        self.html_class = InvoiceHTML

    def brand_stylesheet(self, color: str):
        """The agency's colour rules, parsed once per colour (a handful of colours per process in practice)."""
        if not _BRAND_COLOR.match(color):
            color = DEFAULT_BRAND_COLOR
        sheet = self._brands.get(color)
        if sheet is None:
            from weasyprint import CSS

            if len(self._brands) >= 256:
                self._brands.clear()
            sheet = self._brands[color] = CSS(string=BRAND_CSS.replace("BRAND", color), url_fetcher=self.fetcher)
        return sheet


def _renderer() -> _Renderer:
    """A URL fetcher, a font configuration, the parsed stylesheets and the HTML class per thread, kept across
    renders: WeasyPrint's defaults build the first two for every document (loading the system's TLS
    certificates, initialising fontconfig) and the stylesheets were parsed each time, most of a warm render
    (docs/performance.md, P4). Invoices only embed their logo, data: URIs and local files, so nothing else
    may be fetched: no request leaves the server while rendering."""
    kept = getattr(_fetchers, "kept", None)
    if kept is None:
        kept = _fetchers.kept = _Renderer()
    return kept


INVOICE_CSS = settings.BASE_DIR / "templates" / "pdf" / "invoice.css"
DEFAULT_BRAND_COLOR = "#2f5bd3"
_BRAND_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
BRAND_CSS = (
    ".bar { background: BRAND; } .agency-name { color: BRAND; } .lines th { border-bottom-color: BRAND; }"
    " .totals tr.total td { border-top-color: BRAND; }"
)


def render_pdf(context: dict) -> bytes:
    html = render_to_string("pdf/invoice.html", context)
    renderer = _renderer()
    branding = context["branding"]
    if branding.get("logo_image"):
        if len(renderer.fetcher.logos) >= 32:
            renderer.fetcher.logos.clear()
        renderer.fetcher.logos[branding["logo"]] = branding["logo_image"]
    if len(renderer.images) >= 64:
        renderer.images.clear()
    stylesheets = [renderer.stylesheet, renderer.brand_stylesheet(branding["color"])]
    return renderer.html_class(string=html, base_url=str(settings.BASE_DIR), url_fetcher=renderer.fetcher).write_pdf(
        stylesheets=stylesheets, font_config=renderer.fonts, cache=renderer.images
    )


def client_invoice_context(invoice: Invoice, agency: Agency) -> dict:
    order = list(BillingSettings.objects.values_list("category_order", flat=True).first() or [])
    client = invoice.client
    return _document(
        invoice=invoice,
        kind="client",
        branding=_branding(agency),
        issuer={"name": agency.name, "address": agency.address, "email": agency.email},
        recipient={"name": client.name, "email": client.email, "address": ""},
        category_order=order,
        statuses=[c.status for c in invoice.charges.all()],
    )


def agency_invoice_context(invoice: AgencyInvoice) -> dict:
    agency = invoice.agency
    return _document(
        invoice=invoice,
        kind="agency",
        branding=_branding(agency),
        issuer={"name": f"{PLATFORM_NAME} platform", "address": "", "email": settings.DEFAULT_FROM_EMAIL},
        recipient={"name": agency.name, "email": agency.email, "address": agency.address},
        category_order=[],
        statuses=[c.status for c in invoice.charges.all()],
    )


def _stored_or_render(*, invoice, model: type[Model], name: str, context_factory) -> bytes:
    field = invoice._meta.get_field("pdf")
    storage = field.storage
    if invoice.pdf:
        try:
            with storage.open(invoice.pdf.name, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            # Storage lost the file: render it again from the immutable rows, under the same name.
            logger.warning("stored PDF %s is missing; rendering it again", invoice.pdf.name)
            data = render_pdf(context_factory())
            storage.save(invoice.pdf.name, ContentFile(data))
            return data
    context = context_factory()
    data = render_pdf(context)
    if is_settled(context["statuses"]):
        saved = storage.save(name, ContentFile(data))
        # The first writer wins; the database trigger refuses any later change of the path (MON-3).
        if model.objects.filter(pk=invoice.pk, pdf="").update(pdf=saved):  # type: ignore[attr-defined]
            invoice.pdf.name = saved
        else:
            storage.delete(saved)
            invoice.refresh_from_db(fields=["pdf"])
            with storage.open(invoice.pdf.name, "rb") as handle:
                return handle.read()
    return data


def invoice_pdf(*, invoice: Invoice, agency: Agency | None = None) -> bytes:
    """The PDF of a client invoice; call inside its agency's schema."""
    if agency is None:
        from tenants.selectors import current_agency

        agency = current_agency()
    if agency is None:
        raise RuntimeError("invoice_pdf needs the invoice's agency schema")
    schema = connection.schema_name  # type: ignore[attr-defined]
    return _stored_or_render(
        invoice=invoice,
        model=Invoice,
        name=f"invoices/{schema}/{invoice.number}.pdf",
        context_factory=lambda: client_invoice_context(invoice, agency),
    )


def agency_invoice_pdf(*, invoice: AgencyInvoice) -> bytes:
    """The PDF of an agency (platform) invoice."""
    return _stored_or_render(
        invoice=invoice,
        model=AgencyInvoice,
        name=f"agency-invoices/{invoice.agency.schema_name}/{invoice.number}.pdf",
        context_factory=lambda: agency_invoice_context(invoice),
    )


def pdf_filename(invoice) -> str:
    return f"invoice-{invoice.number}.pdf"
