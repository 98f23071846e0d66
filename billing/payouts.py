"""Payouts (PAY-1, PAY-2, PAY-4, ONB-2): where a client's money goes, held funds, and exactly which charges each
payout carries.

- A client charge is a **destination charge** to the agency's connected account once that account can receive
  transfers (PAY-1). Before — payouts not set up, or being verified, or restricted — it is collected on the
  platform's own account and **held** for the agency; when the account is enabled, each held charge is
  **transferred** to it (Stripe's separate charges and transfers, tied to the charge by `source_transaction`), one
  `FundsTransfer` per charge, and paid out from there like any other. No collected cent is untracked: at any day,
  collected = paid out + with the agency awaiting payout + held (`funds_summary`).
- A payout is read from the processor (`payout_sync`): its status and exactly the charges it carries — the
  connected account's balance transactions of that payout (Stripe) or the sandbox's books — plus earlier failed
  payouts whose returned funds it carries again. A paid payout moves its charges from Paid to Paid Out; a failed
  one moves them back to Paid, is shown and the agency notified; the payout that carries the money again moves
  them to Paid Out. Whatever order the payment and payout events arrive in, the charges end the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from django.db import IntegrityError, connection, transaction
from django.db.models import Q, Sum

from billing.base_models import AbstractCharge
from billing.charges import TransitionEffects, charge_locked, charge_transition
from billing.models import Charge, ChargeAttempt, FundsTransfer
from billing.notices import agency_recipients
from billing.outbound import payout_paid
from billing.payout_accounts import payouts_destination
from billing.platform.models import Payout, PayoutAccount, PayoutStatus
from billing.providers import get_provider
from billing.providers.base import PaymentProvider, ProviderError, TransferRequest
from billing.statuses import AttemptOutcome, ChargeStatus
from core.links import absolute_url
from core.locks import advisory_xact_lock
from core.money import format_minor
from notifications.catalog import NoticeKind
from notifications.services import NoticeDraft, notices_enqueue
from tenants.models import Agency
from tenants.selectors import current_agency

logger = logging.getLogger(__name__)


def charge_destination(charge: AbstractCharge) -> str | None:
    """Client charges go to the agency's connected account once it is enabled (PAY-1); agency charges stay on the
    platform."""
    return client_destination() if isinstance(charge, Charge) else None


def client_destination() -> str | None:
    return payouts_destination(current_agency())


def payouts_lock() -> None:
    """Serialize, within one agency, "a charge becomes Paid" with "a payout arrives" (held to the end of the
    transaction). Without it the two can run concurrently and neither sees the other: the charge is then
    credited to no payout (found by the webhook storm test, R3)."""
    advisory_xact_lock(f"payouts:{connection.schema_name}")  # type: ignore[attr-defined]


# --- which payout carries a charge -------------------------------------------------------------------------------


def payout_carried(payout: Payout) -> set[str]:
    """The PaymentIntents whose funds the payout carries: its own, and those of the failed payouts whose returned
    funds it pays out again (recursively)."""
    carried = set(payout.charge_references)
    seen = {payout.reference}
    returned = [r for r in payout.returned_payouts if r not in seen]
    while returned:
        earlier = list(Payout.objects.filter(reference__in=returned))
        seen.update(returned)
        returned = []
        for item in earlier:
            carried.update(item.charge_references)
            returned += [r for r in item.returned_payouts if r not in seen]
    return carried


def payouts_paid_exist() -> bool:
    """Whether any payout to the current agency's account has been paid (saves looking for a batch's carriers)."""
    return Payout.objects.filter(agency=current_agency(), status=PayoutStatus.PAID).exists()


def payout_for(charge: AbstractCharge) -> Payout | None:
    """The paid payout that carries a paid charge, if one has arrived: one that names it, or one that carries the
    returned funds of a failed payout that named it."""
    reference = charge.paid_reference
    if not reference or not isinstance(charge, Charge):
        return None
    naming = list(Payout.objects.filter(charge_references__contains=[reference]))
    carriers = [p for p in naming if p.status == PayoutStatus.PAID]
    failed = [p.reference for p in naming if p.status == PayoutStatus.FAILED]
    seen = set(failed)
    while failed and not carriers:
        later = list(Payout.objects.filter(Q(*[Q(returned_payouts__contains=[r]) for r in failed], _connector=Q.OR)))
        carriers = [p for p in later if p.status == PayoutStatus.PAID]
        failed = [p.reference for p in later if p.status == PayoutStatus.FAILED and p.reference not in seen]
        seen.update(failed)
    carriers.sort(key=lambda p: (p.arrival_on, p.reference))
    return carriers[-1] if carriers else None


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


def _charge_payout_returned(charge: AbstractCharge, payout: Payout, moves: TransitionEffects) -> int:
    """A payout that failed (after it was paid, or its event came after the paid one): its charges are not Paid Out
    any more; the money is back in the agency's balance and the next payout carries it."""
    if charge.status != ChargeStatus.PAID_OUT or charge.payout_reference != payout.reference:
        return 0
    why = payout.failure_message or payout.failure_code or payout.status
    charge_transition(
        charge,
        ChargeStatus.PAID,
        reason=f"Payout {payout.reference} {payout.status}: {why}"[:240],
        today=payout.arrival_on,
        moves=moves,
        payout_reference="",
        paid_out_on=None,
    )
    return 1


