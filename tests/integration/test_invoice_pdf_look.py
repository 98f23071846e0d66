"""INV-1, as a reader sees it: the invoice PDF turned into pixels by poppler's `pdftoppm` shows an A4 page with
the agency's colour in its brand bar (text read back with pypdf cannot show colours)."""

from __future__ import annotations

import subprocess
from datetime import date
from io import BytesIO

import pytest
from django_tenants.utils import schema_context
from PIL import Image

from billing.models import Invoice
from billing.pdf import invoice_pdf
from tests.ui_helpers import billed_agency

pytestmark = pytest.mark.django_db


def _first_page(pdf: bytes) -> Image.Image:
    png = subprocess.run(
        ["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "1", "-"], input=pdf, capture_output=True, check=True
    ).stdout
    return Image.open(BytesIO(png)).convert("RGB")


def _pixels_near(image: Image.Image, colour: tuple[int, int, int], top_share: float) -> int:
    width, height = image.size
    top = image.crop((0, 0, width, int(height * top_share)))
    data = top.tobytes()  # RGB, 3 bytes a pixel
    pixels = (data[i : i + 3] for i in range(0, len(data), 3))
    return sum(1 for pixel in pixels if max(abs(c - w) for c, w in zip(pixel, colour, strict=True)) <= 12)


def test_INV_1_pdf_page_is_a4_with_the_agency_colour_in_its_brand_bar(agency_a):
    agency_a.brand_color = "#aa3366"
    agency_a.save(update_fields=["brand_color"])
    scenario = billed_agency(agency_a, months=(date(2027, 1, 1),))
    with schema_context(scenario.agency.schema_name):
        invoice = Invoice.objects.get(client=scenario.declining)  # not settled: rendered on every read
        page = _first_page(invoice_pdf(invoice=invoice))
        width, height = page.size
        assert abs(height / width - 297 / 210) < 0.02, "A4 portrait"
        assert _pixels_near(page, (0xAA, 0x33, 0x66), top_share=0.15) > width, "the brand bar in the agency's colour"
        type(agency_a).objects.filter(pk=agency_a.pk).update(brand_color="#118844")
        scenario.agency.refresh_from_db()
        repainted = _first_page(invoice_pdf(invoice=invoice, agency=scenario.agency))
        assert _pixels_near(repainted, (0xAA, 0x33, 0x66), top_share=0.15) == 0
        assert _pixels_near(repainted, (0x11, 0x88, 0x44), top_share=0.15) > width


def test_INV_1_a_month_of_every_category_fits_one_page_and_the_closing_words_stay_with_the_totals(agency_a):
    """A typical month — a license, two Agency Services lines, two products and two overages under four
    headings, two taxes, the payment facts and the closing sentence — is one A4 page (P4's invoice). A longer
    invoice breaks between lines, and its totals keep the closing sentence on their page."""
    from pypdf import PdfReader

    from billing.pdf import client_invoice_context, render_pdf

    agency_a.address = "1 Main Street\nSpringfield"
    agency_a.save(update_fields=["address"])
    scenario = billed_agency(agency_a, months=(date(2027, 1, 1),))
    with schema_context(scenario.agency.schema_name):
        context = client_invoice_context(Invoice.objects.get(client=scenario.paying), scenario.agency)
    line = {"description": "Listings — overage", "quantity": 15, "unit": "0.07", "amount": "1.05"}

    def groups(*sizes: int) -> list[dict]:
        return [{"label": f"Group {n}", "lines": [line] * size, "total": "9.99"} for n, size in enumerate(sizes)]

    def pages(context: dict) -> list[str]:
        return [page.extract_text() for page in PdfReader(BytesIO(render_pdf(context))).pages]

    assert context["payment"].get("sentences"), "the closing sentence is part of the page"
    context["taxes"] = [{**line, "description": "City tax (2 %)"}, {**line, "description": "County tax (1.5 %)"}]
    one = pages({**context, "groups": groups(1, 2, 2, 4)})
    assert len(one) == 1, one
    long = pages({**context, "groups": groups(12, 12, 12, 12)})
    assert len(long) >= 2
    closing = context["payment"]["sentences"][0][:20]
    last = long[-1]
    assert closing.lower() in last.lower() and "Amount due" in last and "Subtotal" in last
