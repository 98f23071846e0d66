"""The agency's side of the money in the dashboard: setting up the payout account from Billing Setup (ONB-2), the
sandbox's local stand-in for Stripe's hosted onboarding page, the Payouts page (PAY-4), and the agency's own payment
method for its platform invoices (PAY-3). Set-up is for Administrators only (ROLE-1)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.permissions import has_capability
from billing.payment_methods import agency_payment_method_attach
from billing.payout_accounts import payout_account_of, payout_onboarding_link
from billing.payouts import funds_summary, payout_carried, payout_charges, payouts_of
from billing.platform.models import PayoutAccountState
from billing.providers.base import ProviderError
from billing.providers.sandbox import (
    DEFAULT_PAYOUT_BANK_ACCOUNT,
    PAYOUT_BANK_ACCOUNTS,
    LinkUnusable,
    sandbox_link_open,
    sandbox_onboarding_submit,
)
from billing.settlement import payout_account_apply
from core.errors import ApplicationError
from tenants.selectors import agency_business_date
from web.access import staff_view
from web.agency.common import C
from web.agency.setup import billing_setup
from web.forms import SandboxPaymentMethodForm, StripePaymentMethodForm


def _onboarding_urls(request: HttpRequest) -> tuple[str, str]:
    return (
        request.build_absolute_uri(reverse("payouts-onboarding-return")),
        request.build_absolute_uri(reverse("payouts-onboarding-refresh")),
    )


def _to_onboarding(request: HttpRequest) -> HttpResponse:
    agency = request.tenant  # type: ignore[attr-defined]
    return_url, refresh_url = _onboarding_urls(request)
    try:
        link = payout_onboarding_link(
            agency=agency,
            actor=request.user,  # type: ignore[arg-type]
            return_url=return_url,
            refresh_url=refresh_url,
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect(reverse("billing-setup") + "#payouts-h")
    return redirect(link.url)


@require_POST
@staff_view(C.ADMINISTER)
def payouts_onboarding_start(request: HttpRequest) -> HttpResponse:
    """Billing Setup → Set up payouts: to the processor's hosted onboarding (a one-time link)."""
    return _to_onboarding(request)


@staff_view(C.ADMINISTER)
def payouts_onboarding_refresh(request: HttpRequest) -> HttpResponse:
    """The processor sends the browser here when a link expired or was used: a fresh link, at once (Stripe's
    documented refresh_url behaviour)."""
    return _to_onboarding(request)


@staff_view(C.ADMINISTER)
def payouts_onboarding_return(request: HttpRequest) -> HttpResponse:
    """Back from onboarding. Coming back says nothing about the outcome: the account is read from the processor."""
    agency = request.tenant  # type: ignore[attr-defined]
    account = payout_account_of(agency)
    if account is None:
        return redirect("billing-setup")
    now = timezone.now()
    try:
        payout_account_apply(agency=agency, account_id=account.account_id, now=now)
    except ProviderError as exc:
        messages.error(request, f"The payout account could not be read from the processor: {exc}")
        return redirect(reverse("billing-setup") + "#payouts-h")
    account.refresh_from_db()
    words = {
        PayoutAccountState.PAYOUTS_ENABLED: "Payouts are enabled: your clients' payments are paid out to your bank.",
        PayoutAccountState.PENDING_VERIFICATION: "Your details were submitted and are being verified.",
        PayoutAccountState.RESTRICTED: "Your payout account needs attention: see what is required below.",
        PayoutAccountState.NOT_STARTED: "Payout set-up is not finished. Continue whenever you are ready.",
    }[PayoutAccountState(account.state)]
    (messages.success if account.state == PayoutAccountState.PAYOUTS_ENABLED else messages.info)(request, words)
    return redirect(reverse("billing-setup") + "#payouts-h")


