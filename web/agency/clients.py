"""Clients and Client Configuration (PLAN-2): price, taxes, Agency Services, support requests."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import BooleanField, Exists, ExpressionWrapper, OuterRef, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.permissions import has_capability
from billing.books import (
    client_balance_summary,
    client_ledger,
    client_overdue_state,
    entry_allocations,
    entry_open_minor,
)
from billing.models import Charge, PaymentMethod, RequestKind, SupportRequest
from billing.overview import (
    attempt_count,
)
from billing.selectors import client_next_invoice
from billing.statuses import ChargeStatus
from billing.support import agency_invoiced_request, retry_request
from clients.models import AgencyServiceLine, Client
from clients.selectors import client_needs_setup, needs_setup_condition
from clients.services import (
    client_configure,
    client_create,
    client_deactivate,
    client_reactivate,
    client_update,
    service_line_add,
    service_line_remove,
)
from core.categories import BillingCategory
from core.errors import ApplicationError
from core.money import format_minor
from notifications.selectors import notices_about_client
from web.access import business_today, shows_amounts, staff_view, visible_clients
from web.agency.common import PAGE_SIZE, SEE_BILLING, C, client_for, is_htmx
from web.agency.margins import client_margin_context
from web.confirm import confirm_page, confirmed
from web.forms import (
    ClientAccountForm,
    ClientConfigForm,
    ClientCreateForm,
    ReasonForm,
    SearchForm,
    ServiceLineForm,
)


@staff_view(SEE_BILLING)
def client_list(request: HttpRequest) -> HttpResponse:
    form = SearchForm(request.GET or None)
    clients = (
        visible_clients(request.user)
        .select_related("salesperson")
        .annotate(  # type: ignore[arg-type]
            has_method=Exists(PaymentMethod.objects.filter(client=OuterRef("pk"), removed_at__isnull=True)),
            needs_setup=ExpressionWrapper(needs_setup_condition(), output_field=BooleanField()),
        )
    )
    query = form.cleaned_data.get("q", "") if form.is_valid() else ""
    if query:
        clients = clients.filter(Q(name__icontains=query) | Q(email__icontains=query))
    show = request.GET.get("show", "")
    if show == "setup":
        clients = clients.filter(needs_setup_condition())
    elif show == "inactive":
        clients = clients.filter(deactivated_on__isnull=False)
    else:
        show = ""
    page = Paginator(clients.order_by("name", "id"), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "agency/client_list.html",
        {
            "form": form,
            "page": page,
            "query": query,
            "show": show,
            "amounts": shows_amounts(request.user),  # type: ignore[arg-type]
            "can_edit": has_capability(request.user, C.EDIT_CLIENT_CONFIG),  # type: ignore[arg-type]
            "currency": request.tenant.currency,  # type: ignore[attr-defined]
            "today": business_today(request.tenant),  # type: ignore[attr-defined]
        },
    )


def _config_initial(client: Client, currency: str) -> dict:
    return {
        "license_price": format_minor(client.license_price_minor, currency),
        "taxes": list(client.taxes.all()),
        "billing_day": client.billing_day,
        "autopay_days": ", ".join(str(d) for d in client.autopay_days),
        "salesperson": client.salesperson,
    }


LEDGER_ROWS = 12


def client_books_context(client: Client, *, currency: str, today) -> dict:
    """The Client Configuration page's Balance and Ledger sections: the numbers the API's balance and ledger
    operations give (billing/books.py), for the same client and day."""
    balance = client_balance_summary(client=client, currency=currency)
    entries = list(client_ledger(client=client).order_by("-occurred_on", "-id")[:LEDGER_ROWS])
    return {
        "balance": balance,
        "open_by_category": [(BillingCategory(c).label, amount) for c, amount in balance.open_by_category.items()],
        "overdue": client_overdue_state(client=client, today=today),
        "ledger": [(entry, entry_allocations(entry), entry_open_minor(entry)) for entry in entries],
    }


def _client_page(
    request: HttpRequest,
    client: Client,
    *,
    config_form=None,
    line_form=None,
    reason_form=None,
    account_form=None,
    next_invoice=None,
    preview: bool = False,
    status: int = 200,
) -> HttpResponse:
    agency, user = request.tenant, request.user  # type: ignore[attr-defined]
    can_edit = has_capability(user, C.EDIT_CLIENT_CONFIG)  # type: ignore[arg-type]
    if config_form is None:
        config_form = ClientConfigForm(
            initial=_config_initial(client, agency.currency),
            currency=agency.currency,
            agency_billing_day=agency.billing_day,
        )
    if not can_edit:
        for f in config_form.fields.values():
            f.disabled = True
    charges = list(
        client.charges.select_related("invoice")
        .annotate(attempt_count=attempt_count())
        .order_by("-due_on", "-installment")[:12]
    )
    requests = list(SupportRequest.objects.filter(client=client, status="OPEN"))
    margins = {}
    if has_capability(user, C.VIEW_BILLING) and shows_amounts(user):  # type: ignore[arg-type]
        margins = client_margin_context(request, client)
    retry_requested = {r.charge_id for r in requests if r.kind == RequestKind.RETRY}
    if next_invoice is None:
        next_invoice = client_next_invoice(
            agency=agency,
            client=client,
            today=business_today(agency),
            billing_day=client.billing_day,
            autopay_days=list(client.autopay_days),
        )
    return render(
        request,
        "agency/client_detail.html",
        {
            "client": client,
            "config_form": config_form,
            "can_edit": can_edit,
            "can_request": has_capability(user, C.REQUEST_SUPPORT),  # type: ignore[arg-type]
            "amounts": shows_amounts(user),
            "currency": agency.currency,  # type: ignore[arg-type]
            "lines": client.service_lines.filter(removed_at__isnull=True).order_by("id"),
            "line_form": line_form or ServiceLineForm(currency=agency.currency, initial={"taxable": True}),
            "reason_form": reason_form or ReasonForm(),
            "account_form": account_form or ClientAccountForm(initial={"name": client.name, "email": client.email}),
            "needs_setup": client_needs_setup(client),
            "holds": list(client.invoice_holds.filter(released_on__isnull=True).order_by("billing_date")),
            "show_margins": bool(margins),
            **margins,
            "today": business_today(agency),
            "payment_method": client.payment_methods.filter(removed_at__isnull=True).first(),
            "charges": charges,
            "next_invoice": next_invoice,
            "preview": preview,
            "retry_requested": retry_requested,
            "agency_invoiced_requested": any(r.kind == RequestKind.AGENCY_INVOICED for r in requests),
            "retryable": (ChargeStatus.RETRYING, ChargeStatus.UNCOLLECTABLE),
            **client_books_context(client, currency=agency.currency, today=business_today(agency)),
            # The notice log carries amounts, so it is for the roles that see them (as the API's notices list).
            "notices": list(notices_about_client(client_public_id=str(client.public_id))[:20])
            if shows_amounts(user)
            else [],  # type: ignore[arg-type]
        },
        status=status,
    )


@staff_view(SEE_BILLING)
def client_detail(request: HttpRequest, public_id) -> HttpResponse:
    client = client_for(request, public_id)
    if request.method != "POST":
        return _client_page(request, client)
    if not has_capability(request.user, C.EDIT_CLIENT_CONFIG):  # type: ignore[arg-type]
        raise PermissionDenied("Your role cannot change client configuration.")
    agency = request.tenant  # type: ignore[attr-defined]
    form = ClientConfigForm(request.POST, currency=agency.currency, agency_billing_day=agency.billing_day)
    if form.is_valid() and request.POST.get("preview"):
        # CYC-1: what the next invoice would be with the days typed in, before anything is saved.
        data = form.cleaned_data
        next_invoice = client_next_invoice(
            agency=agency,
            client=client,
            today=business_today(agency),
            billing_day=data["billing_day"],
            autopay_days=data["autopay_days"],
        )
        return _client_page(request, client, config_form=form, next_invoice=next_invoice, preview=True)
    if form.is_valid():
        data = form.cleaned_data
        try:
            client_configure(
                client=client,
                license_price_minor=data["license_price"],
                taxes=list(data["taxes"]),
                billing_day=data["billing_day"],
                autopay_days=data["autopay_days"],
                salesperson=data["salesperson"],
                actor=request.user,
            )  # type: ignore[arg-type]
        except ApplicationError as exc:
            form.apply_error(exc)
        else:
            messages.success(request, "Client configuration saved.")
            return redirect("client-detail", public_id=client.public_id)
    return _client_page(request, client, config_form=form, status=400)


def _lines_partial(request: HttpRequest, client: Client, line_form=None, status: int = 200) -> HttpResponse:
    agency = request.tenant  # type: ignore[attr-defined]
    return render(
        request,
        "agency/_service_lines.html",
        {
            "client": client,
            "lines": client.service_lines.filter(removed_at__isnull=True).order_by("id"),
            "line_form": line_form or ServiceLineForm(currency=agency.currency, initial={"taxable": True}),
            "can_edit": True,
            "amounts": True,
            "currency": agency.currency,
        },
        status=status,
    )


@require_POST
@staff_view(C.EDIT_CLIENT_CONFIG)
def service_line_create(request: HttpRequest, public_id) -> HttpResponse:
    client = client_for(request, public_id)
    form = ServiceLineForm(request.POST, currency=request.tenant.currency)  # type: ignore[attr-defined]
    if form.is_valid():
        try:
            service_line_add(
                client=client,
                description=form.cleaned_data["description"],
                amount_minor=form.cleaned_data["amount"],
                one_time=form.cleaned_data["one_time"],
                taxable=form.cleaned_data["taxable"],
                actor=request.user,
            )  # type: ignore[arg-type]
        except ApplicationError as exc:
            form.apply_error(exc)
        else:
            if is_htmx(request):
                return _lines_partial(request, client)
            messages.success(request, "Agency Services line added.")
            return redirect("client-detail", public_id=client.public_id)
    if is_htmx(request):
        return _lines_partial(request, client, form)
    return _client_page(request, client, line_form=form, status=400)


@require_POST
@staff_view(C.EDIT_CLIENT_CONFIG)
def service_line_delete(request: HttpRequest, public_id, line_id) -> HttpResponse:
    client = client_for(request, public_id)
    line = get_object_or_404(AgencyServiceLine, client=client, public_id=line_id)
    if not confirmed(request):
        return confirm_page(
            request,
            title=f"Remove “{line.description}”?",
            message=f"{client.name}'s next invoices will no longer carry this line; invoices already built keep it.",
            action_label="Remove line",
            cancel_url=reverse("client-detail", kwargs={"public_id": client.public_id}),
        )
    service_line_remove(line=line, actor=request.user)  # type: ignore[arg-type]
    if is_htmx(request):
        return _lines_partial(request, client)
    messages.success(request, "Agency Services line removed.")
    return redirect("client-detail", public_id=client.public_id)


@require_POST
@staff_view(C.REQUEST_SUPPORT)
def client_retry_request(request: HttpRequest, public_id, charge_id) -> HttpResponse:
    """RET-4: ask billing support for a manual retry."""
    client = client_for(request, public_id)
    charge = get_object_or_404(Charge, client=client, public_id=charge_id)
    try:
        retry_request(charge=charge, user=request.user, reason=request.POST.get("reason", ""))  # type: ignore[arg-type]
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Retry requested. Billing support will run it.")
    return redirect("client-detail", public_id=client.public_id)


@require_POST
@staff_view(C.REQUEST_SUPPORT)
def client_agency_invoiced_request(request: HttpRequest, public_id) -> HttpResponse:
    """COL-1: ask billing support to switch the client to Agency Invoiced."""
    client = client_for(request, public_id)
    form = ReasonForm(request.POST)
    if form.is_valid():
        try:
            agency_invoiced_request(
                client=client,
                user=request.user,  # type: ignore[arg-type]
                reason=form.cleaned_data["reason"],
            )
        except ApplicationError as exc:
            form.apply_error(exc)
        else:
            messages.success(request, "Agency Invoiced requested. Billing support will review it.")
            return redirect("client-detail", public_id=client.public_id)
    return _client_page(request, client, reason_form=form, status=400)


@staff_view(C.EDIT_CLIENT_CONFIG)
def client_new(request: HttpRequest) -> HttpResponse:
    """Add a client with its configuration: the API's create, with the same service and rules."""
    agency = request.tenant  # type: ignore[attr-defined]
    kwargs = {"currency": agency.currency, "agency_billing_day": agency.billing_day}
    if request.method != "POST":
        form = ClientCreateForm(initial={"license_price": ""}, **kwargs)
        return render(request, "agency/client_new.html", {"form": form})
    form = ClientCreateForm(request.POST, **kwargs)
    if form.is_valid():
        data = form.cleaned_data
        try:
            client = client_create(
                name=data["name"],
                email=data["email"],
                activated_on=business_today(agency),
                license_price_minor=data["license_price"],
                salesperson=data["salesperson"],
                billing_day=data["billing_day"],
                autopay_days=data["autopay_days"],
                taxes=list(data["taxes"]),
                actor=request.user,  # type: ignore[arg-type]
            )
        except ApplicationError as exc:
            form.apply_error(exc)
        else:
            messages.success(request, f"{client.name} added. Add its Agency Services lines below.")
            return redirect("client-detail", public_id=client.public_id)
    return render(request, "agency/client_new.html", {"form": form}, status=400)


