"""Refunds: partial and full, of card and bank-debit charges, with `reverse_transfer` and `refund_application_fee`.

Card refunds succeed at once (except Stripe's test card 4000000000005126, whose refunds succeed, then fail when
settled). Bank-debit refunds (ACH, SEPA) are `pending` until `POST /_test/refunds/settle`, then `succeeded` (or
`failed`). The refund debits the balance of the charge's account at once (`refund`); a failure gives it back
(`refund_failure`). `reverse_transfer=true` on a destination charge reverses the transfer in proportion to the
refund (the rest of it when the charge is refunded in full): `transfer_refund` on the platform, `payment_refund`
on the connected account. Events: `refund.created` and `charge.refunded` on creation; `refund.updated` and
`charge.refund.updated` on settlement, plus `refund.failed` when it fails.
"""

from __future__ import annotations

import contextlib
from typing import Any

from localstripe.resources import Charge, PaymentIntent, StripeObject, store

from . import ledger
from .cards import REFUND_FAILS_CARDS
from .core import (
    S,
    _background_context,
    _created_filter,
    _ctx_account,
    _invalid,
    _list_of,
    _objects,
    _StripeError,
    _to_bool,
    _to_int,
    _unknown,
)
from .webhooks import _emit

SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "cad": "CA$", "aud": "A$"}


def _money(amount: int, currency: str) -> str:
    return f"{SYMBOLS.get(currency, currency.upper() + ' ')}{amount / 100:,.2f}"


def _payment_method_of(charge: Any) -> Any:
    return store.get("payment_method:" + str(charge.payment_method))


def _refundable_charge(charge: Any, payment_intent: Any) -> Any:
    if payment_intent is not None:
        pi = PaymentIntent._api_retrieve(payment_intent)
        if getattr(pi, "_account", None) != _ctx_account.get():
            raise _StripeError(404, f"No such payment_intent: '{payment_intent}'", code="resource_missing")
        latest = pi.latest_charge
        if latest is None or latest.status != "succeeded":
            raise _StripeError(
                400,
                f"This PaymentIntent ({pi.id}) does not have a successful charge to refund.",
                code="charge_not_refundable",
                param="payment_intent",
            )
        if charge is not None and charge != latest.id:
            raise _invalid("charge", f"Charge {charge} does not belong to PaymentIntent {pi.id}.")
        return latest
    if charge is None:
        raise _StripeError(
            400,
            "One of the following params should be provided for this request: payment_intent or charge.",
            code="parameter_missing",
        )
    obj = Charge._api_retrieve(charge)
    if getattr(obj, "_account", None) != _ctx_account.get() or getattr(obj, "_is_payment", False):
        raise _StripeError(404, f"No such charge: '{charge}'", code="resource_missing", param="charge")
    if obj.status != "succeeded":
        pi = f"This PaymentIntent ({obj.payment_intent})" if obj.payment_intent else f"Charge {obj.id}"
        raise _StripeError(
            400,
            f"{pi} does not have a successful charge to refund."
            if obj.payment_intent
            else f"{pi} has not succeeded and cannot be refunded.",
            code="charge_not_refundable",
            param="charge",
        )
    return obj


