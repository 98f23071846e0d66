"""Disputes (chargebacks, COR-2): what the processor reports about a paid charge, recorded against it.

A dispute is shown beside the charge's status, never instead of it (docs/decisions.md, "Disputes beside the six
statuses"): needs response, under review, won or lost. The agency is told when one opens and when it closes. A
lost dispute means the card holder got the money back:
- the client's balance is open again (chargeback entries in the ledger, in the categories the payment had paid,
  MON-4) and the charge, if the whole payment was disputed, is Uncollectable again — no automatic attempt, the
  agency may ask for a retry and the client may pay in the portal;
- for a destination charge the processor took the amount from the platform, which recovers it from the agency by
  reversing the transfer (Stripe's model for destination charges): recorded in the agency's ledger with the
  platform, a charge and the reversal that paid it.

Applied in the charge's agency schema, from a webhook or the processor's day; harmless when repeated or out of
order: a dispute's state only moves forward, and a closed dispute stays closed.
"""

from __future__ import annotations

import logging
from datetime import date

from django.db import transaction

from billing.base_models import EntryType
from billing.charges import charge_locked, charge_transition
from billing.drafting import allocate
from billing.models import Charge, ChargeAttempt, ChargeEvent, Dispute, LedgerEntry
from billing.notices import agency_recipients, client_context
from billing.payouts import charge_is_destination_charge
from billing.platform.models import AgencyAllocation, AgencyLedgerEntry
from billing.providers import get_provider
from billing.providers.base import PaymentProvider, ProviderEvent
from billing.selectors import billing_settings
from billing.statuses import COLLECTED, DISPUTE_CLOSED, ChargeStatus, DisputeStatus
from core.links import absolute_url
from core.money import format_minor
from notifications.catalog import NoticeKind
from notifications.services import NoticeDraft, notices_enqueue
from tenants.selectors import current_agency

logger = logging.getLogger(__name__)

# The order a dispute's state may take: never back to an earlier one, never out of a closed one.
_RANK = {DisputeStatus.NEEDS_RESPONSE: 0, DisputeStatus.UNDER_REVIEW: 1, DisputeStatus.WON: 2, DisputeStatus.LOST: 2}


def _charge_of(payment_reference: str) -> Charge | None:
    charge = Charge.objects.filter(paid_reference=payment_reference).first()
    if charge is None:
        attempt = ChargeAttempt.objects.filter(gateway_reference=payment_reference).select_related("charge").first()
        charge = attempt.charge if attempt else None
    return charge


def _notify(dispute: Dispute, kind: str, extra: dict, today: date) -> None:
    agency = current_agency()
    if agency is None:
        return
    charge = dispute.charge
    client = charge.client
    context = {
        **client_context(agency, client),
        "amount": format_minor(dispute.amount_minor, dispute.currency),
        "invoice_number": charge.invoice.number,
        "dispute_reason": dispute.reason.replace("_", " ") or "not given",
        "invoice_url": absolute_url(f"/invoices/{charge.invoice.public_id}/", agency=agency.schema_name),
        "due_by": dispute.due_by.isoformat() if dispute.due_by else "",
        **extra,
    }
    notices_enqueue(
        drafts=[
            NoticeDraft(
                account=f"agency:{email}",
                kind=kind,
                period=f"{client.public_id}/{dispute.reference}",
                number=1,
                to_email=email,
                context=context,
                business_date=today,
            )
            for email in agency_recipients(agency)
        ]
    )


def _history(charge: Charge, reason: str, today: date) -> None:
    ChargeEvent.objects.create(
        charge=charge, from_status=charge.status, to_status=charge.status, reason=reason[:240], business_date=today
    )


def dispute_event_apply(event: ProviderEvent, *, provider: PaymentProvider | None = None) -> str:
    """Record a dispute's creation or change (COR-2), in the current agency schema."""
    payment = event.charge_references[0] if event.charge_references else ""
    charge = _charge_of(payment) if payment else None
    if charge is None:
        return "unknown charge"
    status = DisputeStatus(event.status)
    today = event.occurred_on
    with transaction.atomic():
        charge = charge_locked(charge)  # type: ignore[assignment]
        dispute = Dispute.objects.select_for_update().filter(reference=event.reference).first()
        if dispute is None:
            dispute = Dispute.objects.create(
                charge=charge,
                reference=event.reference,
                status=status,
                reason=event.reason[:60],
                amount_minor=event.amount_minor or charge.amount_minor,
                currency=event.currency or charge.currency,
                opened_on=today,
                due_by=event.due_on,
            )
            dispute.charge = charge
            due = f", response due by {event.due_on.isoformat()}" if event.due_on else ""
            _history(charge, f"Disputed by the card holder ({dispute.reason or 'no reason given'}){due}", today)
            _notify(dispute, NoticeKind.AGENCY_DISPUTE_OPENED, {}, today)
            if status in DISPUTE_CLOSED:  # reported already closed (its earlier events lost or late)
                _closed(dispute, charge, today, provider)
            return f"dispute {status.lower()}"
        dispute.charge = charge
        if dispute.status in DISPUTE_CLOSED or _RANK[status] <= _RANK[DisputeStatus(dispute.status)]:
            return "dispute unchanged"
        Dispute.objects.filter(pk=dispute.pk).update(status=status, due_by=event.due_on or dispute.due_by)
        dispute.status = status
        if status in DISPUTE_CLOSED:
            _closed(dispute, charge, today, provider)
        else:
            _history(charge, f"Dispute {dispute.reference}: {status.label.lower()}", today)
        return f"dispute {status.lower()}"


