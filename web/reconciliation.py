"""The console's reconciliation pages (billing support): every agency's figures for a range of collection days, one
agency's figures with the charges behind them, and both as CSV (`billing/reconciliation.py`)."""

from __future__ import annotations

from datetime import date

from django.core.paginator import Paginator
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django_tenants.utils import tenant_context

from billing.reconciliation import (
    Position,
    ReconciledCharge,
    agency_reconciliation,
    agency_reconciliation_rows,
    reconciled,
    reconciliation_charges,
)
from tenants.models import Agency
from tenants.selectors import agency_business_date
from web.access import support_view
from web.csv_export import cell, csv_response, plain_amount
from web.forms import ReconciliationRangeForm

PAGE_SIZE = 100
AGENCIES_PER_PAGE = 50
FIGURES = (
    ("collected_minor", "Collected"),
    ("refunded_minor", "Refunded"),
    ("disputed_minor", "Disputed"),
    ("disputes_lost_minor", "Disputes lost"),
    ("paid_out_minor", "Paid out"),
    ("in_transit_minor", "In transit"),
    ("held_minor", "Held"),
)


def _range_form(request: HttpRequest, today: date) -> ReconciliationRangeForm:
    """The requested days, the current month by default."""
    data = {"date_from": today.replace(day=1).isoformat(), "date_to": today.isoformat(), **request.GET.dict()}
    form = ReconciliationRangeForm(data, positions=Position.choices)
    form.is_valid()
    return form


def _range(form: ReconciliationRangeForm, today: date) -> tuple[date, date]:
    if form.is_valid():
        return form.cleaned_data["date_from"], form.cleaned_data["date_to"]
    return today.replace(day=1), today


@support_view
def reconciliation(request: HttpRequest) -> HttpResponseBase:
    """Every agency's figures for the range (a page of agencies at a time; the CSV has them all), and whether each
    balances. Each agency's figures are read in its own schema, so a page costs the same however many there are."""
    today = timezone.now().date()
    form = _range_form(request, today)
    start, end = _range(form, today)
    agencies = Agency.objects.exclude(schema_name="public").order_by("name", "id")
    if request.GET.get("format") == "csv" and form.is_valid():
        return csv_response(
            f"reconciliation-{start}-{end}.csv",
            ["agency", "currency", "from", "to", *[label.lower() for _, label in FIGURES], "balanced"],
            (
                [
                    cell(row.agency),
                    row.currency,
                    start.isoformat(),
                    end.isoformat(),
                    *[plain_amount(getattr(row, name), row.currency) for name, _ in FIGURES],
                    "yes" if row.balanced else "no",
                ]
                for row in (
                    agency_reconciliation(agency=agency, date_from=start, date_to=end) for agency in agencies.iterator()
                )
            ),
        )
    page = Paginator(agencies, AGENCIES_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "console/reconciliation.html",
        {
            "form": form,
            "page": page,
            "rows": [
                (agency.name, agency_reconciliation(agency=agency, date_from=start, date_to=end))
                for agency in page.object_list
            ],
            "figures": FIGURES,
            "start": start,
            "end": end,
        },
        status=200 if form.is_valid() else 400,
    )


CSV_HEADER = [
    "agency",
    "collected_on",
    "client",
    "invoice",
    "installment",
    "charge",
    "gateway_reference",
    "currency",
    "amount",
    "collected",
    "refunded",
    "disputed",
    "disputes_lost",
    "net",
    "position",
    "payout",
    "paid_out_on",
]


def _csv_row(agency: Agency, row: ReconciledCharge) -> list:
    charge, currency = row.charge, row.charge.currency
    return [
        agency.schema_name,
        row.moved.collected_on.isoformat(),
        cell(charge.client.name),
        cell(charge.invoice.number),
        charge.installment,
        str(charge.public_id),
        cell(charge.paid_reference),
        currency,
        plain_amount(charge.amount_minor, currency),
        plain_amount(row.moved.collected_minor, currency),
        plain_amount(row.moved.refunded_minor, currency),
        plain_amount(row.moved.disputed_minor, currency),
        plain_amount(row.moved.disputes_lost_minor, currency),
        plain_amount(row.net_minor, currency),
        row.position.label,
        cell(charge.payout_reference),
        charge.paid_out_on.isoformat() if charge.paid_out_on else "",
    ]


@support_view
def agency_reconciliation_page(request: HttpRequest, slug: str) -> HttpResponseBase:
    """One agency's figures for the range and the charges behind them (a position at a time, or all)."""
    agency = get_object_or_404(Agency, schema_name=slug)
    today = agency_business_date(agency, timezone.now())
    form = _range_form(request, today)
    start, end = _range(form, today)
    if request.GET.get("format") == "csv" and form.is_valid():
        rows = agency_reconciliation_rows(agency=agency, date_from=start, date_to=end)
        return csv_response(
            f"reconciliation-{agency.schema_name}-{start}-{end}.csv",
            CSV_HEADER,
            (_csv_row(agency, row) for row in rows),
        )
    figures = agency_reconciliation(agency=agency, date_from=start, date_to=end)
    position = form.cleaned_data.get("position", "") if form.is_valid() else ""
    with tenant_context(agency):
        charges = reconciliation_charges(date_from=start, date_to=end, position=position or None).order_by(
            "due_on", "id"
        )
        page = Paginator(charges, PAGE_SIZE).get_page(request.GET.get("page"))
        rows = reconciled(page.object_list, date_from=start, date_to=end)
    query = {"date_from": start.isoformat(), "date_to": end.isoformat()}
    return render(
        request,
        "console/agency_reconciliation.html",
        {
            "agency": agency,
            "form": form,
            "figures": [
                (label, getattr(figures, name), figures.counts[name.removesuffix("_minor")]) for name, label in FIGURES
            ],
            "reconciliation": figures,
            "page": page,
            "rows": rows,
            "position": position,
            "query": "&".join(f"{k}={v}" for k, v in query.items()),
            "positions": Position.choices,
        },
        status=200 if form.is_valid() else 400,
    )
