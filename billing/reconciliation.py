"""Platform reconciliation for billing support (PAY-1, PAY-2, ONB-2, COR-1, COR-2): for one agency and a range of
the agency's days, every client charge collected in the range and where its money is now.

    collected - refunded - lost disputes = paid out + held + in transit

holds to the cent by construction, and each figure is the sum of a list of charges: a collected charge is placed
whole in one position (`charge_position`), and what refunds and lost disputes took back of it is subtracted from
that charge alone (`movements`). Those two functions are the only places that decide: a new way money leaves (a
refund, a dispute) or where it waits (held until payouts are enabled: `billing.payouts.charges_held`) is read
there, and every figure, list and CSV follows.

Runs in the agency's schema (`agency_reconciliation` enters it); the charges' own dates are the agency's days.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from django.db import models
from django.db.models import Count, Max, QuerySet, Subquery, Sum
from django_tenants.utils import tenant_context

from billing.models import Charge, ChargeEvent, Dispute, Refund
from billing.payout_accounts import payouts_destination
from billing.payouts import charges_held
from billing.statuses import COLLECTED, ChargeStatus, DisputeStatus, RefundStatus
from tenants.models import Agency


class Position(models.TextChoices):
    """Where a collected charge's money is."""

    PAID_OUT = "PAID_OUT", "Paid out"  # in a payout to the agency's account that was paid (PAY-2)
    IN_TRANSIT = "IN_TRANSIT", "In transit"  # collected for the agency's account, not in a paid payout yet
    HELD = "HELD", "Held"  # collected while the agency cannot be paid out: kept for it (ONB-2)


@dataclass(frozen=True, slots=True)
class Movements:
    """What moved on one charge: collected on the range's days (each move to Paid is one collection of its amount),
    refunded (COR-1), under dispute, and lost in disputes (COR-2)."""

    collected_minor: int
    collected_on: date  # the last collection in the range
    refunded_minor: int = 0
    disputed_minor: int = 0
    disputes_lost_minor: int = 0

    @property
    def net_minor(self) -> int:
        """What of it is the agency's: paid out, in transit or held."""
        return self.collected_minor - self.refunded_minor - self.disputes_lost_minor


# Refunds the processor accepted: their money has left (a failed one returned nothing; a started one is in flight
# and counts once the processor answers).
REFUNDED = (RefundStatus.SUCCEEDED, RefundStatus.PENDING)


def collections_in(*, date_from: date, date_to: date):
    """The charge events that are collections on those days: a charge's moves to Paid from a status where it was not
    collected (a lost dispute clears the charge's paid date, so the history, not the charge, says when it was
    collected). Not a note in a paid charge's history (Paid → Paid: a dispute opened) nor a payout that failed
    (Paid Out → Paid): the money came in once."""
    return ChargeEvent.objects.filter(
        to_status=ChargeStatus.PAID, business_date__gte=date_from, business_date__lte=date_to
    ).exclude(from_status__in=COLLECTED)


def movements(*, charges: list[Charge], date_from: date, date_to: date) -> dict[int, Movements]:
    """Per charge id: its collections on the range's days, and what refunds and disputes took back of it. The one
    place money in and out of a collected charge is counted; every figure, list and CSV is made of these. Three
    grouped queries whatever the number of charges."""
    ids = [charge.pk for charge in charges]
    amount = {charge.pk: charge.amount_minor for charge in charges}
    collected: dict[int, tuple[int, date]] = {
        charge_id: (count, last)
        for charge_id, count, last in collections_in(date_from=date_from, date_to=date_to)
        .filter(charge_id__in=ids)
        .order_by()
        .values("charge_id")
        .annotate(n=Count("id"), last=Max("business_date"))
        .values_list("charge_id", "n", "last")
    }
    refunded = dict(
        Refund.objects.filter(charge_id__in=ids, status__in=REFUNDED)
        .order_by()
        .values("charge_id")
        .annotate(total=Sum("amount_minor"))
        .values_list("charge_id", "total")
    )
    disputed: dict[int, list[int]] = {}
    for charge_id, status, total in (
        Dispute.objects.filter(charge_id__in=ids)
        .order_by()
        .values("charge_id", "status")
        .annotate(total=Sum("amount_minor"))
        .values_list("charge_id", "status", "total")
    ):
        both = disputed.setdefault(charge_id, [0, 0])
        both[0] += total
        both[1] += total if status == DisputeStatus.LOST else 0
    return {
        charge_id: Movements(
            collected_minor=count * amount[charge_id],
            collected_on=last,
            refunded_minor=refunded.get(charge_id, 0),
            disputed_minor=disputed.get(charge_id, [0, 0])[0],
            disputes_lost_minor=disputed.get(charge_id, [0, 0])[1],
        )
        for charge_id, (count, last) in collected.items()
    }


def payouts_enabled(agency: Agency) -> bool:
    """Whether what the agency collects now goes to its connected account (PAY-1); before, it is held (ONB-2)."""
    return payouts_destination(agency) is not None


def charge_position(status: str, *, held: bool) -> Position:
    """Where a collected charge's money is: held on the platform's account for the agency (`billing.payouts.
    charges_held`: collected before its payouts were enabled, not transferred yet), in a paid payout, or else on its
    way to the agency (with its connected account, not paid out yet)."""
    if held:
        return Position.HELD
    return Position.PAID_OUT if status == ChargeStatus.PAID_OUT else Position.IN_TRANSIT


