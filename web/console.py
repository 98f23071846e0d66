"""The billing-support console on the platform domain (public schema): find any client across agencies,
set or clear Agency Invoiced with a reason (COL-1), run a manual retry (RET-4), every agency's invoices,
and the audit trail of who changed what."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_tenants.utils import schema_context

from accounts.models import AuditEntry
from billing.models import Charge, Invoice, SupportRequest
from billing.overview import attempt_count, month_invoices
from billing.pdf import agency_invoice_pdf, invoice_pdf, pdf_filename
from billing.platform.models import AgencyCharge, AgencyInvoice, WebhookEvent, WebhookStatus
from billing.selectors import needs_attention
from billing.statuses import ChargeStatus
from billing.support import agency_charge_retry_run, agency_invoiced_clear, agency_invoiced_set, retry_run
from billing.webhooks import webhook_replay
from clients.models import Client
from core.calendar import add_months
from core.errors import ApplicationError, NotFound
from core.money import format_minor
from tenants.models import Agency
from web.access import business_today, support_view
from web.agency.common import parse_month, pdf_response
from web.audit import (
    CSV_HEADER,
    action_choices,
    agency_object_names,
    audit_filtered,
    csv_rows,
    readable,
)
from web.confirm import confirm_page, confirmed
from web.csv_export import csv_response
from web.forms import AuditFilterForm, ReasonForm, SearchForm
from web.onboarding import agency_onboarding_context

SEARCH_LIMIT = 25


def _agency(slug: str) -> Agency:
    return get_object_or_404(Agency, schema_name=slug)


@support_view
def console_home(request: HttpRequest) -> HttpResponse:
    """Open requests from every agency, then the agencies."""
    agencies = list(Agency.objects.prefetch_related("domains").select_related("plan"))
    open_requests, attention = [], []
    for agency in agencies:
        with schema_context(agency.schema_name):
            for req in (
                SupportRequest.objects.filter(status="OPEN").select_related("client", "charge").order_by("created_at")
            ):
                open_requests.append({"agency": agency, "request": req, "client": req.client, "charge": req.charge})
            attention += [{"agency": agency, **item} for item in needs_attention()]
    dead_letters = list(WebhookEvent.objects.filter(status=WebhookStatus.DEAD).order_by("-received_at")[:50])
    return render(
        request,
        "console/home.html",
        {
            "agencies": agencies,
            "open_requests": open_requests,
            "attention": attention,
            "dead_letters": dead_letters,
            "form": SearchForm(),
        },
    )


@require_POST
@support_view
def webhook_event_replay(request: HttpRequest, event_id: str) -> HttpResponse:
    """A dead-letter provider webhook sent through processing again (audited)."""
    try:
        webhook_replay(event_id=event_id, actor=request.user)
    except NotFound:
        raise Http404("No such webhook event.") from None
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Webhook event {event_id} is being processed again.")
    return redirect("home")


@support_view
def client_search(request: HttpRequest) -> HttpResponse:
    """Clients of every agency whose name or email contains the query."""
    form = SearchForm(request.GET or None)
    results = []
    query = form.cleaned_data["q"].strip() if form.is_valid() else ""
    if query:
        for agency in Agency.objects.all():
            with schema_context(agency.schema_name):
                found = Client.objects.filter(Q(name__icontains=query) | Q(email__icontains=query)).order_by("name")[
                    :SEARCH_LIMIT
                ]
                results.extend({"agency": agency, "client": c} for c in found)
            if len(results) >= SEARCH_LIMIT * 4:
                break
    return render(request, "console/search.html", {"form": form, "query": query, "results": results})


def _client_context(agency: Agency, client: Client) -> dict:
    charges = list(
        client.charges.select_related("invoice")
        .annotate(attempt_count=attempt_count())
        .prefetch_related("attempts")
        .order_by("-due_on", "-installment")[:12]
    )
    return {
        "agency": agency,
        "client": client,
        "charges": charges,
        "requests": list(SupportRequest.objects.filter(client=client).order_by("-created_at")[:10]),
        "audit": readable(
            entries := list(AuditEntry.objects.filter(object_id=str(client.public_id))[:20]),
            currency=agency.currency,
            names=agency_object_names(entries, link=_console_link(agency.schema_name)),
        ),
        "payment_method": client.payment_methods.filter(removed_at__isnull=True).first(),
        "retryable": (ChargeStatus.RETRYING, ChargeStatus.UNCOLLECTABLE),
        "currency": agency.currency,
    }


@support_view
def client_detail(request: HttpRequest, slug: str, public_id) -> HttpResponse:
    agency = _agency(slug)
    with schema_context(agency.schema_name):
        client = get_object_or_404(Client, public_id=public_id)
        context = _client_context(agency, client)
        context["reason_form"] = ReasonForm()
        return render(request, "console/client.html", context)


@require_POST
@support_view
def client_agency_invoiced(request: HttpRequest, slug: str, public_id) -> HttpResponse:
    """COL-1: set or clear Agency Invoiced, with a reason, in the agency's audit trail."""
    agency = _agency(slug)
    with schema_context(agency.schema_name):
        client = get_object_or_404(Client, public_id=public_id)
        form = ReasonForm(request.POST)
        if form.is_valid():
            try:
                if request.POST.get("action") == "clear":
                    agency_invoiced_clear(client=client, user=request.user, reason=form.cleaned_data["reason"])  # type: ignore[arg-type]
                    messages.success(request, f"{client.name} is no longer Agency Invoiced.")
                else:
                    agency_invoiced_set(
                        client=client,
                        user=request.user,
                        reason=form.cleaned_data["reason"],  # type: ignore[arg-type]
                        today=business_today(agency),
                    )
                    messages.success(request, f"{client.name} is now Agency Invoiced.")
            except ApplicationError as exc:
                form.apply_error(exc)
            else:
                return redirect("console-client", slug=slug, public_id=client.public_id)
        context = _client_context(agency, client)
        context["reason_form"] = form
        return render(request, "console/client.html", context, status=400)


