"""Bounds on what an invoice may carry, and the accounts held because their invoice is out of them (MON-1).

Each input amount is bounded on its own (2^53 − 1), but what they add up to is not: a license price, fifty taxes at
100 % and two dozen service lines, or a burst of usage, can sum past what one charge may carry (the processor's
per-charge limit, `core.money.charge_ceiling_minor`) and past PostgreSQL's bigint. So every drafted invoice is
checked line by line and in total before it is written. One that is out of bounds is not built: its account is
*held* with the reason (`InvoiceHold`), and every other account of the agency is billed as usual. Later billing
runs check held accounts again and build the invoice once the configuration allows it.
"""

from __future__ import annotations

import logging
from datetime import date

from django.db.models import F, Q

from billing.drafting import InvoiceDraft
from billing.models import InvoiceHold
from core.money import MAX_AMOUNT_MINOR, charge_ceiling_minor, format_minor, over_ceiling_message

logger = logging.getLogger(__name__)


def draft_problem(draft: InvoiceDraft, *, ceiling_minor: int | None = None) -> str | None:
    """Why this invoice may not be built, or None: a line, a tax or the total above the per-charge ceiling, or a
    quantity beyond what is stored exactly."""
    ceiling = charge_ceiling_minor() if ceiling_minor is None else ceiling_minor
    for line in draft.lines:
        if not 0 <= line.quantity <= MAX_AMOUNT_MINOR:
            return f"{line.description}: a quantity of {line.quantity:,} is more than an invoice line can carry."
        if abs(line.amount_minor) > ceiling:
            return over_ceiling_message(f"The line “{line.description}”", line.amount_minor, draft.currency, ceiling)
    total = draft.total_minor
    if total > ceiling:
        return over_ceiling_message("The invoice total", total, draft.currency, ceiling)
    return None


def invoice_hold_record(*, client_id: int | None, billing_date: date, reason: str, today: date) -> None:
    """Hold one account's invoice of `billing_date` with the reason (or note one more check of a hold already
    recorded). Logged as an error: the agency's and support's pages show it, the log alerts the operator."""
    reason = reason[:2000]
    updated = InvoiceHold.objects.filter(client_id=client_id, billing_date=billing_date).update(
        reason=reason, last_checked_on=today, checks=F("checks") + 1, released_on=None
    )
    if not updated:
        InvoiceHold.objects.create(
            client_id=client_id, billing_date=billing_date, reason=reason, held_on=today, last_checked_on=today
        )
    account = f"client {client_id}" if client_id is not None else "the agency's own invoice"
    logger.error("invoice held: %s, billing date %s: %s", account, billing_date, reason)


def invoice_holds_release(*, built: dict[int | None, str], billing_date: date, today: date) -> int:
    """Release the holds of accounts whose invoice of `billing_date` is now built ({client id: invoice number})."""
    # One query in the common case (no hold among thousands of accounts just billed).
    client_ids = [pk for pk in built if pk is not None]
    open_holds = InvoiceHold.objects.filter(billing_date=billing_date, released_on__isnull=True).filter(
        Q(client_id__in=client_ids) | Q(client_id__isnull=True) if None in built else Q(client_id__in=client_ids)
    )
    released = 0
    for hold in open_holds:
        released += InvoiceHold.objects.filter(pk=hold.pk, released_on__isnull=True).update(
            released_on=today, invoice_number=built[hold.client_id]
        )
        logger.info("invoice hold released: client %s, billing date %s", hold.client_id, billing_date)
    return released


def invoice_holds_due(*, today: date) -> list[InvoiceHold]:
    """Open holds not checked yet today, oldest billing date first: each billing run checks them again."""
    return list(
        InvoiceHold.objects.filter(
            released_on__isnull=True, last_checked_on__lt=today, billing_date__lte=today
        ).order_by("billing_date", "id")
    )


def ceiling_label(currency: str) -> str:
    return f"{format_minor(charge_ceiling_minor(), currency)} {currency}"


# A charge found above the ceiling when it is due (built before a lower ceiling was set) is never sent to the
# processor: it is held as Uncollectable with this reason, for billing support to settle (Agency Invoiced, or a
# corrected invoice). The notices give `AMOUNT_TOO_LARGE` as the reason, Stripe's own code for such an amount.
AMOUNT_TOO_LARGE = "amount_too_large"


def charge_over_ceiling(amount_minor: int, currency: str) -> str | None:
    """Why a charge of this amount may not be sent to the processor, or None."""
    if amount_minor <= charge_ceiling_minor():
        return None
    return over_ceiling_message("This charge", amount_minor, currency) + " It was not sent to the processor."
