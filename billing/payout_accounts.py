"""The agency's payout account (ONB-2): a connected account at the processor (Stripe Connect Express, or the
sandbox's), onboarded on the processor's hosted page through one-time Account Links, and its state as the
processor reports it — never as the browser coming back claims it.

States: Not started (nothing submitted), Pending verification (submitted, being verified), Payouts enabled, and
Restricted (the processor needs more, or refused what was given). The processor's requirement list is kept and
shown. `account.updated` webhooks (Stripe) and the sandbox's day both end in `payout_account_refresh`, which reads
the account from the processor: a forged event cannot make an account look enabled, and events arriving out of
order leave the latest truth.

Until payouts are enabled, client charges are collected on the platform's own account and held for the agency
(`billing/payouts.py`); from then on they are destination charges (PAY-1), and the held funds are transferred.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from accounts.models import User, audit_record
from billing.platform.models import PayoutAccount, PayoutAccountState
from billing.providers import get_provider
from billing.providers.base import AccountLink, ConnectedAccount, PaymentProvider, ProviderError
from core.errors import ApplicationError
from tenants.models import Agency

logger = logging.getLogger(__name__)

S = PayoutAccountState

# Stripe's requirement ids in words an agency understands (the rest are shown as Stripe names them).
REQUIREMENT_WORDS = {
    "business_profile.mcc": "Business category",
    "business_profile.url": "Business website",
    "business_type": "Type of business",
    "external_account": "Bank account for payouts",
    "representative.first_name": "Representative's first name",
    "representative.last_name": "Representative's last name",
    "representative.id_number": "Representative's ID number",
    "representative.verification.document": "Representative's identity document",
    "individual.verification.document": "Identity document",
    "company.tax_id": "Company tax ID",
    "tos_acceptance.date": "Acceptance of the Stripe services agreement",
    "tos_acceptance.ip": "Acceptance of the Stripe services agreement",
}


class PayoutAccountError(ApplicationError):
    code = "payout_account_error"
    status = 409


def state_of(view: ConnectedAccount) -> str:
    """Stripe's documented reading of an Express account: enabled when payouts are; submitted and being verified;
    submitted and refused or needing more (restricted); else not started."""
    if view.payouts_enabled and view.transfers_enabled:
        return S.PAYOUTS_ENABLED
    if not view.details_submitted:
        return S.NOT_STARTED
    if view.pending_verification and not view.past_due and not view.errors:
        return S.PENDING_VERIFICATION
    return S.RESTRICTED


def requirements_of(view: ConnectedAccount) -> dict:
    return {
        "currently_due": list(view.currently_due),
        "past_due": list(view.past_due),
        "pending_verification": list(view.pending_verification),
        "errors": list(view.errors),
        "disabled_reason": view.disabled_reason,
        "current_deadline": view.current_deadline.isoformat() if view.current_deadline else None,
    }


def requirement_words(requirements: dict) -> list[str]:
    """What the processor still needs, once each, in words (due first, then being verified)."""
    seen: list[str] = []
    for key in ("past_due", "currently_due"):
        for item in requirements.get(key) or ():
            words = REQUIREMENT_WORDS.get(item, item)
            if words not in seen:
                seen.append(words)
    return seen


def payout_account_of(agency: Agency) -> PayoutAccount | None:
    return PayoutAccount.objects.filter(agency=agency).first()


def payout_account_create(
    *, agency: Agency, actor: User | str | None, provider: PaymentProvider | None = None
) -> PayoutAccount:
    """The agency's connected account, created once (the processor call is idempotent by the agency's key, and the
    row is unique per agency)."""
    existing = payout_account_of(agency)
    if existing is not None:
        return existing
    provider = provider or get_provider()
    try:
        reference = provider.connected_account_create(
            name=agency.name, email=agency.email or "", idempotency_key=f"payout-account-{agency.schema_name}"
        )
    except ProviderError as exc:
        raise PayoutAccountError(f"The payout account could not be created: {exc}", code=exc.code) from None
    with transaction.atomic():
        account, created = PayoutAccount.objects.get_or_create(
            agency=agency, defaults={"provider": provider.name, "account_id": reference}
        )
        if created:
            Agency.objects.filter(pk=agency.pk).update(connected_account_id=reference)
            agency.connected_account_id = reference
            audit_record(actor=actor, action="payout_account.create", obj=agency, after={"account": reference})
    return account


def payout_onboarding_link(
    *,
    agency: Agency,
    actor: User | str | None,
    return_url: str,
    refresh_url: str,
    provider: PaymentProvider | None = None,
) -> AccountLink:
    """A one-time link to the processor's hosted onboarding for the agency's payout account (created first if the
    agency has none). Administrators only (ROLE-1), checked by the caller."""
    provider = provider or get_provider()
    account = payout_account_create(agency=agency, actor=actor, provider=provider)
    try:
        link = provider.account_link_create(account=account.account_id, refresh_url=refresh_url, return_url=return_url)
    except ProviderError as exc:
        raise PayoutAccountError(f"The onboarding link could not be made: {exc}", code=exc.code) from None
    with transaction.atomic():
        audit_record(
            actor=actor, action="payout_account.onboarding_link", obj=agency, after={"account": account.account_id}
        )
    return link


@dataclass(frozen=True)
class Refreshed:
    account: PayoutAccount
    previous_state: str
    became_enabled: bool


def payout_account_refresh(
    *, account_id: str, now: datetime, provider: PaymentProvider | None = None
) -> Refreshed | None:
    """Read the connected account from the processor and store its state and requirements. None when no agency has
    that account (an event for someone else's account changes nothing). Safe to run any number of times, in any
    order: it stores what the processor says now."""
    account = PayoutAccount.objects.filter(account_id=account_id).select_related("agency").first()
    if account is None:
        return None
    provider = provider or get_provider()
    view = provider.connected_account_retrieve(account=account_id)
    with transaction.atomic():
        locked = PayoutAccount.objects.select_for_update().select_related("agency").get(pk=account.pk)
        previous = locked.state
        state = state_of(view)
        became_enabled = view.transfers_enabled and not locked.transfers_enabled
        locked.state = state
        locked.details_submitted = view.details_submitted
        locked.transfers_enabled = view.transfers_enabled
        locked.payouts_enabled = view.payouts_enabled
        locked.requirements = requirements_of(view)
        locked.bank_last4 = view.bank_last4
        locked.refreshed_at = now
        if state == S.PAYOUTS_ENABLED and locked.enabled_at is None:
            locked.enabled_at = now
        locked.save()
        if previous != state:
            audit_record(
                actor="processor",
                action="payout_account.state",
                obj=locked.agency,
                before={"state": previous},
                after={"state": state, "requirements": requirement_words(locked.requirements)},
            )
    return Refreshed(locked, previous, became_enabled)


def payouts_destination(agency: Agency | None) -> str | None:
    """Where a client charge collected now goes: the agency's connected account once it can receive transfers
    (a destination charge, PAY-1); None — the platform's account, the funds held for the agency — before."""
    if agency is None:
        return None
    return (
        PayoutAccount.objects.filter(agency=agency, transfers_enabled=True).values_list("account_id", flat=True).first()
    )
