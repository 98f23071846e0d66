"""The agency dashboard on `<agency>.<BASE_DOMAIN>`: Billing Overview, clients and their configuration,
Billing Setup, Email Templates, Billing Plan Summary, users. ROLE-1 on every view (web.access)."""

from __future__ import annotations

from datetime import date

from django.contrib import messages
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import PermissionDenied
from django.core.mail import send_mail
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.views.decorators.http import require_POST

from accounts.models import AGENCY_STAFF_ROLES, User
from accounts.permissions import Capability, has_capability, sees_only_own_clients
from accounts.services import user_active_set, user_invite, user_role_set
from billing.billing_setup import agency_logo_set, billing_setup_update
from billing.models import BillingSettings, Charge, PaymentMethod, RequestKind, SupportRequest
from billing.overview import (
    agency_invoice_for_month,
    attempt_count,
    invoice_status,
    month_charges,
    month_summary,
    months_with_invoices,
    twelve_months,
)
from billing.pdf import agency_invoice_pdf, invoice_pdf, pdf_filename
from billing.platform.models import AgencyInvoice
from billing.selectors import billing_settings
from billing.statuses import ChargeStatus
from billing.support import agency_invoiced_request, retry_request
from clients.models import AgencyServiceLine, Client
from clients.services import client_configure, service_line_add, service_line_remove
from core.calendar import add_months
from core.categories import DEFAULT_CATEGORY_ORDER
from core.errors import ApplicationError
from notifications.catalog import CATALOG, NoticeKind
from notifications.models import NoticeTemplate
from notifications.rendering import TemplateInvalid
from notifications.selectors import notices_about_client
from notifications.services import notice_preview, notice_template_reset, notice_template_save
from web.access import business_today, shows_amounts, staff_view, visible_clients, visible_invoices
from web.charts import build_chart
from web.forms import (
    BillingSetupForm,
    ClientConfigForm,
    InviteForm,
    ReasonForm,
    RoleForm,
    SearchForm,
    ServiceLineForm,
    TemplateForm,
)

C = Capability
SEE_BILLING = (C.VIEW_BILLING, C.VIEW_OWN_BILLING)
PAGE_SIZE = 50


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def parse_month(value: str | None) -> date | None:
    try:
        year, month = (int(part) for part in (value or "").split("-"))
        return date(year, month, 1)
    except ValueError:
        return None


def pdf_response(data: bytes, filename: str, *, inline: bool = False) -> HttpResponse:
    response = HttpResponse(data, content_type="application/pdf")
    response["Content-Disposition"] = f'{"inline" if inline else "attachment"}; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


# --- Billing Overview (INV-2) ----------------------------------------------------------------------------


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
        if _is_htmx(request) and request.headers.get("HX-Target") == "charges"
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


# --- Clients and Client Configuration (PLAN-2) -------------------------------------------------------------


@staff_view(SEE_BILLING)
def client_list(request: HttpRequest) -> HttpResponse:
    form = SearchForm(request.GET or None)
    clients = (
        visible_clients(request.user)
        .select_related("salesperson")
        .annotate(  # type: ignore[arg-type]
            has_method=Exists(PaymentMethod.objects.filter(client=OuterRef("pk"), removed_at__isnull=True))
        )
    )
    query = form.cleaned_data.get("q", "") if form.is_valid() else ""
    if query:
        clients = clients.filter(Q(name__icontains=query) | Q(email__icontains=query))
    page = Paginator(clients.order_by("name", "id"), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "agency/client_list.html",
        {
            "form": form,
            "page": page,
            "query": query,
            "amounts": shows_amounts(request.user),  # type: ignore[arg-type]
            "currency": request.tenant.currency,
        },
    )  # type: ignore[attr-defined]


def _client_for(request: HttpRequest, public_id) -> Client:
    return get_object_or_404(
        visible_clients(request.user).select_related("salesperson", "group"),  # type: ignore[arg-type]
        public_id=public_id,
    )


def _config_initial(client: Client, currency: str) -> dict:
    from core.money import format_minor

    return {
        "license_price": format_minor(client.license_price_minor, currency),
        "taxes": list(client.taxes.all()),
        "billing_day": client.billing_day,
        "autopay_days": ", ".join(str(d) for d in client.autopay_days),
        "salesperson": client.salesperson,
    }