@staff_view(C.ADMINISTER)
def sandbox_onboarding(request: HttpRequest, token: str) -> HttpResponse:
    """The sandbox processor's hosted onboarding page: the same outcomes as Stripe's (complete, submitted and being
    verified, refused, or left half done), then back to the return URL; a used or expired link goes to the refresh
    URL. Only the agency's own account's links open here."""
    agency = request.tenant  # type: ignore[attr-defined]
    account = payout_account_of(agency)
    now = timezone.now()
    try:
        page = sandbox_link_open(token=token, now=now)
    except LinkUnusable:
        return redirect("payouts-onboarding-refresh")
    except ProviderError:
        raise Http404 from None
    if account is None or page.link.account != account.account_id:
        raise Http404
    error = ""
    bank_account = DEFAULT_PAYOUT_BANK_ACCOUNT
    if request.method == "POST":
        bank_account = request.POST.get("bank_account", "").strip()
        try:
            target = sandbox_onboarding_submit(
                token=token,
                action=request.POST.get("action", ""),
                bank_account=bank_account,
                now=now,
                today=agency_business_date(agency, now),
            )
        except LinkUnusable:
            return redirect("payouts-onboarding-refresh")
        except ProviderError as exc:
            error = str(exc)
        else:
            return redirect(target)
    return render(
        request,
        "agency/sandbox_onboarding.html",
        {
            "page": page,
            "requirements": page.view.currently_due or page.view.pending_verification,
            "bank_account": bank_account,
            "bank_accounts": PAYOUT_BANK_ACCOUNTS,
            "error": error,
        },
        status=400 if error else 200,
    )


@staff_view((C.VIEW_BILLING,))
def payouts_list(request: HttpRequest) -> HttpResponse:
    """PAY-4: every payout (date, amount, status, how many charges), and where the rest of the collected money is."""
    agency = request.tenant  # type: ignore[attr-defined]
    if not has_capability(request.user, C.VIEW_AMOUNTS):  # type: ignore[arg-type]
        raise PermissionDenied("Your role cannot see amounts.")
    payouts = list(payouts_of(agency)[:200])
    counts = {p.reference: len(payout_carried(p)) for p in payouts}
    account = payout_account_of(agency)
    return render(
        request,
        "agency/payouts.html",
        {
            "payouts": [(p, counts[p.reference]) for p in payouts],
            "funds": funds_summary(currency=agency.currency),
            "payout_account": account,
            "payout_state_label": PayoutAccountState(account.state if account else "NOT_STARTED").label,
            "currency": agency.currency,
        },
    )


@staff_view((C.VIEW_BILLING,))
def payout_detail(request: HttpRequest, public_id) -> HttpResponse:
    """One payout and exactly the charges it carries."""
    agency = request.tenant  # type: ignore[attr-defined]
    if not has_capability(request.user, C.VIEW_AMOUNTS):  # type: ignore[arg-type]
        raise PermissionDenied("Your role cannot see amounts.")
    payout = payouts_of(agency).filter(public_id=public_id).first()
    if payout is None:
        raise Http404
    charges = list(payout_charges(payout).order_by("client__name", "id"))
    returned = list(payouts_of(agency).filter(reference__in=payout.returned_payouts))
    return render(
        request,
        "agency/payout.html",
        {"payout": payout, "charges": charges, "returned": returned, "currency": payout.currency or agency.currency},
    )


@require_POST
@staff_view(C.ADMINISTER)
def agency_payment_method(request: HttpRequest) -> HttpResponse:
    """Billing Setup → Your payment method (PAY-3): with a Stripe key the card is entered in Stripe Elements and only
    the PaymentMethod id reaches the server, which sets it up (a SetupIntent); without one, the sandbox's test
    methods. A card or bank account a client already holds is refused next to the field (COL-5)."""
    agency = request.tenant  # type: ignore[attr-defined]
    stripe_key = settings.STRIPE_PUBLISHABLE_KEY
    form = (StripePaymentMethodForm if stripe_key else SandboxPaymentMethodForm)(request.POST)
    if form.is_valid():
        # The sandbox's "<token>:<variant>": another physical test card with the same behaviour, the agency's own.
        token = (
            form.cleaned_data["payment_method_id"]
            if stripe_key
            else f"{form.cleaned_data['method']}:agency-{agency.schema_name}"
        )
        try:
            method = agency_payment_method_attach(agency=agency, token=token, actor=request.user)
        except ApplicationError as exc:
            form.apply_error(exc)
        else:
            messages.success(request, f"Payment method saved: {method}. Your platform invoices are charged to it.")
            return redirect(reverse("billing-setup") + "#payment-method-h")
    return billing_setup(request, payment_method_form=form)
