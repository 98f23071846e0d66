"""Margins: for each client and billing month, what the client was billed (by category) beside what the platform
billed the agency for that client (license fee, share of usage), the margin and its trend (billing/margins.py).
For the roles that see every client with amounts."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from billing.margins import ClientMargin, client_margins, month_margins
from billing.overview import months_with_invoices
from core.calendar import add_months
from core.categories import BillingCategory
from web.access import business_today, shows_amounts, staff_view
from web.agency.common import C, client_for, parse_month
from web.csv_export import cell, csv_response, plain_amount

BILLED_CATEGORIES = [c for c in BillingCategory.values if c != BillingCategory.TAXES_FEES]
LABELS = dict(BillingCategory.choices)


def _margins_view(view: Callable) -> Callable:
    """A Margins view: for staff who see billing (`staff_view`), and of those only the roles that see amounts."""

    @staff_view(C.VIEW_BILLING)
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not shows_amounts(request.user):  # type: ignore[arg-type]
            raise PermissionDenied("Your role sees statuses only.")
        return view(request, *args, **kwargs)

    return wrapper


def _default_month(agency):
    """The latest billing month with invoices (the clock may have billed ahead of today), else this month."""
    _, last = months_with_invoices()
    return last or business_today(agency).replace(day=1)


def _row(margin: ClientMargin, currency: str) -> list:
    return [
        *(plain_amount(margin.billed_by_category.get(c, 0), currency) for c in BILLED_CATEGORIES),
        plain_amount(margin.billed_minor, currency),
        plain_amount(margin.billed_taxes_minor, currency),
        plain_amount(margin.license_fee_minor, currency),
        plain_amount(margin.usage_minor, currency),
        plain_amount(margin.platform_minor, currency),
        plain_amount(margin.margin_minor, currency),
    ]


HEADER = [
    *(f"Billed: {LABELS[c]}" for c in BILLED_CATEGORIES),
    "Billed without taxes",
    "Taxes & fees billed",
    "Platform: license fee",
    "Platform: usage",
    "Platform total",
    "Margin",
]


@_margins_view
def margins_report(request: HttpRequest) -> HttpResponse:
    agency = request.tenant  # type: ignore[attr-defined]
    month = parse_month(request.GET.get("month")) or _default_month(agency)
    report = month_margins(agency=agency, month=month)
    if request.GET.get("format") == "csv":
        rows = (
            [cell(m.name), m.invoice_number, agency.currency, *_row(m, agency.currency)]
            for m in report.clients.values()
        )
        return csv_response(f"margins-{month:%Y-%m}.csv", ["Client", "Invoice", "Currency", *HEADER], rows)
    totals = {
        "billed": sum(m.billed_minor for m in report.clients.values()),
        "platform": sum(m.platform_minor for m in report.clients.values()),
        "margin": sum(m.margin_minor for m in report.clients.values()),
    }
    return render(
        request,
        "agency/margins.html",
        {
            "report": report,
            "month": month,
            "currency": agency.currency,
            "totals": totals,
            "prev_month": add_months(month, -1),
            "next_month": add_months(month, 1),
        },
    )


@_margins_view
def client_margins_csv(request: HttpRequest, public_id) -> HttpResponse:
    agency = request.tenant  # type: ignore[attr-defined]
    client = client_for(request, public_id)
    months = client_margins(agency=agency, client=client, last_month=_default_month(agency))
    rows = ([f"{m.month:%Y-%m}", m.invoice_number, agency.currency, *_row(m, agency.currency)] for m in months)
    return csv_response(f"margins-{client.public_id}.csv", ["Month", "Invoice", "Currency", *HEADER], rows)


def client_margin_context(request: HttpRequest, client) -> dict:
    """The client page's Margins section: 12 months, oldest first, with the change from the month before."""
    agency = request.tenant  # type: ignore[attr-defined]
    months = client_margins(agency=agency, client=client, last_month=_default_month(agency))
    rows, previous = [], None
    for margin in months:
        if margin.billed_total_minor == 0 and margin.platform_minor == 0 and previous is None:
            continue  # no empty months before the client's first
        change = None if previous is None else margin.margin_minor - previous.margin_minor
        rows.append({"m": margin, "change": change})
        previous = margin
    return {"margin_rows": rows}