def _client_page(
    request: HttpRequest, client: Client, *, config_form=None, line_form=None, reason_form=None, status: int = 200
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
    retry_requested = {r.charge_id for r in requests if r.kind == RequestKind.RETRY}
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
            "payment_method": client.payment_methods.filter(removed_at__isnull=True).first(),
            "charges": charges,
            "retry_requested": retry_requested,
            "agency_invoiced_requested": any(r.kind == RequestKind.AGENCY_INVOICED for r in requests),
            "retryable": (ChargeStatus.RETRYING, ChargeStatus.UNCOLLECTABLE),
            # The notice log carries amounts, so it is for the roles that see them (as the API's notices list).
            "notices": list(notices_about_client(client_public_id=str(client.public_id))[:20])
            if shows_amounts(user)
            else [],  # type: ignore[arg-type]
        },
        status=status,
    )


@staff_view(SEE_BILLING)
def client_detail(request: HttpRequest, public_id) -> HttpResponse:
    client = _client_for(request, public_id)
    if request.method != "POST":
        return _client_page(request, client)
    if not has_capability(request.user, C.EDIT_CLIENT_CONFIG):  # type: ignore[arg-type]
        raise PermissionDenied("Your role cannot change client configuration.")
    agency = request.tenant  # type: ignore[attr-defined]
    form = ClientConfigForm(request.POST, currency=agency.currency, agency_billing_day=agency.billing_day)
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
    client = _client_for(request, public_id)
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
            if _is_htmx(request):
                return _lines_partial(request, client)
            messages.success(request, "Agency Services line added.")
            return redirect("client-detail", public_id=client.public_id)
    if _is_htmx(request):
        return _lines_partial(request, client, form)
    return _client_page(request, client, line_form=form, status=400)


@require_POST
@staff_view(C.EDIT_CLIENT_CONFIG)
def service_line_delete(request: HttpRequest, public_id, line_id) -> HttpResponse:
    client = _client_for(request, public_id)
    line = get_object_or_404(AgencyServiceLine, client=client, public_id=line_id)
    service_line_remove(line=line, actor=request.user)  # type: ignore[arg-type]
    if _is_htmx(request):
        return _lines_partial(request, client)
    messages.success(request, "Agency Services line removed.")
    return redirect("client-detail", public_id=client.public_id)


@require_POST
@staff_view(C.REQUEST_SUPPORT)
def client_retry_request(request: HttpRequest, public_id, charge_id) -> HttpResponse:
    """RET-4: ask billing support for a manual retry."""
    client = _client_for(request, public_id)
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
    client = _client_for(request, public_id)
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


# --- Billing Setup -----------------------------------------------------------------------------------------


def _setup_initial(agency, settings: BillingSettings) -> dict:
    from core.money import format_minor

    initial = {
        "billing_day": agency.billing_day,
        "time_zone": agency.time_zone,
        "grace_period_days": settings.grace_period_days,
        "overdue_threshold": format_minor(settings.overdue_threshold_minor, agency.currency),
        "statement_days_before": settings.statement_days_before,
        "statement_second_after_days": settings.statement_second_after_days,
        "statement_third_after_days": settings.statement_third_after_days,
        "overdue_second_after_days": settings.overdue_second_after_days,
        "overdue_third_after_days": settings.overdue_third_after_days,
        "retries_enabled": settings.retries_enabled,
        "brand_color": agency.brand_color,
        "address": agency.address,
        "email": agency.email,
    }
    order = list(settings.category_order) or list(DEFAULT_CATEGORY_ORDER)
    for position, category in enumerate(order, start=1):
        initial[f"category_{position}"] = category
    return initial