@require_POST
@support_view
def charge_retry(request: HttpRequest, slug: str, public_id, charge_id) -> HttpResponse:
    """RET-4: run a manual retry now; the attempt is recorded with its outcome and gateway reference."""
    agency = _agency(slug)
    with schema_context(agency.schema_name):
        client = get_object_or_404(Client, public_id=public_id)
        charge = get_object_or_404(Charge, client=client, public_id=charge_id)
        if not confirmed(request):
            return confirm_page(
                request,
                title=f"Run a retry for {client.name}?",
                message=f"The client's payment method is charged {format_minor(charge.amount_minor, charge.currency)} "
                f"{charge.currency} now. A manual attempt counts like any other.",
                action_label="Run retry",
                cancel_url=reverse("console-client", kwargs={"slug": slug, "public_id": client.public_id}),
            )
        try:
            attempt = retry_run(charge=charge, user=request.user, today=business_today(agency))  # type: ignore[arg-type]
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            charge.refresh_from_db()
            outcome = attempt.get_outcome_display() if attempt else "no attempt was needed"  # type: ignore[attr-defined]
            messages.success(request, f"Retry run: {outcome}. The charge is {charge.get_status_display()}.")  # type: ignore[attr-defined]
    return redirect("console-client", slug=slug, public_id=public_id)


@require_POST
@support_view
def agency_charge_retry(request: HttpRequest, public_id) -> HttpResponse:
    """RET-4 on the agency's own invoice (PAY-3): run a manual retry of a platform charge now."""
    charge = get_object_or_404(AgencyCharge.objects.select_related("agency", "invoice"), public_id=public_id)
    back = reverse("console-invoices") + f"?agency={charge.agency.schema_name}"
    if not confirmed(request):
        return confirm_page(
            request,
            title=f"Run a retry of {charge.invoice.number}?",
            message=f"{charge.agency.name}'s payment method is charged "
            f"{format_minor(charge.amount_minor, charge.currency)} {charge.currency} now. A manual attempt counts "
            "like any other.",
            action_label="Run retry",
            cancel_url=back,
        )
    try:
        attempt = agency_charge_retry_run(charge=charge, user=request.user, today=business_today(charge.agency))  # type: ignore[arg-type]
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        charge.refresh_from_db()
        outcome = attempt.get_outcome_display() if attempt else "no attempt was needed"  # type: ignore[attr-defined]
        messages.success(request, f"Retry run: {outcome}. {charge.invoice.number} is {charge.get_status_display()}.")
    return redirect(back)


