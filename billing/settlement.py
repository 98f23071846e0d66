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
from billing.payouts import payout_apply, payouts_lock
from billing.platform.models import AgencyChargeAttempt
from billing.providers import get_provider
from billing.providers.base import ProviderEvent
from billing.statuses import UNRESOLVED_OUTCOMES, AttemptOutcome, ChargeStatus
from tenants.models import Agency

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
    if event.kind in ("payout.paid", "payout.failed"):
        with transaction.atomic():
            payouts_lock()
            return payout_apply(event)
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
    if event.kind.startswith("payout."):
        agency = Agency.objects.filter(connected_account_id=event.account).first() if event.account else None
        if agency is None:
            return "unknown account"
        with tenant_context(agency):
            return provider_event_apply(event)
    return "ignored"


def provider_day_settle(*, agency: Agency, today: date) -> int:
    """The processor's day: refunds whose answer was lost are sent again (COR-1); bank debits and refunds settle or
    fail, payouts are paid, disputes open and close (PAY-2, COL-3, COR-2)."""
    with tenant_context(agency):
        refunds_resolve(today=today)
    events = get_provider().advance(today=today)
    for event in events:
        provider_event_dispatch(event)
    return len(events)