@staff_view(C.ADMINISTER)
def billing_setup(request: HttpRequest) -> HttpResponse:
    agency = request.tenant  # type: ignore[attr-defined]
    settings = billing_settings()
    status = 200
    if request.method == "POST":
        form = BillingSetupForm(request.POST, request.FILES, currency=agency.currency)
        if form.is_valid():
            data = form.cleaned_data
            values = {
                k: data[k]
                for k in (
                    "billing_day",
                    "time_zone",
                    "grace_period_days",
                    "statement_days_before",
                    "statement_second_after_days",
                    "statement_third_after_days",
                    "overdue_second_after_days",
                    "overdue_third_after_days",
                    "retries_enabled",
                    "brand_color",
                    "address",
                    "email",
                )
            }
            values["overdue_threshold_minor"] = data["overdue_threshold"]
            values["category_order"] = [data[f"category_{i}"] for i in range(1, len(DEFAULT_CATEGORY_ORDER) + 1)]
            try:
                with transaction.atomic():  # settings and logo together, or nothing
                    billing_setup_update(agency=agency, actor=request.user, values=values)  # type: ignore[arg-type]
                    if data.get("logo"):
                        agency_logo_set(agency=agency, actor=request.user, upload=data["logo"])  # type: ignore[arg-type]
            except ApplicationError as exc:
                agency.refresh_from_db()
                form.apply_error(exc)
            else:
                messages.success(request, "Billing Setup saved. Changes apply from the next billing day.")
                return redirect("billing-setup")
        status = 400
    else:
        form = BillingSetupForm(initial=_setup_initial(agency, settings), currency=agency.currency)
    return render(request, "agency/setup.html", {"form": form, "agency": agency}, status=status)


# --- Email Templates ---------------------------------------------------------------------------------------


@staff_view(C.ADMINISTER)
def template_list(request: HttpRequest) -> HttpResponse:
    custom = {t.kind: t for t in NoticeTemplate.objects.all()}
    kinds = [{"kind": k, "label": NoticeKind(k).label, "custom": custom.get(k)} for k in CATALOG]
    return render(request, "agency/template_list.html", {"kinds": kinds})


def _kind_or_404(kind: str) -> str:
    if kind not in CATALOG:
        raise Http404
    return kind


def _preview(request: HttpRequest, kind: str, form: TemplateForm) -> dict:
    """Render the draft against a real client's data (the chosen one, or the first)."""
    from billing.notice_previews import notice_preview_context

    client = form.cleaned_data.get("client") if form.is_bound and form.is_valid() else None
    client = client or Client.objects.order_by("name").first()
    if client is None:
        return {"preview_error": "Add a client to preview with real data."}
    # What was typed, even when a field error has removed it from cleaned_data.
    source = form.data if form.is_bound else form.initial
    subject, body = str(source.get("subject", "")), str(source.get("body", ""))
    context = notice_preview_context(client=client, kind=kind, today=business_today(request.tenant))  # type: ignore[attr-defined]
    try:
        rendered = notice_preview(kind=kind, subject=subject, body=body, context=context)
    except TemplateInvalid as exc:
        return {"preview_client": client, "preview_fields": exc.fields}
    return {"preview_client": client, "preview": rendered}


@staff_view(C.ADMINISTER)
def template_edit(request: HttpRequest, kind: str) -> HttpResponse:
    kind = _kind_or_404(kind)
    spec = CATALOG[kind]
    custom = NoticeTemplate.objects.filter(kind=kind).first()
    status = 200
    if request.method == "POST":
        if request.POST.get("action") == "reset":
            notice_template_reset(kind=kind, actor=request.user)
            messages.success(request, "Back to the default template.")
            return redirect("template-edit", kind=kind)
        form = TemplateForm(request.POST)
        if form.is_valid():
            try:
                notice_template_save(
                    kind=kind, subject=form.cleaned_data["subject"], body=form.cleaned_data["body"], actor=request.user
                )
            except ApplicationError as exc:
                form.apply_error(exc)
            else:
                messages.success(request, "Template saved.")
                return redirect("template-edit", kind=kind)
        status = 400
    else:
        form = TemplateForm(
            initial={
                "subject": custom.subject if custom else spec.subject,
                "body": custom.body if custom else spec.body,
            }
        )
    context = {"kind": kind, "label": NoticeKind(kind).label, "spec": spec, "form": form, "custom": custom}
    if form.is_bound:
        form.is_valid()
    context.update(_preview(request, kind, form))
    return render(request, "agency/template_edit.html", context, status=status)


@require_POST
@staff_view(C.ADMINISTER)
def template_preview(request: HttpRequest, kind: str) -> HttpResponse:
    """The live preview (htmx): the draft rendered with the chosen client's data, or its errors."""
    kind = _kind_or_404(kind)
    form = TemplateForm(request.POST)
    form.is_valid()
    return render(request, "agency/_template_preview.html", {"kind": kind, **_preview(request, kind, form)})


# --- Billing Plan Summary (PLAN-1) -------------------------------------------------------------------------


