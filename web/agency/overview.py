"""Billing Overview (INV-2) and the invoice PDFs it links to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from accounts.permissions import has_capability, sees_only_own_clients
from billing.books import (
    agency_balance_minor,
    agency_balance_summary,
    agency_invoice_open,
    agency_invoice_payments,
    agency_invoice_status,
    agency_invoices,
)
from billing.overview import (
    agency_invoice_for_month,
    invoice_status,
    month_charges,
    month_summary,
    months_with_invoices,
    twelve_months,
)
from billing.pdf import agency_invoice_pdf, invoice_pdf, pdf_filename
from billing.platform.models import AgencyInvoice
from billing.statuses import ChargeStatus
from clients.models import Client
from core.calendar import add_months
from web.access import business_today, shows_amounts, staff_view, visible_invoices
from web.agency.common import PAGE_SIZE, SEE_BILLING, C, is_htmx, parse_month, pdf_response
from web.charts import build_chart
from web.forms import ExportRangeForm

# Sort keys of the Client Charges table: what the header links send, and the ORDER BY each means. Client name is
# the default (an index serves it, docs/performance.md P3); every key ends with a unique column.
SORTS = {
    "client": ("client__name", "installment", "id"),
    "amount": ("amount_minor", "id"),
    "status": ("status", "client__name", "id"),
    "due": ("due_on", "client__name", "id"),
    "invoice": ("invoice__number", "installment", "id"),
}
SEARCH_MAX = 100


@dataclass(frozen=True)
class OverviewQuery:
    """What the Client Charges table shows: month, status, search and sort, read from the query string (anything
    unknown falls back to its default) and written back into every link and the CSV export."""

    month: date
    status: str
    q: str
    sort: str

    @property
    def order_by(self) -> tuple[str, ...]:
        key = self.sort.lstrip("-")
        columns = SORTS.get(key, SORTS["client"])
        if self.sort.startswith("-"):
            return tuple(f"-{c}" for c in columns)
        return columns

    def params(self, **changes) -> str:
        values = {"month": self.month.strftime("%Y-%m"), "status": self.status, "q": self.q, "sort": self.sort}
        values.update(changes)
        return urlencode({k: v for k, v in values.items() if v and not (k == "sort" and v == "client")})

    def sort_link(self, key: str) -> dict:
        current = self.sort.lstrip("-") == key
        descending = current and self.sort.startswith("-")
        target = key if (not current or descending) else f"-{key}"
        return {
            "key": key,
            "params": self.params(sort=target, page=""),
            "current": current,
            "arrow": " ↓" if descending else " ↑",
            "aria_sort": ("descending" if descending else "ascending") if current else "none",
        }


def overview_query(request: HttpRequest, default_month: date) -> OverviewQuery:
    status = request.GET.get("status", "")
    sort = request.GET.get("sort", "client")
    return OverviewQuery(
        month=parse_month(request.GET.get("month")) or default_month,
        status=status if status in ChargeStatus.values else "",
        q=request.GET.get("q", "").strip()[:SEARCH_MAX],
        sort=sort if sort.lstrip("-") in SORTS else "client",
    )


def filtered_charges(query: OverviewQuery, scope):
    """The month's charges as the table shows them: status filter, search on the client's name or the invoice
    number, sort."""
    charges = month_charges(month=query.month, clients=scope)
    if query.status:
        charges = charges.filter(status=query.status)
    if query.q:
        charges = charges.filter(Q(client__name__icontains=query.q) | Q(invoice__number__icontains=query.q))
    return charges.order_by(*query.order_by)


@staff_view(SEE_BILLING)
def billing_overview(request: HttpRequest) -> HttpResponse:
    agency, user = request.tenant, request.user  # type: ignore[attr-defined]
    own = sees_only_own_clients(user)  # type: ignore[arg-type]
    scope = Client.objects.filter(salesperson=user) if own else None
    amounts = shows_amounts(user)  # type: ignore[arg-type]
    today_month = business_today(agency).replace(day=1)
    first, last = months_with_invoices(scope)
    query = overview_query(request, today_month if last is None or last >= today_month else last)
    month = query.month
    all_charges = month_charges(month=month, clients=scope)
    summary = month_summary(all_charges)
    page = Paginator(filtered_charges(query, scope), PAGE_SIZE).get_page(request.GET.get("page"))
    latest = max(filter(None, [today_month, last]))
    chart = None
    if amounts:
        months = twelve_months(last_month=month, clients=scope)
        # No empty months before the agency's first invoice: the chart starts there (at most 12 months).
        months = [m for m in months if first is not None and m.month >= first] or months[-1:]
        chart = build_chart(months, agency.currency)
    context = {
        "month": month,
        "query": query,
        "status": query.status,
        "page": page,
        "summary": summary,
        "amounts": amounts,
        "own": own,
        "currency": agency.currency,
        "prev_month": add_months(month, -1) if first is not None and first < month else None,
        "next_month": add_months(month, 1) if month < latest else None,
        "statuses": [
            (s, ChargeStatus(s).label, summary.by_status.get(s, {}).get("count", 0), query.params(status=s))
            for s in ChargeStatus.values
        ],
        "all_params": query.params(status=""),
        "sorts": {key: query.sort_link(key) for key in SORTS},
        "agency_invoice": (
            agency_invoice_for_month(agency_id=agency.pk, month=month) if has_capability(user, C.VIEW_BILLING) else None
        ),  # type: ignore[arg-type]
        "chart": chart,
        "range_form": ExportRangeForm(initial={"start": month, "end": add_months(month, 1) - timedelta(days=1)}),
    }
    if context["agency_invoice"] is not None:
        context["agency_invoice_status"] = invoice_status(c.status for c in context["agency_invoice"].charges.all())
        context.update(platform_books_context(agency, [context["agency_invoice"]], breakdown=False))
    template = (
        "agency/_charges.html"
        if is_htmx(request) and request.headers.get("HX-Target") == "charges"
        else "agency/overview.html"
    )
    return render(request, template, context)


def platform_books_context(agency, invoices: list[AgencyInvoice], *, breakdown: bool = True) -> dict:
    """The agency's own books beside its platform invoices (PAY-3): the payments applied to each invoice, and what
    the agency owes the platform now (with how it adds up, or only the sum: the Billing Overview keeps within its
    query budget, P3). A constant number of queries for any number of invoices."""
    payments = agency_invoice_payments(invoices)
    return {
        "platform_rows": [
            {
                "invoice": invoice,
                "status": agency_invoice_status(list(invoice.charges.all())),
                "payments": payments[invoice.pk],
                "paid_minor": sum(p.amount_minor for p in payments[invoice.pk]),
                "open_minor": agency_invoice_open(invoice, payments[invoice.pk]),
            }
            for invoice in invoices
        ],
        "platform_balance": agency_balance_summary(agency=agency) if breakdown else None,
        "platform_owed_minor": agency_balance_minor(agency=agency),
    }


@staff_view(C.VIEW_BILLING)
def platform_invoices(request: HttpRequest) -> HttpResponse:
    """Every invoice of the platform to the agency, newest first, with its charges, attempts and payments."""
    agency = request.tenant  # type: ignore[attr-defined]
    page = Paginator(agency_invoices(agency=agency).order_by("-period_start", "id"), 24).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "agency/platform_invoices.html",
        {"page": page, "currency": agency.currency, **platform_books_context(agency, list(page.object_list))},
    )


@staff_view(SEE_BILLING)
def client_invoice_pdf(request: HttpRequest, public_id) -> HttpResponse:
    """A client's invoice PDF: only for clients the user may see (404 otherwise, TEN-2); amounts are not for
    a Jr. Salesperson (ROLE-1)."""
    user = request.user
    invoice = get_object_or_404(visible_invoices(user), public_id=public_id)  # type: ignore[arg-type]
    if not shows_amounts(user):  # type: ignore[arg-type]
        raise PermissionDenied("Your role sees statuses only.")
    return pdf_response(invoice_pdf(invoice=invoice, agency=request.tenant), pdf_filename(invoice))  # type: ignore[attr-defined]


@staff_view(C.VIEW_BILLING)
def agency_invoice_pdf_view(request: HttpRequest, public_id) -> HttpResponse:
    invoice = get_object_or_404(
        AgencyInvoice.objects.select_related("agency"), public_id=public_id, agency_id=request.tenant.pk
    )  # type: ignore[attr-defined]
    return pdf_response(agency_invoice_pdf(invoice=invoice), pdf_filename(invoice))