def _refund_init(
    self,
    charge=None,
    payment_intent=None,
    amount=None,
    metadata=None,
    reason=None,
    refund_application_fee=None,
    reverse_transfer=None,
    instructions_email=None,
    **kwargs,
):
    if kwargs:
        raise _unknown(kwargs)
    if reason not in (None, "", "duplicate", "fraudulent", "requested_by_customer"):
        raise _invalid("reason")
    if metadata is not None and metadata != "" and not isinstance(metadata, dict):
        raise _invalid("metadata")
    refund_application_fee = _to_bool(refund_application_fee, "refund_application_fee")
    reverse_transfer = _to_bool(reverse_transfer, "reverse_transfer")
    charge_obj = _refundable_charge(charge, payment_intent)
    dispute = store.get("dispute:" + str(getattr(charge_obj, "_dispute", None)))
    if dispute is not None and not dispute.is_charge_refundable:
        raise _StripeError(
            400, f"Charge {charge_obj.id} has been charged back; cannot issue a refund.", code="charge_disputed"
        )
    remaining = charge_obj.amount - charge_obj.amount_refunded
    if amount in (None, ""):
        refund_amount = remaining
    else:
        refund_amount = _to_int(amount, "amount")
        if refund_amount <= 0:
            raise _StripeError(400, "Invalid positive integer", code="parameter_invalid_integer", param="amount")
    if remaining <= 0:
        raise _StripeError(400, f"Charge {charge_obj.id} has already been refunded.", code="charge_already_refunded")
    if refund_amount > remaining:
        cur = charge_obj.currency
        what = (
            f"charge amount ({_money(charge_obj.amount, cur)})"
            if remaining == charge_obj.amount
            else f"unrefunded amount on charge ({_money(remaining, cur)})"
        )
        raise _StripeError(
            400,
            f"Refund amount ({_money(refund_amount, cur)}) is greater than {what}",
            code="amount_too_large",
            param="amount",
        )

    StripeObject.__init__(self)
    pm = _payment_method_of(charge_obj)
    bank = pm is not None and pm.type in ("sepa_debit", "us_bank_account")
    self.amount = refund_amount
    self.charge = charge_obj.id
    self.currency = charge_obj.currency
    self.date = self.created
    self.description = None
    self.destination_details = (
        {"type": pm.type, pm.type: {}}
        if bank
        else {
            "type": "card",
            "card": {"reference": None, "reference_status": "pending", "reference_type": None, "type": "refund"},
        }
    )
    self.failure_balance_transaction = None
    self.failure_reason = None
    self.instructions_email = instructions_email
    self.metadata = metadata or {}
    self.next_action = None
    self.payment_intent = charge_obj.payment_intent
    self.reason = reason or None
    self.receipt_number = None
    self.source_transfer_reversal = None
    self.status = "pending" if bank else "succeeded"
    self.transfer_reversal = None
    self._account = getattr(charge_obj, "_account", None)
    self._settles = bank or (pm is not None and pm.type == "card" and pm._card_number in REFUND_FAILS_CARDS)
    S.refunds_by_charge.setdefault(charge_obj.id, []).append(self.id)
    if self._settles:
        S.pending_refunds.append(self.id)

    account = self._account
    self.balance_transaction = ledger.record(account, self.currency, -refund_amount, "refund", self.id).id
    fee = getattr(charge_obj, "application_fee_amount", None) or 0
    if account and refund_application_fee and fee:
        fee_refund = (fee * refund_amount * 2 + charge_obj.amount) // (2 * charge_obj.amount)
        ledger.record(None, self.currency, -fee_refund, "application_fee_refund", self.id)
        ledger.record(account, self.currency, fee_refund, "application_fee_refund", self.id)
    transfer_id = getattr(charge_obj, "transfer", None)
    if reverse_transfer and transfer_id:
        transfer = store["transfer:" + transfer_id]
        left = transfer.amount - transfer.amount_reversed
        if refund_amount == remaining:  # the charge is now refunded in full: reverse all that is left
            reversal = left
        else:
            reversal = min((transfer.amount * refund_amount * 2 + charge_obj.amount) // (2 * charge_obj.amount), left)
        if reversal > 0:
            from .connect import TransferReversal

            self.transfer_reversal = TransferReversal(transfer, reversal, source_refund=self.id).id
    _emit("refund.created", self)
    _emit("charge.refunded", charge_obj)


def settle_refund(refund: Any, outcome: str | None = None, failure_reason: str | None = None) -> dict | None:
    """A pending bank refund (or a refund of 4000000000005126) reaches its outcome."""
    if refund.status not in ("pending", "succeeded") or refund.id not in S.pending_refunds:
        return None
    with contextlib.suppress(ValueError):
        S.pending_refunds.remove(refund.id)
    pm = store.get("payment_method:" + str(store["charge:" + refund.charge].payment_method))
    fails = pm is not None and pm.type == "card" and pm._card_number in REFUND_FAILS_CARDS
    if outcome == "failed":
        fails = True
    elif outcome == "succeeded":
        fails = False
    previous = {"status": refund.status}
    with _background_context(refund._account):
        if fails:
            refund.status = "failed"
            refund.failure_reason = failure_reason or ("expired_or_canceled_card" if pm.type == "card" else "unknown")
            txn = ledger.record(refund._account, refund.currency, refund.amount, "refund_failure", refund.id)
            refund.failure_balance_transaction = txn.id
            _emit("refund.failed", refund)
        else:
            if refund.status == "succeeded":
                return {"refund": refund.id, "status": refund.status}
            refund.status = "succeeded"
        _emit("refund.updated", refund, previous=previous)
        _emit("charge.refund.updated", refund, previous=previous)
    return {"refund": refund.id, "charge": refund.charge, "status": refund.status, "amount": refund.amount}


def _refund_list(
    cls, url, charge=None, payment_intent=None, created=None, limit=None, starting_after=None, ending_before=None
):
    keep = _created_filter(created)
    account = _ctx_account.get()
    objs = [
        r
        for r in _objects("refund")
        if keep(r)
        and getattr(r, "_account", None) == account
        and (charge is None or r.charge == charge)
        and (payment_intent is None or r.payment_intent == payment_intent)
    ]
    return _list_of(url, objs, limit, starting_after, ending_before)


def _refund_update(cls, id, metadata=None, **kwargs):
    if kwargs:
        raise _unknown(kwargs)
    obj = cls._api_retrieve(id)
    if isinstance(metadata, dict):
        obj.metadata = {**(obj.metadata or {}), **metadata}
        obj.metadata = {k: v for k, v in obj.metadata.items() if v != ""}
    elif metadata == "":
        obj.metadata = {}
    _emit("refund.updated", obj)
    return obj