@staff_view(C.VIEW_BILLING)
def plan_summary(request: HttpRequest) -> HttpResponse:
    agency = request.tenant  # type: ignore[attr-defined]
    plan = agency.plan
    context = {"plan": plan, "currency": plan.currency if plan else agency.currency}
    if plan is not None:
        context.update(
            {
                "products": list(plan.products.all()),
                "taxes": list(plan.taxes.all()),
                "fees": list(plan.fees.all()),
                "active_clients": Client.objects.filter(deactivated_on__isnull=True).count(),
            }
        )
    return render(request, "agency/plan.html", context)


# --- Users -------------------------------------------------------------------------------------------------


def _send_invite(request: HttpRequest):
    agency_name = request.tenant.name  # type: ignore[attr-defined]
    base = request.build_absolute_uri("/")[:-1]

    def send(user: User) -> None:
        link = base + reverse(
            "invite-accept",
            kwargs={
                "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
                "token": default_token_generator.make_token(user),
            },
        )
        send_mail(
            f"You are invited to {agency_name} billing",
            f"Hello,\n\nYou have been invited to {agency_name}'s billing as {user.get_role_display()}.\n"  # type: ignore[attr-defined]
            f"Choose your password here: {link}\n\nThe link works once.\n",
            None,
            [user.email],
        )

    return send


@staff_view(C.ADMINISTER)
def user_list(request: HttpRequest) -> HttpResponse:
    status = 200
    form = InviteForm()
    if request.method == "POST":
        form = InviteForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                user_invite(
                    email=data["email"],
                    role=data["role"],
                    actor=request.user,  # type: ignore[arg-type]
                    first_name=data["first_name"],
                    last_name=data["last_name"],
                    client=data["client"],
                    send=_send_invite(request),
                )
            except ApplicationError as exc:
                form.apply_error(exc)
            else:
                messages.success(request, f"Invitation sent to {data['email'].strip().lower()}.")
                return redirect("user-list")
        status = 400
    users = (
        User.objects.filter(role__in=[*AGENCY_STAFF_ROLES, "CLIENT"])
        .select_related("client_link__client")
        .order_by("role", "email")
    )
    return render(request, "agency/users.html", {"users": users, "form": form, "role_form": RoleForm()}, status=status)


@require_POST
@staff_view(C.ADMINISTER)
def user_role(request: HttpRequest, user_id: int) -> HttpResponse:
    target = get_object_or_404(User, pk=user_id)
    form = RoleForm(request.POST)
    if form.is_valid():
        try:
            user_role_set(user=target, role=form.cleaned_data["role"], actor=request.user)  # type: ignore[arg-type]
        except ApplicationError as exc:
            messages.error(request, f"{target.email}: {exc.message}")
        else:
            label = dict(form.fields["role"].choices)[form.cleaned_data["role"]]  # type: ignore[attr-defined]
            messages.success(request, f"{target.email} is now {label}.")
    else:
        messages.error(request, "Choose a role.")
    return redirect("user-list")


@require_POST
@staff_view(C.ADMINISTER)
def user_active(request: HttpRequest, user_id: int) -> HttpResponse:
    target = get_object_or_404(User, pk=user_id)
    try:
        user_active_set(user=target, active=request.POST.get("active") == "1", actor=request.user)  # type: ignore[arg-type]
    except ApplicationError as exc:
        messages.error(request, f"{target.email}: {exc.message}")
    else:
        done = "reactivated" if request.POST.get("active") == "1" else "deactivated"
        messages.success(request, f"{target.email} {done}.")
    return redirect("user-list")


def agency_logo(request: HttpRequest) -> HttpResponse:
    """The agency's logo, from whatever storage holds it (pages show it before sign-in too)."""
    import mimetypes

    agency = request.tenant  # type: ignore[attr-defined]
    if not getattr(agency, "logo", None):
        raise Http404
    try:
        with agency.logo.open("rb") as handle:
            data = handle.read()
    except OSError:
        raise Http404 from None
    response = HttpResponse(data, content_type=mimetypes.guess_type(agency.logo.name)[0] or "image/png")
    response["Cache-Control"] = "public, max-age=300"
    # Opened on its own, an image is a document of this origin: it may run nothing and load nothing.
    response["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; sandbox"
    )
    return response


def home(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not user.is_authenticated:
        return redirect("login")
    if user.role == "CLIENT":  # type: ignore[union-attr]
        return redirect("portal")
    return redirect("billing-overview")