# --- payouts, as the processor reports them ----------------------------------------------------------------------


def _payout_failed_notice(agency: Agency, payout: Payout, charge_count: int) -> list[NoticeDraft]:
    context = {
        "agency_name": agency.name,
        "currency": payout.currency or agency.currency,
        "setup_url": absolute_url("/setup/", agency=agency.schema_name),
        "payouts_url": absolute_url(f"/payouts/{payout.public_id}/", agency=agency.schema_name),
        "amount": format_minor(payout.amount_minor, payout.currency or agency.currency),
        "payout_reference": payout.reference,
        "reason": payout.failure_message or payout.failure_code or "the bank refused it",
        "charge_count": str(charge_count),
    }
    return [
        NoticeDraft(
            account=f"agency:{email}",
            kind=NoticeKind.PAYOUT_FAILED,
            period=payout.reference,
            number=1,
            to_email=email,
            context=context,
            business_date=payout.arrival_on,
        )
        for email in agency_recipients(agency)
    ]


def payout_sync(*, agency: Agency, reference: str, provider: PaymentProvider | None = None) -> str:
    """Read one payout of the agency's connected account from the processor and apply it: store it with the
    charges it carries, then move those charges (Paid → Paid Out when it is paid; back to Paid when it failed).
    Runs in the agency's schema. Harmless when repeated or out of order: it applies what the processor says now."""
    provider = provider or get_provider()
    account = PayoutAccount.objects.filter(agency=agency).values_list("account_id", flat=True).first()
    account = account or agency.connected_account_id
    if not account:
        return "no payout account"
    info = provider.payout_retrieve(account=account, payout=reference)
    for earlier in info.returned_payouts:  # its returned funds name their charges: know them first
        if not Payout.objects.filter(reference=earlier).exists():
            payout_sync(agency=agency, reference=earlier, provider=provider)
    with transaction.atomic():
        payouts_lock()
        fields = {
            "agency": agency,
            "account": account,
            "amount_minor": info.amount_minor,
            "currency": info.currency,
            "arrival_on": info.arrival_on,
            "status": info.status,
            "failure_code": info.failure_code,
            "failure_message": info.failure_message[:240],
            "charge_references": list(info.charge_references),
            "returned_payouts": list(info.returned_payouts),
            "reconciled": True,
        }
        payout, created = Payout.objects.select_for_update().get_or_create(reference=reference, defaults=fields)
        if not created:
            previous_status = payout.status
            for name, value in fields.items():
                setattr(payout, name, value)
            payout.save()
        else:
            previous_status = ""
        carried = payout_carried(payout)
        moves = TransitionEffects()
        moved = returned = 0
        if payout.status == PayoutStatus.PAID:
            for charge in Charge.objects.filter(paid_reference__in=carried, status=ChargeStatus.PAID):
                moved += charge_paid_out(charge_locked(charge), payout, moves=moves)
        elif payout.status in (PayoutStatus.FAILED, PayoutStatus.CANCELED):
            for charge in Charge.objects.filter(payout_reference=payout.reference, status=ChargeStatus.PAID_OUT):
                returned += _charge_payout_returned(charge_locked(charge), payout, moves)
        moves.flush()
        if payout.status == PayoutStatus.FAILED and previous_status != PayoutStatus.FAILED:
            count = Charge.objects.filter(paid_reference__in=carried).count()
            notices_enqueue(drafts=_payout_failed_notice(agency, payout, count))  # once per payout (NOT-7's key)
        if payout.status == PayoutStatus.PAID and moved:  # outbound webhooks: published once per payout, by the key
            payout_paid(payout, list(Charge.objects.filter(payout_reference=payout.reference)))
    words = f"payout {payout.status}: {moved} paid out"
    return words + (f", {returned} back to Paid" if returned else "")


# --- held funds ----------------------------------------------------------------------------------------------------


