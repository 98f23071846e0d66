"""Disputes, as Stripe's test cards and API show them.

A charge paid with 4000000000000259 (`pm_card_createDispute`, reason `fraudulent`) or 4000000000002685
(`product_not_received`) succeeds, then a dispute opens: `charge.dispute.created` (status `needs_response`,
`evidence_details.due_by` 7 days later at 23:59:59 UTC), then the disputed amount and the dispute fee
(`S.dispute_fee`) are withdrawn from the balance of the charge's account — the platform for a destination charge
(Stripe debits the platform, which may recover from the connected account by reversing the transfer) —
`charge.dispute.funds_withdrawn`, an `adjustment` balance transaction with reporting category `dispute`.
4000000000001976 opens an inquiry (`warning_needs_response`), which withdraws nothing.

`POST /v1/disputes/{id}` stages (`submit=false`) or submits evidence (`under_review`); like Stripe's test mode,
`evidence[uncategorized_text]` `winning_evidence` / `losing_evidence` closes it `won` / `lost` at once.
`POST /v1/disputes/{id}/close` accepts the loss. `POST /_test/disputes/{id}` `{"status": "won"|"lost"}` decides it;
`POST /_test/disputes` `{"charge": "ch_..."}` opens one on any succeeded charge. Won: the amount and the fee come
back (`charge.dispute.funds_reinstated`, reporting category `dispute_reversal`). Every change:
`charge.dispute.updated` / `charge.dispute.closed`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from localstripe.resources import Charge, StripeObject, store

from . import ledger
from .cards import DISPUTE_CARDS
from .core import (
    S,
    _background_context,
    _created_filter,
    _ctx_account,
    _invalid,
    _json,
    _list_of,
    _missing,
    _now,
    _objects,
    _StripeError,
    _to_bool,
    _to_int,
    _unknown,
    ls_server,
)
from .webhooks import _emit

EVIDENCE_FIELDS = (
    "access_activity_log",
    "billing_address",
    "cancellation_policy",
    "cancellation_policy_disclosure",
    "cancellation_rebuttal",
    "customer_communication",
    "customer_email_address",
    "customer_name",
    "customer_purchase_ip",
    "customer_signature",
    "duplicate_charge_documentation",
    "duplicate_charge_explanation",
    "duplicate_charge_id",
    "product_description",
    "receipt",
    "refund_policy",
    "refund_policy_disclosure",
    "refund_refusal_explanation",
    "service_date",
    "service_documentation",
    "shipping_address",
    "shipping_carrier",
    "shipping_date",
    "shipping_documentation",
    "shipping_tracking_number",
    "uncategorized_file",
    "uncategorized_text",
)
REASONS = (
    "bank_cannot_process",
    "check_returned",
    "credit_not_processed",
    "customer_initiated",
    "debit_not_authorized",
    "duplicate",
    "fraudulent",
    "general",
    "incorrect_account_details",
    "insufficient_funds",
    "product_not_received",
    "product_unacceptable",
    "subscription_canceled",
    "unrecognized",
)
NETWORK_REASON_CODES = {"fraudulent": "10.4", "product_not_received": "13.1", "general": "13.7"}
CLOSED = ("won", "lost", "warning_closed")


class Dispute(StripeObject):
    object = "dispute"
    _id_prefix = "dp_"

    def __init__(self, charge: Any, reason: str, amount: int | None = None, inquiry: bool = False) -> None:
        super().__init__()
        self._account = getattr(charge, "_account", None)
        self._txns: list[str] = []
        self.amount = charge.amount if amount is None else amount
        self.charge = charge.id
        self.currency = charge.currency
        self.enhanced_eligibility_types = []
        self.evidence = {name: None for name in EVIDENCE_FIELDS}
        due = ledger.midnight(self.created) + 8 * ledger.DAY - 1  # 7 days later, 23:59:59 UTC
        self.evidence_details = {
            "due_by": due,
            "enhanced_eligibility": {},
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        }
        self.is_charge_refundable = inquiry
        self.metadata = {}
        self.payment_intent = charge.payment_intent
        pm = store.get("payment_method:" + str(charge.payment_method))
        card = getattr(pm, "card", None) or {}
        self.payment_method_details = {
            "type": "card",
            "card": {
                "brand": card.get("brand"),
                "case_type": "inquiry" if inquiry else "chargeback",
                "network_reason_code": NETWORK_REASON_CODES.get(reason, "13.7"),
            },
        }
        self.reason = reason
        self.status = "warning_needs_response" if inquiry else "needs_response"
        charge.disputed = True
        charge._dispute = self.id
        _emit("charge.dispute.created", self)
        if not inquiry:
            fee = int(S.dispute_fee)
            txn = ledger.record(
                self._account,
                self.currency,
                -self.amount,
                "adjustment",
                self.id,
                fee=fee,
                fee_details=[
                    {
                        "amount": fee,
                        "application": None,
                        "currency": self.currency,
                        "description": "Dispute fee",
                        "type": "stripe_fee",
                    }
                ]
                if fee
                else [],
                description=f"Chargeback withdrawal for {charge.id}",
                reporting_category="dispute",
            )
            self._txns.append(txn.id)
            _emit("charge.dispute.funds_withdrawn", self)

    @property
    def balance_transactions(self) -> list[dict]:
        return [store["balance_transaction:" + t]._export() for t in self._txns]

    @property
    def _inquiry(self) -> bool:
        return self.status.startswith("warning_")

    def _close(self, status: str) -> None:
        """Decide the dispute: `won` (funds and fee reinstated), `lost`, or `warning_closed` for an inquiry."""
        if self.status in CLOSED:
            raise _StripeError(400, f"This dispute ({self.id}) is already closed.")
        if self._inquiry and status != "warning_closed":
            raise _invalid("status", "An inquiry closes as warning_closed.")
        if not self._inquiry and status not in ("won", "lost"):
            raise _invalid("status", "A dispute closes as won or lost.")
        previous = {"status": self.status}
        self.status = status
        _emit("charge.dispute.closed", self, previous=previous)
        if status == "won" and self._txns:
            withdrawn = store["balance_transaction:" + self._txns[0]]
            txn = ledger.record(
                self._account,
                self.currency,
                self.amount,
                "adjustment",
                self.id,
                fee=-withdrawn.fee,
                fee_details=[dict(d, amount=-d["amount"]) for d in withdrawn.fee_details],
                description=f"Chargeback reversal for {self.charge}",
                reporting_category="dispute_reversal",
            )
            self._txns.append(txn.id)
            _emit("charge.dispute.funds_reinstated", self)

    @classmethod
    def _api_update(cls, id, evidence=None, metadata=None, submit=None, intended_submission_method=None, **kwargs):
        if kwargs:
            raise _unknown(kwargs)
        obj = cls._api_retrieve(id)
        if obj.status in CLOSED:
            raise _StripeError(400, f"This dispute ({obj.id}) is already closed.")
        submit = _to_bool(submit, "submit")
        submit = True if submit is None else submit
        if evidence is not None:
            if not isinstance(evidence, dict):
                raise _invalid("evidence")
            unknown = {f"evidence[{k}]": v for k, v in evidence.items() if k not in EVIDENCE_FIELDS}
            if unknown:
                raise _unknown(unknown)
            obj.evidence.update({k: (v if v != "" else None) for k, v in evidence.items()})
        if isinstance(metadata, dict):
            obj.metadata = {k: v for k, v in {**obj.metadata, **metadata}.items() if v != ""}
        previous: dict[str, Any] = {}
        if evidence is not None:
            obj.evidence_details["has_evidence"] = True
            if submit:
                if _now() > obj.evidence_details["due_by"]:
                    obj.evidence_details["past_due"] = True
                    raise _StripeError(400, f"The evidence for dispute {obj.id} is past due.", param="evidence")
                previous["status"] = obj.status
                obj.status = "warning_under_review" if obj._inquiry else "under_review"
                obj.evidence_details["submission_count"] += 1
        _emit("charge.dispute.updated", obj, previous=previous or None)
        text = (obj.evidence.get("uncategorized_text") or "").strip()
        if submit and not obj._inquiry and text in ("winning_evidence", "losing_evidence"):
            obj._close("won" if text == "winning_evidence" else "lost")
        return obj

    @classmethod
    def _api_close(cls, id, **kwargs):
        if kwargs:
            raise _unknown(kwargs)
        obj = cls._api_retrieve(id)
        obj._close("warning_closed" if obj._inquiry else "lost")
        return obj

    @classmethod
    def _api_list_all(
        cls, url, charge=None, payment_intent=None, created=None, limit=None, starting_after=None, ending_before=None
    ):
        keep = _created_filter(created)
        account = _ctx_account.get()
        objs = [
            d
            for d in _objects("dispute")
            if keep(d)
            and getattr(d, "_account", None) == account
            and (charge is None or d.charge == charge)
            and (payment_intent is None or d.payment_intent == payment_intent)
        ]
        return _list_of(url, objs, limit, starting_after, ending_before)


def open_for_test_card(charge: Any) -> Dispute | None:
    """After a charge of one of Stripe's dispute test cards succeeds, its dispute opens."""
    pm = store.get("payment_method:" + str(charge.payment_method))
    if pm is None or pm.type != "card" or pm._card_number not in DISPUTE_CARDS or charge.status != "succeeded":
        return None
    reason, inquiry = DISPUTE_CARDS[pm._card_number]
    with _background_context(getattr(charge, "_account", None)):
        return Dispute(charge, reason, inquiry=inquiry)


