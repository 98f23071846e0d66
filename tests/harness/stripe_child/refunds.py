"""Refunds."""

from __future__ import annotations

from localstripe.resources import (
    Charge,
    PaymentIntent,
    store,
)

from .connect import TransferReversal
from .core import S, _credit, _invalid, _StripeError, _to_bool, _to_int, _unknown
from .payments import _orig
from .webhooks import _emit


# ------------------------------------------------------------------------------------------------ refunds
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
    refund_application_fee = _to_bool(refund_application_fee, "refund_application_fee")
    reverse_transfer = _to_bool(reverse_transfer, "reverse_transfer")
    if payment_intent is not None:
        pi = PaymentIntent._api_retrieve(payment_intent)
        if pi.latest_charge is None:
            raise _StripeError(
                400,
                f"This PaymentIntent ({payment_intent}) does not have a successful charge to refund.",
                code="charge_not_refundable",
            )
        charge_obj = pi.latest_charge
    elif charge is not None:
        charge_obj = Charge._api_retrieve(charge)
    else:
        raise _StripeError(
            400,
            "One of the following params should be provided for this request: payment_intent or charge.",
            code="parameter_missing",
        )
    remaining = charge_obj.amount - charge_obj.amount_refunded
    if charge_obj.status == "succeeded" and remaining <= 0:
        raise _StripeError(400, f"Charge {charge_obj.id} has already been refunded.", code="charge_already_refunded")
    refund_amount = remaining if amount in (None, "") else _to_int(amount, "amount")
    if refund_amount > remaining:
        raise _StripeError(
            400,
            f"Refund amount ({refund_amount}) is greater than unrefunded amount on charge ({remaining})",
            code="amount_too_large",
            param="amount",
        )
    _orig["refund_init"](
        self,
        charge=None if payment_intent else charge,
        payment_intent=payment_intent,
        amount=refund_amount,
        metadata=metadata,
    )
    S.refunds_by_charge.setdefault(charge_obj.id, []).append(self.id)
    self.payment_intent = self.payment_intent or charge_obj.payment_intent
    self.reason = reason or None
    self.transfer_reversal = None
    account = getattr(charge_obj, "_account", None)
    _credit(account, charge_obj.currency, -refund_amount)
    fee = getattr(charge_obj, "application_fee_amount", None) or 0
    if account and refund_application_fee and fee:
        fee_refund = round(fee * refund_amount / charge_obj.amount)
        _credit(None, charge_obj.currency, -fee_refund)
        _credit(account, charge_obj.currency, fee_refund)
    transfer_id = getattr(charge_obj, "transfer", None)
    if reverse_transfer and transfer_id:
        transfer = store["transfer:" + transfer_id]
        reversal = min(
            round(transfer.amount * refund_amount / charge_obj.amount), transfer.amount - transfer.amount_reversed
        )
        if reversal > 0:
            self.transfer_reversal = TransferReversal(transfer, reversal, source_refund=self.id).id
    _emit("refund.created", self)
    _emit("charge.refunded", charge_obj)