def _closed(dispute: Dispute, charge: Charge, today: date, provider: PaymentProvider | None) -> None:
    Dispute.objects.filter(pk=dispute.pk).update(closed_on=today)
    if dispute.status == DisputeStatus.WON:
        _history(charge, f"Dispute {dispute.reference} won: the payment stands", today)
        _notify(dispute, NoticeKind.AGENCY_DISPUTE_CLOSED, {"outcome": "won", "recovered": ""}, today)
        return
    recovered = dispute_lost(dispute, charge, today=today, provider=provider)
    amount = f"{format_minor(recovered, dispute.currency)} {dispute.currency}" if recovered else ""
    _notify(dispute, NoticeKind.AGENCY_DISPUTE_CLOSED, {"outcome": "lost", "recovered": amount}, today)


def dispute_lost(dispute: Dispute, charge: Charge, *, today: date, provider: PaymentProvider | None = None) -> int:
    """The money went back to the card holder (COR-2): the client owes it again, and the agency returns it to the
    platform. Returns the amount recovered from the agency (0 when the charge paid no connected account)."""
    order = billing_settings().category_order
    # What the invoice billed, per category in the agency's order: the chargeback reopens the same categories.
    billed = [
        (category, amount)
        for category, amount in sorted(
            (
                (entry.category, entry.amount_minor)
                for entry in LedgerEntry.objects.filter(invoice=charge.invoice, entry_type=EntryType.CHARGE)
            ),
            key=lambda item: order.index(item[0]) if item[0] in order else len(order),
        )
    ]
    LedgerEntry.objects.bulk_create(
        LedgerEntry(
            client=charge.client,
            invoice=charge.invoice,
            entry_type=EntryType.CHARGEBACK,
            category=category,
            amount_minor=amount,
            currency=dispute.currency,
            occurred_on=today,
            reference=f"Dispute {dispute.reference} lost"[:120],
        )
        for category, amount in allocate(dispute.amount_minor, billed)
    )
    if dispute.amount_minor >= charge.amount_minor and charge.status in COLLECTED:
        charge_transition(
            charge,
            ChargeStatus.UNCOLLECTABLE,
            reason=f"Dispute {dispute.reference} lost: the payment went back to the card holder"[:240],
            today=today,
            next_retry_on=None,
            paid_on=None,
            payout_reference="",
            paid_out_on=None,
        )
    else:
        amount = format_minor(dispute.amount_minor, dispute.currency)
        _history(charge, f"Dispute {dispute.reference} lost: {amount} went back to the card holder, owed again", today)
    if not charge_is_destination_charge(charge):
        return 0  # held funds (ONB-2): the platform's own payment, nothing was transferred with it
    reference = (provider or get_provider()).transfer_reverse(
        payment_reference=charge.paid_reference,
        amount_minor=dispute.amount_minor,
        idempotency_key=f"dr-{dispute.public_id.hex}",
    )
    Dispute.objects.filter(pk=dispute.pk).update(recovery_reference=reference)
    agency = current_agency()
    assert agency is not None
    owed = AgencyLedgerEntry.objects.create(
        agency=agency,
        entry_type=EntryType.CHARGEBACK,
        category="OTHER",
        amount_minor=dispute.amount_minor,
        currency=dispute.currency,
        occurred_on=today,
        reference=f"Dispute {dispute.reference} lost ({charge.invoice.number})"[:120],
    )
    paid = AgencyLedgerEntry.objects.create(
        agency=agency,
        entry_type=EntryType.PAYMENT,
        category="OTHER",
        amount_minor=-dispute.amount_minor,
        currency=dispute.currency,
        occurred_on=today,
        reference=f"Transfer reversal {reference}"[:120],
    )
    AgencyAllocation.objects.create(payment=paid, charge=owed, amount_minor=dispute.amount_minor)
    return dispute.amount_minor
