"""Billing Overview (INV-2) and the invoice PDFs it links to."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from accounts.permissions import has_capability, sees_only_own_clients
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


@staff_view(SEE_BILLING)
def billing_overview(request: HttpRequest) -> HttpResponse:
    agency, user = request.tenant, request.user  # type: ignore[attr-defined]
    own = sees_only_own_clients(user)  # type: ignore[arg-type]
    scope = Client.objects.filter(salesperson=user) if own else None
    amounts = shows_amounts(user)  # type: ignore[arg-type]
    today_month = business_today(agency).replace(day=1)
    first, last = months_with_invoices(scope)
    month = parse_month(request.GET.get("month"))
    if month is None:
        month = today_month if last is None or last >= today_month else last
    status = request.GET.get("status", "")
    if status not in ChargeStatus.values:
        status = ""
    charges = month_charges(month=month, clients=scope)
    summary = month_summary(charges)
    if status:
        charges = charges.filter(status=status)
    page = Paginator(charges, PAGE_SIZE).get_page(request.GET.get("page"))
    latest = max(filter(None, [today_month, last]))
    context = {
        "month": month,
        "status": status,
        "page": page,
        "summary": summary,
        "amounts": amounts,
        "own": own,
        "currency": agency.currency,
        "prev_month": add_months(month, -1) if first is not None and first < month else None,
        "next_month": add_months(month, 1) if month < latest else None,
        "statuses": [
            (s, ChargeStatus(s).label, summary.by_status.get(s, {}).get("count", 0)) for s in ChargeStatus.values
        ],
        "agency_invoice": (
            agency_invoice_for_month(agency_id=agency.pk, month=month) if has_capability(user, C.VIEW_BILLING) else None
        ),  # type: ignore[arg-type]
        "chart": build_chart(twelve_months(last_month=month, clients=scope), agency.currency) if amounts else None,
    }
    if context["agency_invoice"] is not None:
        context["agency_invoice_status"] = invoice_status(c.status for c in context["agency_invoice"].charges.all())
    template = (
        "agency/_charges.html"
        if is_htmx(request) and request.headers.get("HX-Target") == "charges"
        else "agency/overview.html"
    )
    return render(request, template, context)


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
