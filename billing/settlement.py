"""Settlement: what the payment provider reports after an attempt (PAY-2, PAY-3, COL-3) — a bank debit
settling or failing, a payout paid, a refund settling or failing (COR-1), a dispute opening or closing (COR-2) —
from a webhook or from the provider's day, applied in the schema it belongs to. Harmless when repeated or out of
order: outcomes only move forward.
"""

from __future__ import annotations

import logging
from datetime import date

from django.db import transaction
from django.utils import timezone
from django_tenants.utils import schema_context, tenant_context

from billing.attempts import charge_mark_failed, charge_mark_paid
from billing.charges import charge_locked
from billing.corrections import refund_event_apply, refunds_resolve
from billing.disputes import dispute_event_apply
from billing.models import ChargeAttempt
from billing.payout_accounts import payout_account_refresh
from billing.payouts import held_funds_transfer, payout_sync
from billing.platform.models import AgencyChargeAttempt, PayoutAccount
from billing.providers import get_provider
from billing.providers.base import ProviderEvent
from billing.statuses import UNRESOLVED_OUTCOMES, AttemptOutcome, ChargeStatus
from tenants.models import Agency
from tenants.selectors import agency_business_date, current_agency

logger = logging.getLogger(__name__)


def _attempt_for(reference: str, metadata: dict[str, str]):
    model = AgencyChargeAttempt if metadata.get("kind") == "agency" else ChargeAttempt
    key = metadata.get("attempt")
    if key:
        found = model.objects.filter(idempotency_key=key).select_related("charge").first()
        if found:
            return found
    return model.objects.filter(gateway_reference=reference).select_related("charge").first() if reference else None


def provider_event_apply(event: ProviderEvent) -> str:
    """Apply a settlement or payout in the current schema. Harmless when repeated or out of order:
    outcomes only move forward, and a charge already Paid/Paid Out stays so."""
    if event.kind in ("charge.succeeded", "charge.failed"):
        attempt = _attempt_for(event.reference, event.metadata)
        if attempt is None:
            return "unknown attempt"
        with transaction.atomic():
            charge = charge_locked(attempt.charge)
            locked_attempt = type(attempt).objects.select_for_update().get(pk=attempt.pk)
            if event.kind == "charge.succeeded":
                if locked_attempt.outcome in (*UNRESOLVED_OUTCOMES, AttemptOutcome.PENDING):
                    type(attempt).objects.filter(pk=attempt.pk).update(
                        outcome=AttemptOutcome.SUCCEEDED, gateway_reference=event.reference, resolved_at=timezone.now()
                    )
                    locked_attempt.outcome = AttemptOutcome.SUCCEEDED
                    locked_attempt.gateway_reference = event.reference
                    charge_mark_paid(charge, locked_attempt, event.occurred_on)
                return "paid"
            if locked_attempt.outcome in (*UNRESOLVED_OUTCOMES, AttemptOutcome.PENDING):
                outcome = (
                    AttemptOutcome.SETTLEMENT_FAILED
                    if locked_attempt.outcome == AttemptOutcome.PENDING
                    else AttemptOutcome.DECLINED
                )
                type(attempt).objects.filter(pk=attempt.pk).update(
                    outcome=outcome,
                    gateway_reference=event.reference,
                    decline_code=event.decline_code,
                    resolved_at=timezone.now(),
                )
                locked_attempt.outcome = outcome
                locked_attempt.decline_code = event.decline_code
                if charge.status in (ChargeStatus.PENDING, ChargeStatus.SCHEDULED, ChargeStatus.RETRYING):
                    charge_mark_failed(charge, locked_attempt, event.occurred_on)  # COL-3: counts as a failed attempt
            return "failed"
    if event.kind.startswith("payout."):
        agency = current_agency()
        if agency is None:
            return "no agency"
        return payout_sync(agency=agency, reference=event.reference)
    if event.kind in ("refund.succeeded", "refund.failed"):
        return refund_event_apply(
            reference=event.reference,
            key=event.metadata.get("refund", ""),
            succeeded=event.kind == "refund.succeeded",
            failure_reason=event.decline_code,
            today=event.occurred_on,
        )
    if event.kind == "dispute":
        return dispute_event_apply(event)
    return "ignored"


def _event_schema(event: ProviderEvent) -> str:
    """The agency schema an event belongs to: from the metadata the product put on the payment or refund; a
    dispute carries none of its own, so its payment's is asked for (COR-2)."""
    schema = event.metadata.get("schema", "")
    if not schema and event.kind == "dispute" and event.charge_references:
        schema = get_provider().payment_metadata(event.charge_references[0]).get("schema", "")
    return schema


def provider_event_dispatch(event: ProviderEvent) -> str:
    """A charge event names its schema in its metadata; a payout event names the connected account."""
    if event.kind.startswith(("charge.", "refund.")) or event.kind == "dispute":
        schema = _event_schema(event)
        if schema == "public" or event.metadata.get("kind") == "agency":
            if not event.kind.startswith("charge."):
                return "ignored"  # the platform's own charges are not refunded or disputed here
            with schema_context("public"):
                return provider_event_apply(event)
        agency = Agency.objects.filter(schema_name=schema).first()
        if agency is None:
            return "unknown schema"
        with tenant_context(agency):
            return provider_event_apply(event)
    if event.kind.startswith("payout.") or event.kind == "account.updated":
        agency = _agency_of_account(event.account)
        if agency is None:
            return "unknown account"  # not an account of ours: nothing changes
        with tenant_context(agency):
            if event.kind == "account.updated":
                return payout_account_apply(agency=agency, account_id=event.account, now=timezone.now())
            return provider_event_apply(event)
    return "ignored"


def _agency_of_account(account: str) -> Agency | None:
    if not account:
        return None
    owner = PayoutAccount.objects.filter(account_id=account).select_related("agency").first()
    if owner is not None:
        return owner.agency
    return Agency.objects.filter(connected_account_id=account).first()


def payout_account_apply(*, agency: Agency, account_id: str, now, today: date | None = None) -> str:
    """ONB-2: the account's state as the processor reports it now; once it can receive transfers, the funds held for
    the agency are sent to it (in the agency's schema)."""
    refreshed = payout_account_refresh(account_id=account_id, now=now)
    if refreshed is None:
        return "unknown account"
    result = refreshed.account.state
    if refreshed.account.transfers_enabled:
        moved = held_funds_transfer(today=today or agency_business_date(agency, now))
        if moved["transferred"]:
            result += f", {moved['transferred']} held charges transferred"
    return result


def provider_day_settle(*, agency: Agency, today: date) -> int:
    """The processor's day: refunds whose answer was lost are sent again (COR-1); held funds go to an account that
    can now receive them (ONB-2); bank debits and refunds settle or fail, payouts are paid or fail, disputes open
    and close (PAY-2, COL-3, COR-2)."""
    with tenant_context(agency):
        refunds_resolve(today=today)
        held_funds_transfer(today=today)
    events = get_provider().advance(today=today)
    for event in events:
        provider_event_dispatch(event)
    return len(events)
