"""Billing Setup: billing day, time zone, notices, dunning, category order, branding."""

from __future__ import annotations

from django.conf import settings as django_settings
from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from billing.billing_setup import agency_logo_set, billing_setup_update
from billing.models import BillingSettings
from billing.payout_accounts import payout_account_of, requirement_words
from billing.payouts import funds_summary
from billing.platform.models import AgencyCharge, AgencyPaymentMethod, PayoutAccountState
from billing.selectors import agency_next_invoice, billing_settings
from billing.statuses import OUTSTANDING
from core.categories import DEFAULT_CATEGORY_ORDER
from core.errors import ApplicationError
from core.money import format_minor
from web.access import business_today, staff_view
from web.agency.common import C
from web.forms import BillingSetupForm, SandboxPaymentMethodForm, StripePaymentMethodForm
from web.stripe_js import with_stripe_csp


def _setup_initial(agency, settings: BillingSettings) -> dict:
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
def billing_setup(request: HttpRequest, payment_method_form=None) -> HttpResponse:
    agency = request.tenant  # type: ignore[attr-defined]
    settings = billing_settings()
    status = 200
    next_invoice, preview = None, False
    if payment_method_form is not None:  # the payment-method card's form came back with its errors
        form = BillingSetupForm(initial=_setup_initial(agency, settings), currency=agency.currency)
        status = 400
    elif request.method == "POST":
        form = BillingSetupForm(request.POST, request.FILES, currency=agency.currency)
        if form.is_valid() and request.POST.get("preview"):
            # CYC-1: the agency's next invoice with the billing day typed in, before anything is saved.
            next_invoice = agency_next_invoice(
                agency=agency, today=business_today(agency), billing_day=form.cleaned_data["billing_day"]
            )
            context = {"form": form, "agency": agency, "next_invoice": next_invoice, "preview": True, "arrears": True}
            return render(request, "agency/setup.html", {**context, **_money_cards(agency, None)})
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
    next_invoice = agency_next_invoice(agency=agency, today=business_today(agency), billing_day=agency.billing_day)
    context = {"form": form, "agency": agency, "next_invoice": next_invoice, "preview": preview}
    response = render(
        request, "agency/setup.html", {**context, **_money_cards(agency, payment_method_form)}, status=status
    )
    return with_stripe_csp(response) if django_settings.STRIPE_PUBLISHABLE_KEY else response


def _money_cards(agency, payment_method_form) -> dict:
    """Billing Setup's Payouts card (ONB-2) and the agency's own payment method card (PAY-3)."""
    stripe_key = django_settings.STRIPE_PUBLISHABLE_KEY
    return {
        **payout_context(agency),
        "stripe_key": stripe_key,
        "payment_method_form": payment_method_form
        or (StripePaymentMethodForm() if stripe_key else SandboxPaymentMethodForm()),
        "agency_payment_method": AgencyPaymentMethod.objects.filter(agency=agency, removed_at__isnull=True).first(),
        "platform_charges": platform_charges_open(agency),
    }


def payout_context(agency) -> dict:
    """The Payouts card of Billing Setup (ONB-2): the account's state, what the processor still needs, held funds."""
    account = payout_account_of(agency)
    state = PayoutAccountState(account.state if account else PayoutAccountState.NOT_STARTED)
    return {
        "payout_account": account,
        "payout_state": state.value,
        "payout_state_label": state.label,
        "requirement_words": requirement_words(account.requirements) if account else [],
        "funds": funds_summary(currency=agency.currency),
    }


def platform_charges_open(agency):
    """The agency's platform invoices not paid yet (PAY-3), to show beside its payment method."""
    return list(
        AgencyCharge.objects.filter(agency=agency, status__in=OUTSTANDING).select_related("invoice").order_by("due_on")
    )
