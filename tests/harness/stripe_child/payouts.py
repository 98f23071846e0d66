"""Payouts and balances."""

from __future__ import annotations

import time

from aiohttp import web
from localstripe.resources import (
    Payout,
    StripeObject,
    random_id,
)

from .cards import PAYOUT_FAILURE_MESSAGES, PAYOUT_FAILURES
from .core import (
    S,
    _account_obj,
    _available,
    _created_filter,
    _credit,
    _ctx_account,
    _invalid,
    _json,
    _list_of,
    _missing,
    _objects,
    _StripeError,
    _to_int,
    _unknown,
)
from .webhooks import _emit


class HarnessPayout(StripeObject):
    """A payout of the platform or (with Stripe-Account) of a connected account; debits the available balance."""

    object = "payout"
    _id_prefix = "po_"

    def __init__(
        self,
        amount=None,
        currency=None,
        description=None,
        metadata=None,
        statement_descriptor=None,
        method=None,
        source_type=None,
        destination=None,
        _automatic=False,
        **kwargs,
    ):
        if kwargs:
            raise _unknown(kwargs)
        if amount is None:
            raise _missing("amount")
        amount = _to_int(amount, "amount")
        if amount <= 0:
            raise _invalid("amount", "Amount must be a positive integer.")
        if not currency:
            raise _missing("currency")
        currency = str(currency).lower()
        if method not in (None, "standard", "instant"):
            raise _invalid("method")
        account = _ctx_account.get()
        if amount > _available(account, currency):
            raise _StripeError(
                400,
                "You have insufficient funds in your Stripe account for this transfer. Your "
                f"{currency} balance is too low.",
                code="balance_insufficient",
            )
        acct = _account_obj(account) if account else None
        super().__init__()
        self.amount = amount
        self.currency = currency
        self.arrival_date = int(time.time()) + 2 * 86400
        self.automatic = bool(_automatic)
        self.balance_transaction = "txn_" + random_id(24)
        self.description = description
        self.destination = destination or (
            acct._bank["id"] if acct is not None and acct._bank else "ba_" + random_id(24)
        )
        self.failure_balance_transaction = None
        self.failure_code = None
        self.failure_message = None
        self.metadata = metadata or {}
        self.method = method or "standard"
        self.reconciliation_status = "not_applicable"
        self.source_type = source_type or "card"
        self.statement_descriptor = statement_descriptor
        self.status = "pending"
        self.type = "bank_account"
        _credit(account, currency, -amount)
        _emit("payout.created", self)

    def _finish(self, failure_code: str | None = None) -> None:
        if self.status != "pending":
            return
        if failure_code is None and self._account:
            acct = _account_obj(self._account)
            if acct is not None and acct._bank:
                failure_code = PAYOUT_FAILURES.get(acct._bank["_account_number"].lstrip("0"))
        if failure_code:
            self.status = "failed"
            self.failure_code = failure_code
            self.failure_message = PAYOUT_FAILURE_MESSAGES.get(
                failure_code, PAYOUT_FAILURE_MESSAGES["could_not_process"]
            )
            self.failure_balance_transaction = "txn_" + random_id(24)
            _credit(self._account, self.currency, self.amount)
            _emit("payout.failed", self)
        else:
            self.status = "paid"
            _emit("payout.paid", self)

    @classmethod
    def _api_cancel(cls, id, **kwargs):
        if kwargs:
            raise _unknown(kwargs)
        obj = Payout._api_retrieve(id)
        if obj.status != "pending":
            raise _StripeError(400, "Payouts can only be canceled while they are pending.")
        obj.status = "canceled"
        _credit(getattr(obj, "_account", None), obj.currency, obj.amount)
        _emit("payout.canceled", obj)
        return obj


def _payout_list(
    cls,
    url,
    status=None,
    created=None,
    arrival_date=None,
    destination=None,
    limit=None,
    starting_after=None,
    ending_before=None,
):
    keep = _created_filter(created)
    account = _ctx_account.get()
    objs = [
        p
        for p in _objects("payout")
        if keep(p) and getattr(p, "_account", None) == account and (status is None or p.status == status)
    ]
    return _list_of(url, objs, limit, starting_after, ending_before)


async def _balance(request: web.Request) -> web.Response:
    account = request.headers.get("Stripe-Account") or None
    currencies = sorted({c for (a, c) in S.ledger if a == account})
    if not currencies:
        acct = _account_obj(account) if account else None
        currencies = [acct.default_currency if acct is not None else "usd"]
    available = [
        {"amount": _available(account, c), "currency": c, "source_types": {"card": _available(account, c)}}
        for c in currencies
    ]
    pending = [{"amount": 0, "currency": c, "source_types": {"card": 0}} for c in currencies]
    body = {"object": "balance", "available": available, "pending": pending, "livemode": False}
    if account is None:
        body["connect_reserved"] = [{"amount": 0, "currency": c} for c in currencies]
    return _json(body)