def collected_charges(*, date_from: date, date_to: date) -> QuerySet[Charge]:
    """Client charges collected (paid, PAY-1) on the agency's days from `date_from` to `date_to`, both included."""
    collected = collections_in(date_from=date_from, date_to=date_to).values("charge_id")
    return Charge.objects.filter(pk__in=Subquery(collected))


def position_filter(position: str) -> models.Q:
    """The charges of `collected_charges` in a position, as a condition (lists are paginated in the database)."""
    held = models.Q(pk__in=charges_held().values("id"))
    if position == Position.HELD:
        return held
    if position == Position.PAID_OUT:
        return models.Q(status=ChargeStatus.PAID_OUT) & ~held
    return ~models.Q(status=ChargeStatus.PAID_OUT) & ~held


@dataclass(frozen=True, slots=True)
class ReconciledCharge:
    """One collected charge, what moved on it, and where what is left of it is."""

    charge: Charge
    moved: Movements
    position: Position

    @property
    def net_minor(self) -> int:
        return self.moved.net_minor


def reconciled(charges: Iterable[Charge], *, date_from: date, date_to: date) -> list[ReconciledCharge]:
    rows = list(charges)
    moved = movements(charges=rows, date_from=date_from, date_to=date_to)
    held = set(charges_held().filter(pk__in=[charge.pk for charge in rows]).values_list("id", flat=True))
    return [
        ReconciledCharge(charge, moved[charge.pk], charge_position(charge.status, held=charge.pk in held))
        for charge in rows
        if charge.pk in moved
    ]


@dataclass(frozen=True, slots=True)
class Reconciliation:
    agency: str
    currency: str
    date_from: date
    date_to: date
    payouts_enabled: bool
    collected_minor: int
    refunded_minor: int
    disputed_minor: int
    disputes_lost_minor: int
    paid_out_minor: int
    in_transit_minor: int
    held_minor: int
    counts: dict[str, int]  # charges per figure

    @property
    def balanced(self) -> bool:
        """collected - refunded - lost disputes = paid out + held + in transit."""
        left = self.collected_minor - self.refunded_minor - self.disputes_lost_minor
        return left == self.paid_out_minor + self.held_minor + self.in_transit_minor


def _figures(
    agency: Agency, rows: list[ReconciledCharge], *, date_from: date, date_to: date, can_be_paid_out: bool
) -> Reconciliation:
    totals = dict.fromkeys(("collected", "refunded", "disputed", "disputes_lost", *map(str.lower, Position)), 0)
    counts = dict.fromkeys(totals, 0)
    for row in rows:
        parts = {
            "collected": row.moved.collected_minor,
            "refunded": row.moved.refunded_minor,
            "disputed": row.moved.disputed_minor,
            "disputes_lost": row.moved.disputes_lost_minor,
            row.position.lower(): row.net_minor,
        }
        for name, amount in parts.items():
            totals[name] += amount
            counts[name] += 1 if amount or name in ("collected", row.position.lower()) else 0
    return Reconciliation(
        agency=agency.schema_name,
        currency=agency.currency,
        date_from=date_from,
        date_to=date_to,
        payouts_enabled=can_be_paid_out,
        collected_minor=totals["collected"],
        refunded_minor=totals["refunded"],
        disputed_minor=totals["disputed"],
        disputes_lost_minor=totals["disputes_lost"],
        paid_out_minor=totals["paid_out"],
        in_transit_minor=totals["in_transit"],
        held_minor=totals["held"],
        counts=counts,
    )


# Only what the figures and lists show is read: a month of a large agency is tens of thousands of charges.
CHARGE_COLUMNS = (
    "public_id",
    "due_on",
    "installment",
    "amount_minor",
    "currency",
    "status",
    "billing_date",
    "paid_on",
    "paid_reference",
    "payout_reference",
    "paid_out_on",
    "client__public_id",
    "client__name",
    "invoice__public_id",
    "invoice__number",
)


def reconciliation_charges(*, date_from: date, date_to: date, position: str | None):
    """The collected charges of the range (in the current agency schema), optionally of one position, with what the
    lists show."""
    charges = collected_charges(date_from=date_from, date_to=date_to).select_related("client", "invoice")
    if position:
        charges = charges.filter(position_filter(position))
    return charges.only(*CHARGE_COLUMNS)


def agency_reconciliation(*, agency: Agency, date_from: date, date_to: date) -> Reconciliation:
    """The figures for the charges the agency collected from `date_from` to `date_to` (its days, both included)."""
    can_be_paid_out = payouts_enabled(agency)
    with tenant_context(agency):
        charges = collected_charges(date_from=date_from, date_to=date_to).only("id", "amount_minor", "status")
        rows = reconciled(charges.order_by(), date_from=date_from, date_to=date_to)
    return _figures(agency, rows, date_from=date_from, date_to=date_to, can_be_paid_out=can_be_paid_out)


def agency_reconciliation_rows(*, agency: Agency, date_from: date, date_to: date) -> list[ReconciledCharge]:
    """Every collected charge of the range with its position: the lines behind each figure (the CSV)."""
    with tenant_context(agency):
        charges = reconciliation_charges(date_from=date_from, date_to=date_to, position=None).order_by("due_on", "id")
        return reconciled(charges, date_from=date_from, date_to=date_to)