async def _test_open_dispute(request: web.Request) -> web.Response:
    """POST /_test/disputes {"charge": "ch_...", "reason": "fraudulent", "amount": n, "inquiry": false}."""
    data = await ls_server.get_post_data(request) or {}
    if not data.get("charge"):
        raise _missing("charge")
    charge = Charge._api_retrieve(data["charge"])
    if charge.status != "succeeded":
        raise _invalid("charge", f"Charge {charge.id} has not succeeded.")
    if getattr(charge, "_dispute", None):
        raise _invalid("charge", f"Charge {charge.id} is already disputed.")
    reason = data.get("reason") or "fraudulent"
    if reason not in REASONS:
        raise _invalid("reason")
    amount = _to_int(data["amount"], "amount") if data.get("amount") is not None else None
    if amount is not None and not 0 < amount <= charge.amount:
        raise _invalid("amount")
    with _background_context(getattr(charge, "_account", None)):
        dispute = Dispute(charge, reason, amount, inquiry=bool(_to_bool(data.get("inquiry"), "inquiry")))
    return _json(dispute._export())


async def _test_decide_dispute(request: web.Request) -> web.Response:
    """POST /_test/disputes/{id} {"status": "won"|"lost"|"warning_closed"}."""
    data = await ls_server.get_post_data(request) or {}
    dispute = Dispute._api_retrieve(request.match_info["id"])
    if not data.get("status"):
        raise _missing("status")
    with _background_context(getattr(dispute, "_account", None)):
        dispute._close(str(data["status"]))
    return _json(dispute._export())
