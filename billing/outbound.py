"""What billing tells the agency's own systems (outbound webhooks, issue 7): the payloads of invoice, charge and
payout events, published in the transaction of the change itself through `integrations`."""

from __future__ import annotations

import functools
from collections.abc import Callable

from billing.models import Charge, Invoice
from billing.platform.models import Payout
from billing.statuses import FAILED_OUTCOMES, LATEST_ATTEMPT_UNKNOWN, ChargeStatus
from integrations.models import EventKind
from integrations.services import event_publish, events_publish


def invoice_payload(invoice: Invoice) -> dict:
    return {
        "id": str(invoice.public_id),
        "number": invoice.number,
        "client": str(invoice.client.public_id),
        "period_start": invoice.period_start.isoformat(),
        "period_end": invoice.period_end.isoformat(),
        "issued_on": invoice.issued_on.isoformat(),
        "due_on": invoice.due_on.isoformat(),
        "currency": invoice.currency,
        "subtotal_minor": invoice.subtotal_minor,
        "tax_minor": invoice.tax_minor,
        "total_minor": invoice.total_minor,
        "agency_invoiced": invoice.agency_invoiced,
    }


def invoices_finalized(invoice_ids: list[int]) -> None:
    """One query when no endpoint listens (the billing run's fast path); the payloads only when one does."""

    def items():
        invoices = Invoice.objects.filter(id__in=invoice_ids).select_related("client").order_by("id")
        return [(f"invoice.finalized:{i.public_id}", invoice_payload(i)) for i in invoices]

    events_publish(kind=EventKind.INVOICE_FINALIZED, items=items)


def charge_payload(charge: Charge, attempt=None) -> dict:
    return {
        "id": str(charge.public_id),
        "invoice": str(charge.invoice.public_id),
        "invoice_number": charge.invoice.number,
        "client": str(charge.client.public_id),
        "installment": charge.installment,
        "amount_minor": charge.amount_minor,
        "currency": charge.currency,
        "status": charge.status,
        "billing_date": charge.billing_date.isoformat(),
        "due_on": charge.due_on.isoformat(),
        "next_retry_on": charge.next_retry_on.isoformat() if charge.next_retry_on else None,
        "attempt": None
        if attempt is None
        else {
            "number": attempt.number,
            "kind": attempt.kind,
            "outcome": attempt.outcome,
            "attempted_on": attempt.attempted_on.isoformat(),
            "decline_code": attempt.decline_code,
            "gateway_reference": attempt.gateway_reference,
        },
    }


Items = Callable[[], list[tuple[str, dict]]]


def charge_events(
    charge: Charge, *, from_status: str, to_status: str, attempt=LATEST_ATTEMPT_UNKNOWN
) -> list[tuple[str, Items]]:
    """The events a charge's move publishes, as (kind, function returning its (key, payload) items): charge.paid
    on Paid; charge.failed for each failed attempt; charge.uncollectable on becoming Uncollectable.

    `attempt`: the charge's latest attempt when the caller has it; else it is read, and only when a function is
    called, i.e. when an endpoint listens: an agency without webhooks pays nothing per move for this."""
    if to_status not in (ChargeStatus.PAID, ChargeStatus.RETRYING, ChargeStatus.UNCOLLECTABLE):
        return []
    latest = functools.cache(
        lambda: charge.attempts.order_by("-number").first() if attempt is LATEST_ATTEMPT_UNKNOWN else attempt
    )

    if to_status == ChargeStatus.PAID:
        return [
            (EventKind.CHARGE_PAID, lambda: [(f"charge.paid:{charge.public_id}", charge_payload(charge, latest()))])
        ]

    def failed():
        last = latest()
        if last is None or last.outcome not in FAILED_OUTCOMES:
            return []
        return [(f"charge.failed:{charge.public_id}:{last.number}", charge_payload(charge, last))]

    events: list[tuple[str, Items]] = [(EventKind.CHARGE_FAILED, failed)]
    if to_status == ChargeStatus.UNCOLLECTABLE and from_status != ChargeStatus.UNCOLLECTABLE:

        def uncollectable():
            last = latest()
            return [
                (f"charge.uncollectable:{charge.public_id}:{last.number if last else 0}", charge_payload(charge, last))
            ]

        events.append((EventKind.CHARGE_UNCOLLECTABLE, uncollectable))
    return events


def payout_paid(payout: Payout, charges: list[Charge]) -> None:
    event_publish(
        kind=EventKind.PAYOUT_PAID,
        key=f"payout.paid:{payout.reference}",
        payload={
            "id": payout.reference,
            "arrival_on": payout.arrival_on.isoformat(),
            "charges": [str(c.public_id) for c in charges],
            "amount_minor": sum(c.amount_minor for c in charges),
            "currency": charges[0].currency if charges else None,
        },
    )