@support_view
def invoices(request: HttpRequest) -> HttpResponse:
    """Every agency's invoices (the platform's invoices to agencies), newest first."""
    agency_slug = request.GET.get("agency", "")
    invoices = (
        AgencyInvoice.objects.select_related("agency")
        .prefetch_related("charges__attempts")
        .order_by("-period_start", "agency__name")
    )
    if agency_slug:
        invoices = invoices.filter(agency__schema_name=agency_slug)
    page = Paginator(invoices, 50).get_page(request.GET.get("page"))
    return render(
        request, "console/invoices.html", {"page": page, "agencies": Agency.objects.all(), "agency_slug": agency_slug}
    )


@support_view
def agency_detail(request: HttpRequest, slug: str) -> HttpResponse:
    """One agency: its client invoices of a month (with their PDFs) and its platform invoices."""
    agency = _agency(slug)
    month = parse_month(request.GET.get("month")) or business_today(agency).replace(day=1)
    with schema_context(agency.schema_name):
        client_invoices = list(
            month_invoices(month).select_related("client").prefetch_related("charges").order_by("number")[:200]
        )
    return render(
        request,
        "console/agency.html",
        {
            "agency": agency,
            "month": month,
            "client_invoices": client_invoices,
            "prev_month": add_months(month, -1),
            "next_month": add_months(month, 1),
            "agency_invoices": AgencyInvoice.objects.filter(agency=agency).prefetch_related("charges")[:24],
            **agency_onboarding_context(agency),
        },
    )


@support_view
def agency_invoice_pdf_view(request: HttpRequest, public_id) -> HttpResponse:
    invoice = get_object_or_404(AgencyInvoice.objects.select_related("agency"), public_id=public_id)
    return pdf_response(agency_invoice_pdf(invoice=invoice), pdf_filename(invoice))


@support_view
def client_invoice_pdf(request: HttpRequest, slug: str, public_id) -> HttpResponse:
    agency = _agency(slug)
    with schema_context(agency.schema_name):
        invoice = get_object_or_404(Invoice.objects.select_related("client"), public_id=public_id)
        return pdf_response(invoice_pdf(invoice=invoice, agency=agency), pdf_filename(invoice))


def _console_link(slug: str):
    def link(kind: str, object_id: str) -> str:
        if kind == "client":
            return reverse("console-client", kwargs={"slug": slug, "public_id": object_id})
        return ""

    return link


AUDIT_LIMIT = 300


@support_view
def audit_trail(request: HttpRequest) -> HttpResponse:
    """Who changed what, in words: pricing, status overrides, template edits, settings, users — from every
    agency's audit log and the platform's, newest first; filter by agency, action and days; CSV of the same."""
    slug = request.GET.get("agency", "")
    agencies = list(Agency.objects.order_by("name"))
    if slug:
        agencies = [a for a in agencies if a.schema_name == slug]
        if not agencies:
            raise Http404
    codes: set[str] = set()
    for agency in agencies:
        with schema_context(agency.schema_name):
            codes |= set(AuditEntry.objects.order_by().values_list("action", flat=True).distinct())
    codes |= set(AuditEntry.objects.order_by().values_list("action", flat=True).distinct())
    form = AuditFilterForm(request.GET or None, actions=action_choices(codes))
    filters = form.cleaned_data if form.is_valid() else {}
    items = []
    for agency in agencies:
        with schema_context(agency.schema_name):
            rows = list(audit_filtered(AuditEntry.objects.all(), **_audit_args(filters))[:AUDIT_LIMIT])
            names = agency_object_names(rows, link=_console_link(agency.schema_name))
            items.extend(readable(rows, currency=agency.currency, names=names, agency_name=agency.name))
    if not slug:
        rows = list(audit_filtered(AuditEntry.objects.all(), **_audit_args(filters))[:AUDIT_LIMIT])
        items.extend(readable(rows, currency="USD", names={}, agency_name=""))
    items.sort(key=lambda item: (item.when, item.entry.pk), reverse=True)
    items = items[:AUDIT_LIMIT]
    if request.GET.get("format") == "csv" and form.is_valid():
        return csv_response(
            "audit-trail.csv", ["When (UTC)", "Agency", *CSV_HEADER[1:]], csv_rows(items, with_agency=True)
        )
    return render(
        request,
        "console/audit.html",
        {
            "items": items,
            "agencies": Agency.objects.order_by("name"),
            "slug": slug,
            "form": form,
            "csv_query": request.GET.urlencode(),
            "limit": AUDIT_LIMIT,
        },
        status=200 if form.is_valid() or not request.GET else 400,
    )


def _audit_args(filters: dict) -> dict:
    return {"action": filters.get("action") or "", "start": filters.get("start"), "end": filters.get("end")}