def charges_held():
    """Client charges collected on the platform's account (payouts were not enabled when they were collected) whose
    funds have not been transferred to the agency yet."""
    collected_on_platform = (
        ChargeAttempt.objects.filter(outcome=AttemptOutcome.SUCCEEDED, destination="")
        .exclude(gateway_reference="")
        .values("gateway_reference")
    )
    return Charge.objects.filter(
        status__in=(ChargeStatus.PAID, ChargeStatus.PAID_OUT),
        paid_reference__in=collected_on_platform,
    ).filter(Q(funds_transfer__isnull=True) | Q(funds_transfer__transferred_on__isnull=True))


def held_funds_transfer(*, today: date, provider: PaymentProvider | None = None) -> dict:
    """Send every held charge's funds to the agency's connected account, if it can receive them now. One transfer per
    charge: the row (unique per charge) is committed before the processor is called, and its key is the idempotency
    key, so a crash or a rerun never transfers a charge twice. Runs in the agency's schema."""
    destination = client_destination()
    held = list(charges_held().order_by("paid_on", "id"))
    if destination is None or not held:
        return {"held": len(held), "transferred": 0}
    provider = provider or get_provider()
    transferred = 0
    for charge in held:
        try:
            with transaction.atomic():
                record, _ = FundsTransfer.objects.get_or_create(
                    charge=charge,
                    defaults={
                        "account": destination,
                        "amount_minor": charge.amount_minor,
                        "currency": charge.currency,
                        "idempotency_key": f"tr-{charge.public_id.hex}",
                        "created_on": today,
                    },
                )
        except IntegrityError:
            continue  # another process took it
        try:
            reference = provider.transfer_create(
                TransferRequest(
                    amount_minor=record.amount_minor,
                    currency=record.currency,
                    destination=record.account,
                    charge_reference=charge.paid_reference,
                    idempotency_key=record.idempotency_key,
                    business_date=today,
                    metadata={"schema": connection.schema_name, "charge": str(charge.public_id)},  # type: ignore[attr-defined]
                )
            )
        except ProviderError as exc:
            FundsTransfer.objects.filter(pk=record.pk).update(error=str(exc)[:240])
            logger.warning("held funds of charge %s not transferred: %s", charge.public_id, exc)
            continue
        except Exception as exc:  # noqa: BLE001 - unknown outcome: the same key is used on the next run
            FundsTransfer.objects.filter(pk=record.pk).update(error=f"unknown: {exc}"[:240])
            logger.warning("held funds transfer of charge %s unknown: %s", charge.public_id, exc)
            continue
        FundsTransfer.objects.filter(pk=record.pk).update(reference=reference, transferred_on=today, error="")
        transferred += 1
    return {"held": len(held) - transferred, "transferred": transferred}


@dataclass(frozen=True)
class FundsSummary:
    """Where the money collected for the agency's clients is, in minor units (ONB-2: every cent accounted for)."""

    currency: str
    collected: int  # charges Paid or Paid Out
    paid_out: int  # in a paid payout
    awaiting_payout: int  # with the agency's connected account, not paid out yet
    held: int  # on the platform's account until the agency's payouts are enabled


def funds_summary(*, currency: str) -> FundsSummary:
    def total(queryset) -> int:
        return queryset.aggregate(total=Sum("amount_minor"))["total"] or 0

    collected = total(Charge.objects.filter(status__in=(ChargeStatus.PAID, ChargeStatus.PAID_OUT)))
    paid_out = total(Charge.objects.filter(status=ChargeStatus.PAID_OUT))
    held_ids = charges_held().values("id")
    held = total(Charge.objects.filter(id__in=held_ids))
    awaiting = total(Charge.objects.filter(status=ChargeStatus.PAID).exclude(id__in=held_ids))
    return FundsSummary(currency, collected, paid_out, awaiting, held)


# --- what the agency sees (PAY-4) ----------------------------------------------------------------------------------


def payouts_of(agency: Agency):
    """The agency's payouts, newest first."""
    return Payout.objects.filter(agency=agency).order_by("-arrival_on", "-id")


def payout_charges(payout: Payout):
    """The client charges a payout carries (the agency's schema): exactly the ones the processor lists in it."""
    return Charge.objects.filter(paid_reference__in=payout_carried(payout)).select_related("client", "invoice")


def charge_is_destination_charge(charge: Charge) -> bool:
    """Whether a paid charge was a destination charge to the agency's connected account (PAY-1), whose transfer a
    refund or a lost dispute reverses. A charge collected while the agency's payouts were not enabled was the
    platform's own (held, ONB-2): there is no destination transfer to reverse."""
    if not charge.paid_reference:
        return False
    return (
        ChargeAttempt.objects.filter(charge=charge, gateway_reference=charge.paid_reference)
        .exclude(destination="")
        .exists()
    )