@require_POST
@staff_view(C.EDIT_CLIENT_CONFIG)
def client_account(request: HttpRequest, public_id) -> HttpResponse:
    """Change the client's name and billing email."""
    client = client_for(request, public_id)
    form = ClientAccountForm(request.POST)
    if form.is_valid():
        try:
            client_update(
                client=client, name=form.cleaned_data["name"], email=form.cleaned_data["email"], actor=request.user
            )  # type: ignore[arg-type]
        except ApplicationError as exc:
            form.apply_error(exc)
        else:
            messages.success(request, "Client details saved.")
            return redirect("client-detail", public_id=client.public_id)
    return _client_page(request, client, account_form=form, status=400)


@require_POST
@staff_view(C.EDIT_CLIENT_CONFIG)
def client_active(request: HttpRequest, public_id) -> HttpResponse:
    """Deactivate (no invoice from today on) or reactivate a client, after confirmation."""
    client = client_for(request, public_id)
    today = business_today(request.tenant)  # type: ignore[attr-defined]
    if request.POST.get("active") == "1":
        client_reactivate(client=client, actor=request.user)  # type: ignore[arg-type]
        messages.success(request, f"{client.name} is active again: billed from its next billing date.")
        return redirect("client-detail", public_id=client.public_id)
    if not confirmed(request):
        return confirm_page(
            request,
            title=f"Deactivate {client.name}?",
            message=f"No invoice will be built for {client.name} from {today:%Y-%m-%d} on. Invoices already "
            "built are still collected. You can reactivate the client later.",
            action_label="Deactivate client",
            cancel_url=reverse("client-detail", kwargs={"public_id": client.public_id}),
        )
    try:
        client_deactivate(client=client, on=today, actor=request.user)  # type: ignore[arg-type]
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{client.name} is deactivated: no invoice from {today:%Y-%m-%d} on.")
    return redirect("client-detail", public_id=client.public_id)
