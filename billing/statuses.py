"""The words of the billing cycle's state machine: charge statuses and the moves allowed between them,
attempt kinds and outcomes, and how an invoice's charges read as one status.

Data only, at the bottom of billing: models, selectors and pages read it; `billing/charges.py` is the one
place that moves a charge from one status to another.
"""

from __future__ import annotations

from django.db import models


class ChargeStatus(models.TextChoices):
    """What the Client Charges section shows (SPEC §5), plus Scheduled: built, not yet attempted."""

    SCHEDULED = "SCHEDULED", "Scheduled"
    AGENCY_INVOICED = "AGENCY_INVOICED", "Agency Invoiced"
    PENDING = "PENDING", "Pending"
    PAID = "PAID", "Paid"
    RETRYING = "RETRYING", "Retrying"
    UNCOLLECTABLE = "UNCOLLECTABLE", "Uncollectable"
    PAID_OUT = "PAID_OUT", "Paid Out"


S = ChargeStatus
# The allowed moves. Anything else is a bug and raises (billing/charges.py).
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    S.SCHEDULED: frozenset({S.PAID, S.PENDING, S.RETRYING, S.UNCOLLECTABLE, S.AGENCY_INVOICED}),
    S.PENDING: frozenset({S.PAID, S.RETRYING, S.UNCOLLECTABLE}),
    S.RETRYING: frozenset({S.PAID, S.PENDING, S.RETRYING, S.UNCOLLECTABLE, S.AGENCY_INVOICED}),
    S.UNCOLLECTABLE: frozenset({S.PAID, S.PENDING, S.UNCOLLECTABLE, S.AGENCY_INVOICED}),
    # A lost dispute (COR-2) takes the money back from a Paid or Paid Out charge: it is open again, and no
    # automatic attempt follows (docs/decisions.md, "Disputes beside the six statuses").
    S.PAID: frozenset({S.PAID_OUT, S.UNCOLLECTABLE}),
    S.AGENCY_INVOICED: frozenset(),
    # A payout that fails after it was paid gives its charges back (PAY-4): not Paid Out until one arrives.
    S.PAID_OUT: frozenset({S.UNCOLLECTABLE, S.PAID}),
}
COLLECTIBLE = frozenset({S.SCHEDULED, S.RETRYING, S.UNCOLLECTABLE})

# How an invoice with several charges (installments) reads: the first status present in this order.
STATUS_PRECEDENCE: tuple[str, ...] = (
    S.UNCOLLECTABLE,
    S.RETRYING,
    S.PENDING,
    S.SCHEDULED,
    S.AGENCY_INVOICED,
    S.PAID,
    S.PAID_OUT,
)
# Statuses that will not change any more as far as the invoice document is concerned.
SETTLED = frozenset({S.PAID, S.PAID_OUT, S.AGENCY_INVOICED})
COLLECTED = (S.PAID, S.PAID_OUT)
OUTSTANDING = (S.SCHEDULED, S.PENDING, S.RETRYING, S.UNCOLLECTABLE)


class AttemptKind(models.TextChoices):
    AUTOMATIC = "AUTOMATIC", "Automatic"
    MANUAL = "MANUAL", "Manual"
    CLIENT = "CLIENT", "Pay now (client)"  # the client's own attempt from the portal (POR-1)


class AttemptOutcome(models.TextChoices):
    STARTED = "STARTED", "Started"  # row written, provider call in flight (or the process died)
    UNKNOWN = "UNKNOWN", "Unknown"  # timeout / 5xx: to be looked up before anything else
    PENDING = "PENDING", "Pending"  # bank debit awaiting settlement
    SUCCEEDED = "SUCCEEDED", "Succeeded"
    DECLINED = "DECLINED", "Declined"
    SETTLEMENT_FAILED = "SETTLEMENT_FAILED", "Settlement failed"
    # On-session (Pay now): the cardholder is authenticating with their bank (3-D Secure, COL-7). Neither paid nor
    # failed yet; no other attempt is made meanwhile, and one left waiting too long is cancelled at the provider.
    REQUIRES_ACTION = "REQUIRES_ACTION", "Awaiting authentication"


UNRESOLVED_OUTCOMES = frozenset({AttemptOutcome.STARTED, AttemptOutcome.UNKNOWN, AttemptOutcome.REQUIRES_ACTION})
FAILED_OUTCOMES = frozenset({AttemptOutcome.DECLINED, AttemptOutcome.SETTLEMENT_FAILED})
# Passed for a charge's latest attempt when the caller does not hold it (None means: it has none): read it then.
LATEST_ATTEMPT_UNKNOWN: object = object()


class DisputeStatus(models.TextChoices):
    """A chargeback's state as the processor reports it (COR-2). Stripe's inquiry states map onto these:
    `warning_needs_response` → Needs response, `warning_under_review` → Under review, `warning_closed` → Won."""

    NEEDS_RESPONSE = "NEEDS_RESPONSE", "Needs response"
    UNDER_REVIEW = "UNDER_REVIEW", "Under review"
    WON = "WON", "Won"
    LOST = "LOST", "Lost"


DISPUTE_OPEN = frozenset({DisputeStatus.NEEDS_RESPONSE, DisputeStatus.UNDER_REVIEW})
DISPUTE_CLOSED = frozenset({DisputeStatus.WON, DisputeStatus.LOST})


class CreditOutcome(models.TextChoices):
    """Where a credit note's amount goes (COR-1)."""

    REFUND = "REFUND", "Refunded to the payment method"
    CREDIT = "CREDIT", "Kept as credit on the account"


class RefundStatus(models.TextChoices):
    STARTED = "STARTED", "Started"  # row written, provider call in flight (or its answer lost): resent with its key
    PENDING = "PENDING", "Pending"  # bank-debit refund awaiting settlement
    SUCCEEDED = "SUCCEEDED", "Succeeded"
    FAILED = "FAILED", "Failed"  # the money stays with the agency: kept as credit on the account
