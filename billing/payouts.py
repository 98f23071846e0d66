"""Payouts (PAY-2, PAY-3): where a client's money goes, and which payout carried each paid charge.

Client charges are destination charges to the agency's connected account (PAY-1); agency charges stay on the
platform. A paid payout moves the charges it carried from Paid to Paid Out, whatever order the payment and
payout events arrive in.
"""

from __future__ import annotations

from django.db import connection
from django.db.models import Q

from billing.base_models import AbstractCharge
from billing.charges import TransitionEffects, charge_history_model, charge_locked, charge_transition
from billing.models import Charge
from billing.outbound import payout_paid
from billing.platform.models import Payout
from billing.providers.base import ProviderEvent
from billing.statuses import ChargeStatus
from core.locks import advisory_xact_lock
from tenants.selectors import current_agency


def charge_destination(charge: AbstractCharge) -> str | None:
    """Client charges go to the agency's connected account (PAY-1); agency charges stay on the platform."""
    return client_destination() if isinstance(charge, Charge) else None


def client_destination() -> str | None:
    agency = current_agency()
    return (agency.connected_account_id or None) if agency else None


def payouts_lock() -> None:
    """Serialize, within one agency, "a charge becomes Paid" with "a payout arrives" (held to the end of the
    transaction). Without it the two can run concurrently and neither sees the other: the charge is then
    credited to a later payout, or to none (found by the webhook storm test, R3)."""
    advisory_xact_lock(f"payouts:{connection.schema_name}")  # type: ignore[attr-defined]


def payout_covers(payout: Payout, charge: AbstractCharge) -> bool:
    """The sandbox names the charges of a payout; for Stripe, a payout carries what was available when it
    was made, so a charge paid before the payout's arrival date is in it."""
    if payout.charge_references:
        return charge.paid_reference in payout.charge_references
    return charge.paid_on is not None and charge.paid_on < payout.arrival_on


def payouts_paid_exist() -> bool:
    """Whether any payout to the current agency's account has been paid (saves looking for a batch's carriers)."""
    return Payout.objects.filter(account=client_destination() or "-", status="paid").exists()


def payout_for(charge: AbstractCharge) -> Payout | None:
    """The payout that carried a paid charge: the one that names it (sandbox), else the earliest paid payout
    to its account arriving after it was paid (Stripe). "Earliest" makes the answer the same whatever order
    the payout events arrived in: a later payout seen first does not keep charges an earlier one carried."""
    payouts = Payout.objects.filter(account=charge_destination(charge) or "-", status="paid").order_by(
        "arrival_on", "reference"
    )
    return next((payout for payout in payouts if payout_covers(payout, charge)), None)


def _payout_correct(charge: AbstractCharge, payout: Payout) -> int:
    """A Paid Out charge credited to a later payout because an earlier payout's event came late: credit it
    to the right one. The status stays Paid Out; the correction is in the charge's history."""
    previous = charge.payout_reference
    updated = (
        type(charge)
        ._default_manager.filter(pk=charge.pk, status=ChargeStatus.PAID_OUT)
        .update(payout_reference=payout.reference, paid_out_on=payout.arrival_on)
    )
    if updated:
        charge_history_model(charge).objects.create(
            charge=charge,
            from_status=ChargeStatus.PAID_OUT,
            to_status=ChargeStatus.PAID_OUT,
            reason=f"Payout {payout.reference} paid (was credited to {previous}: events arrived out of order)",
            business_date=payout.arrival_on,
        )
    return updated


def charge_paid_out(charge: AbstractCharge, payout: Payout, moves: TransitionEffects | None = None) -> int:
    if charge.status != ChargeStatus.PAID:
        return 0
    charge_transition(
        charge,
        ChargeStatus.PAID_OUT,
        reason=f"Payout {payout.reference} paid",
        today=payout.arrival_on,
        moves=moves,
        payout_reference=payout.reference,
        paid_out_on=payout.arrival_on,
    )
    return 1


def payout_apply(event: ProviderEvent) -> str:
    payout, _ = Payout.objects.get_or_create(
        reference=event.reference,
        defaults={
            "account": event.account,
            "arrival_on": event.occurred_on,
            "status": event.kind.split(".")[1],
            "charge_references": list(event.charge_references),
        },
    )
    if payout.status != "paid":
        return "payout failed"
    moved = corrected = 0
    # Paid charges it may carry, and Paid Out ones credited to a later payout that it may carry instead.
    candidates = Charge.objects.filter(
        Q(status=ChargeStatus.PAID) | Q(status=ChargeStatus.PAID_OUT, paid_out_on__gt=payout.arrival_on)
    )
    for charge in candidates:
        if not payout_covers(payout, charge):
            continue
        locked = charge_locked(charge)
        carrier = payout_for(locked)
        if carrier is None:
            continue
        if locked.status == ChargeStatus.PAID:
            moved += charge_paid_out(locked, carrier)
        elif locked.payout_reference != carrier.reference:
            corrected += _payout_correct(locked, carrier)
    if moved:  # outbound webhooks: published once per payout, by the key
        payout_paid(payout, list(Charge.objects.filter(payout_reference=payout.reference)))
    return f"{moved} paid out" + (f", {corrected} corrected" if corrected else "")
