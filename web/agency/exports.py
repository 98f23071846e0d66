"""CSV exports of the Billing Overview: the Client Charges table as shown (month, status, search, sort — every
page of it), and invoices or charges of a date range."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.permissions import sees_only_own_clients
from billing.models import Charge
from billing.overview import attempt_count, invoice_status, months_with_invoices
from billing.statuses import ChargeStatus
from clients.models import Client
from web.access import business_today, shows_amounts, staff_view, visible_invoices
from web.agency.common import SEE_BILLING
from web.agency.overview import filtered_charges, overview_query
from web.csv_export import cell, csv_response, plain_amount
from web.forms import ExportRangeForm

STATUS_LABELS = dict(ChargeStatus.choices)


def _charge_rows(charges, amounts: bool):
    for charge in charges.iterator(chunk_size=1000):
        row = [cell(charge.client.name), charge.invoice.number, charge.installment, charge.due_on.isoformat()]
        if amounts:
            row += [plain_amount(charge.amount_minor, charge.currency), charge.currency]
        row += [
            STATUS_LABELS.get(charge.status, charge.status),
            charge.attempt_count,
            charge.next_retry_on.isoformat() if charge.next_retry_on else "",
            charge.paid_on.isoformat() if charge.paid_on else "",
        ]
        yield row


def _charge_header(amounts: bool) -> list[str]:
    head = ["Client", "Invoice", "Installment", "Due date"]
    if amounts:
        head += ["Amount", "Currency"]
    return head + ["Status", "Attempts", "Next retry", "Paid on"]


@staff_view(SEE_BILLING)
def overview_csv(request: HttpRequest) -> HttpResponse:
    """The Client Charges rows the page shows for the same query string, all pages of them."""
    agency, user = request.tenant, request.user  # type: ignore[attr-defined]
    scope = Client.objects.filter(salesperson=user) if sees_only_own_clients(user) else None  # type: ignore[arg-type]
    today_month = business_today(agency).replace(day=1)
    _, last = months_with_invoices(scope)
    query = overview_query(request, today_month if last is None or last >= today_month else last)
    amounts = shows_amounts(user)  # type: ignore[arg-type]
    suffix = f"-{query.status.lower()}" if query.status else ""
    return csv_response(
        f"client-charges-{query.month:%Y-%m}{suffix}.csv",
        _charge_header(amounts),
        _charge_rows(filtered_charges(query, scope), amounts),
    )


@staff_view(SEE_BILLING)
def range_csv(request: HttpRequest) -> HttpResponse:
    """Invoices (by billing date) or charges (by due date) of a date range, for the clients the user sees."""
    form = ExportRangeForm(request.GET or None)
    if not form.is_valid():
        return render(request, "agency/export_range.html", {"form": form}, status=400 if request.GET else 200)
    user = request.user
    kind, start, end = form.cleaned_data["kind"], form.cleaned_data["start"], form.cleaned_data["end"]
    amounts = shows_amounts(user)  # type: ignore[arg-type]
    invoices = visible_invoices(user)  # type: ignore[arg-type]
    name = f"{kind}-{start:%Y-%m-%d}-to-{end:%Y-%m-%d}.csv"
    if kind == "charges":
        charges = (
            Charge.objects.filter(invoice__in=invoices, due_on__gte=start, due_on__lte=end)
            .select_related("client", "invoice")
            .annotate(attempt_count=attempt_count())
            .order_by("due_on", "client__name", "installment", "id")
        )
        return csv_response(name, _charge_header(amounts), _charge_rows(charges, amounts))

    def rows():
        selected = (
            invoices.filter(due_on__gte=start, due_on__lte=end)
            .select_related("client")
            .prefetch_related("charges")
            .order_by("due_on", "number")
        )
        for invoice in selected.iterator(chunk_size=1000):
            row = [
                invoice.number,
                cell(invoice.client.name),
                invoice.period_start.isoformat(),
                invoice.period_end.isoformat(),
                invoice.due_on.isoformat(),
            ]
            if amounts:
                row += [
                    plain_amount(invoice.subtotal_minor, invoice.currency),
                    plain_amount(invoice.tax_minor, invoice.currency),
                    plain_amount(invoice.total_minor, invoice.currency),
                    invoice.currency,
                ]
            status = invoice_status(c.status for c in invoice.charges.all())
            yield [*row, STATUS_LABELS.get(status, status)]

    head = ["Invoice", "Client", "Period start", "Period end (exclusive)", "Billing date"]
    if amounts:
        head += ["Subtotal", "Taxes & fees", "Total", "Currency"]
    return csv_response(name, [*head, "Status"], rows())
