"""Platform reconciliation for billing support (PAY-1, PAY-2, ONB-2, COR-1, COR-2): for one agency and a range of
the agency's days, every client charge collected in the range and where its money is now.

    collected - refunded - lost disputes = paid out + held + in transit

holds to the cent by construction, and each figure is the sum of a list of charges: a collected charge is placed
whole in one position (`charge_position`), and what refunds and lost disputes took back of it is subtracted from
that charge alone (`takebacks`). Those two functions are the only places that decide: a new way money leaves (a
refund, a dispute) or waits (funds held until payouts are enabled) is added there, and every figure, list and CSV
follows.

Runs in the agency's schema (`agency_reconciliation` enters it); the charges' own dates are the agency's days.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from django.db import models
from django.db.models import QuerySet
from django_tenants.utils import tenant_context

from billing.models import Charge
from billing.statuses import ChargeStatus
from tenants.models import Agency


class Position(models.TextChoices):
    """Where a collected charge's money is."""

    PAID_OUT = "PAID_OUT", "Paid out"  # in a payout to the agency's account that was paid (PAY-2)
    IN_TRANSIT = "IN_TRANSIT", "In transit"  # collected for the agency's account, not in a paid payout yet
    HELD = "HELD", "Held"  # collected while the agency cannot be paid out: kept for it (ONB-2)


@dataclass(frozen=True, slots=True)
class Takeback:
    """What left a collected charge again: refunded (COR-1), under dispute and lost in a dispute (COR-2)."""

    refunded_minor: int = 0
    disputed_minor: int = 0
    disputes_lost_minor: int = 0


NOTHING_TAKEN = Takeback()


def takebacks(charge_ids: Iterable[int]) -> dict[int, Takeback]:
    """Refunds and disputes per charge id, for the charges that have any. The one place they are counted: there
    are no refunds or disputes in the product yet, so none is taken back; when they exist, they are summed here
    (one grouped query each) and every figure subtracts them."""
    return {}


def payouts_enabled(agency: Agency) -> bool:
    """Whether the agency can be paid out now: its collected money is on its way to it (in transit) or waits for it
    (held). Today: a connected account is set (PAY-1)."""
    return bool(agency.connected_account_id)


def charge_position(status: str, *, can_be_paid_out: bool) -> Position:
    """Where a collected charge's money is, from its status and whether the agency can be paid out."""
    if status == ChargeStatus.PAID_OUT:
        return Position.PAID_OUT
    return Position.IN_TRANSIT if can_be_paid_out else Position.HELD


def collected_charges(*, date_from: date, date_to: date) -> QuerySet[Charge]:
    """Client charges collected (paid, PAY-1) on the agency's days from `date_from` to `date_to`, both included."""
    return Charge.objects.filter(paid_on__gte=date_from, paid_on__lte=date_to).exclude(paid_on__isnull=True)


def position_filter(position: str, *, can_be_paid_out: bool) -> models.Q:
    """The charges of `collected_charges` in a position, as a condition (lists are paginated in the database)."""
    if position == Position.PAID_OUT:
        return models.Q(status=ChargeStatus.PAID_OUT)
    if (position == Position.IN_TRANSIT) == can_be_paid_out:
        return ~models.Q(status=ChargeStatus.PAID_OUT)
    return models.Q(pk__in=[])


@dataclass(frozen=True, slots=True)
class ReconciledCharge:
    """One collected charge, where its money is, and what was taken back of it."""

    charge: Charge
    position: Position
    takeback: Takeback

    @property
    def net_minor(self) -> int:
        """What of the charge is the agency's: paid out, in transit or held."""
        return self.charge.amount_minor - self.takeback.refunded_minor - self.takeback.disputes_lost_minor


def reconciled(charges: Iterable[Charge], *, can_be_paid_out: bool) -> list[ReconciledCharge]:
    rows = list(charges)
    taken = takebacks(charge.pk for charge in rows)
    return [
        ReconciledCharge(
            charge,
            charge_position(charge.status, can_be_paid_out=can_be_paid_out),
            taken.get(charge.pk, NOTHING_TAKEN),
        )
        for charge in rows
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
            "collected": row.charge.amount_minor,
            "refunded": row.takeback.refunded_minor,
            "disputed": row.takeback.disputed_minor,
            "disputes_lost": row.takeback.disputes_lost_minor,
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


def reconciliation_charges(*, date_from: date, date_to: date, position: str | None, can_be_paid_out: bool):
    """The collected charges of the range (in the current agency schema), optionally of one position, with what the
    lists show; ordered by collection day."""
    charges = collected_charges(date_from=date_from, date_to=date_to).select_related("client", "invoice")
    if position:
        charges = charges.filter(position_filter(position, can_be_paid_out=can_be_paid_out))
    return charges.only(*CHARGE_COLUMNS)


def agency_reconciliation(*, agency: Agency, date_from: date, date_to: date) -> Reconciliation:
    """The figures for the charges the agency collected from `date_from` to `date_to` (its days, both included)."""
    can_be_paid_out = payouts_enabled(agency)
    with tenant_context(agency):
        charges = collected_charges(date_from=date_from, date_to=date_to).only("id", "amount_minor", "status")
        rows = reconciled(charges.order_by(), can_be_paid_out=can_be_paid_out)
    return _figures(agency, rows, date_from=date_from, date_to=date_to, can_be_paid_out=can_be_paid_out)


def agency_reconciliation_rows(*, agency: Agency, date_from: date, date_to: date) -> list[ReconciledCharge]:
    """Every collected charge of the range with its position: the lines behind each figure (the CSV)."""
    can_be_paid_out = payouts_enabled(agency)
    with tenant_context(agency):
        charges = reconciliation_charges(
            date_from=date_from, date_to=date_to, position=None, can_be_paid_out=can_be_paid_out
        ).order_by("paid_on", "id")
        return reconciled(charges, can_be_paid_out=can_be_paid_out)
