"""Payouts, balances and the test clock.

A payout debits the available balance (a `payout` balance transaction) and goes `pending` → `in_transit` (an hour
after it is created) → `paid` at its `arrival_date` (midnight UTC, `S.payout_transit_days` business days after the
day it was created), or `failed` then if the account's bank account is one of Stripe's failing test numbers (or the
test control says so): the funds come back (`payout_failure`, carried by the next payout), the bank account becomes
`errored` and automatic payouts stop until it is replaced. Events: `payout.created`, `payout.updated` on every
status change, then `payout.paid` (and `payout.reconciliation_completed` for automatic payouts) or `payout.failed`.

Automatic payouts follow each connected account's `settings.payouts.schedule` (`daily`, `weekly` on
`weekly_anchor`, `monthly` on `monthly_anchor`; `manual`: none): at each business day's midnight UTC the test
clock passes, a payout per currency carries the available balance transactions no payout carried yet — exactly what
`GET /v1/balance_transactions?payout=po_...` lists — if their sum is positive and the account's payouts are
enabled. Time only moves with the test clock (`POST /_test/clock`); with the clock unset, `POST /_test/payouts`
pays out at once, as before.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from localstripe.resources import Payout, StripeObject, random_id

from . import ledger
from .cards import PAYOUT_FAILURE_MESSAGES, PAYOUT_FAILURES
from .core import (
    S,
    _account_obj,
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
    _to_int,
    _unknown,
    ls_server,
)
from .webhooks import _emit

IN_TRANSIT_AFTER = 3600  # seconds from creation until a payout is handed to the bank


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
        _carry=None,
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
        if amount > ledger.available(account, currency):
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
        self.arrival_date = ledger.add_business_days(ledger.midnight(self.created), S.payout_transit_days)
        self.automatic = bool(_automatic)
        self.description = description
        self.destination = destination or (
            acct._bank["id"] if acct is not None and acct._bank else "ba_" + random_id(24)
        )
        self.failure_balance_transaction = None
        self.failure_code = None
        self.failure_message = None
        self.metadata = metadata or {}
        self.method = method or "standard"
        self.original_payout = None
        self.reconciliation_status = "in_progress" if self.automatic else "not_applicable"
        self.reversed_by = None
        self.source_type = source_type or "card"
        self.statement_descriptor = statement_descriptor
        self.status = "pending"
        self.type = "bank_account"
        self._in_transit_at = self.created + IN_TRANSIT_AFTER
        txn = ledger.record(account, currency, -amount, "payout", self.id)
        txn._payout = self.id
        self.balance_transaction = txn.id
        for row in _carry or ():
            row._payout = self.id
        _emit("payout.created", self)

    def _set_status(self, status: str) -> None:
        previous = {"status": self.status}
        self.status = status
        _emit("payout.updated", self, previous=previous)

    def _to_in_transit(self) -> None:
        if self.status == "pending":
            self._set_status("in_transit")

    def _failure_code_of_bank(self) -> str | None:
        acct = _account_obj(self._account) if self._account else None
        if acct is not None and acct._bank:
            return PAYOUT_FAILURES.get(acct._bank["_account_number"].lstrip("0"))
        return None

    def _finish(self, failure_code: str | None = None) -> None:
        """Arrival: `paid`, or `failed` (the bank's test number, or `failure_code`)."""
        if self.status not in ("pending", "in_transit"):
            return
        failure_code = failure_code or self._failure_code_of_bank()
        if failure_code:
            self._fail(failure_code)
            return
        self._set_status("paid")
        _emit("payout.paid", self)
        if self.automatic:
            self.reconciliation_status = "completed"
            _emit("payout.reconciliation_completed", self)

    def _fail(self, failure_code: str) -> None:
        """Stripe can fail a payout until a few days after it was marked paid: the funds come back to the balance
        (`payout_failure`, carried by the next payout) and the bank account is `errored` until replaced."""
        if self.status not in ("pending", "in_transit", "paid"):
            raise _StripeError(400, f"Payout {self.id} is {self.status}; it cannot fail.")
        self.failure_code = failure_code
        self.failure_message = PAYOUT_FAILURE_MESSAGES.get(failure_code, PAYOUT_FAILURE_MESSAGES["could_not_process"])
        txn = ledger.record(self._account, self.currency, self.amount, "payout_failure", self.id)
        self.failure_balance_transaction = txn.id
        self._set_status("failed")
        _emit("payout.failed", self)
        acct = _account_obj(self._account) if self._account else None
        if acct is not None and acct._bank and acct._bank["status"] != "errored":
            from .connect import _BankAccountView

            acct._bank["status"] = "errored"
            _emit("account.external_account.updated", _BankAccountView(acct), previous={"status": "new"})

    @classmethod
    def _api_cancel(cls, id, **kwargs):
        if kwargs:
            raise _unknown(kwargs)
        obj = Payout._api_retrieve(id)
        if obj.status != "pending":
            raise _StripeError(400, "Payouts can only be canceled while they are pending.")
        txn = ledger.record(getattr(obj, "_account", None), obj.currency, obj.amount, "payout_cancel", obj.id)
        obj.failure_balance_transaction = txn.id
        obj.status = "canceled"
        _emit("payout.canceled", obj)
        return obj

    @classmethod
    def _api_create(cls, **data):
        account = _ctx_account.get()
        acct = _account_obj(account) if account else None
        interval = acct.settings["payouts"]["schedule"].get("interval") if acct is not None else "manual"
        if interval != "manual" and data.get("method", "standard") == "standard":
            raise _StripeError(
                400,
                "You cannot create a standard payout while the account is on an automatic payout schedule "
                f"({interval}). Set settings[payouts][schedule][interval] to manual first.",
                param="method",
            )
        data.pop("_automatic", None)
        data.pop("_carry", None)
        return cls(**data)


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
    arrival = _created_filter(arrival_date)
    account = _ctx_account.get()
    objs = [
        p
        for p in _objects("payout")
        if keep(p)
        and getattr(p, "_account", None) == account
        and (status is None or p.status == status)
        and (arrival_date is None or arrival(_ArrivalView(p)))
        and (destination is None or p.destination == destination)
    ]
    return _list_of(url, objs, limit, starting_after, ending_before)


class _ArrivalView:
    def __init__(self, payout: Any) -> None:
        self.created = payout.arrival_date


# ------------------------------------------------------------------------------------------------ automatic payouts
def _runs_on(schedule: dict, day: int) -> bool:
    interval = schedule.get("interval") or "manual"
    tm = time.gmtime(day)
    if interval == "daily":
        return True
    if interval == "weekly":
        from .connect import WEEKDAYS

        return WEEKDAYS[tm.tm_wday] == (schedule.get("weekly_anchor") or "monday")
    if interval == "monthly":
        return tm.tm_mday == int(schedule.get("monthly_anchor") or 1)
    return False


def can_pay_out(acct: Any) -> bool:
    return bool(acct.payouts_enabled) and not (acct._bank and acct._bank["status"] == "errored")


def pay_out_balance(account: str, currency: str, *, automatic: bool = True) -> HarnessPayout | None:
    """One payout of what `account` has available in `currency`, carrying the transactions no payout carried yet."""
    rows = ledger.payable(account, currency)
    amount = ledger.available(account, currency)
    if amount <= 0:
        return None
    with _background_context(account):
        return HarnessPayout(amount=amount, currency=currency, _automatic=automatic, _carry=rows)


def _payout_run(day: int) -> None:
    if not ledger.is_business_day(day):
        return
    for acct in _objects("account"):
        schedule = acct.settings["payouts"]["schedule"]
        if not _runs_on(schedule, day) or not can_pay_out(acct):
            continue
        for currency in ledger.currencies(acct.id):
            pay_out_balance(acct.id, currency)


def _due_moments(after: int, until: int) -> list[int]:
    moments = set()
    day = ledger.midnight(after) + ledger.DAY
    if day <= until:
        moments.add(day)
    for p in _objects("payout"):
        if p.status == "pending" and after < p._in_transit_at <= until:
            moments.add(p._in_transit_at)
        if p.status in ("pending", "in_transit") and after < p.arrival_date <= until:
            moments.add(p.arrival_date)
    return sorted(moments)


def _process(moment: int) -> None:
    if moment % ledger.DAY == 0:
        _payout_run(moment)
    for p in _objects("payout"):
        with _background_context(getattr(p, "_account", None)):
            if p.status == "pending" and p._in_transit_at <= moment:
                p._to_in_transit()
            if p.status == "in_transit" and p.arrival_date <= moment:
                p._finish()


def advance_clock(target: int) -> None:
    """Move the test clock to `target`, doing in order what falls due on the way (automatic payouts at each
    business day's midnight, payouts going in transit and arriving)."""
    if S.clock is None:
        S.clock = target
        return
    if target < S.clock:
        raise _StripeError(400, f"The test clock cannot go back (now {S.clock}, asked {target}).")
    while True:
        moments = _due_moments(S.clock, target)
        if not moments:
            break
        S.clock = moments[0]
        _process(moments[0])
    S.clock = target


# ------------------------------------------------------------------------------------------------ routes
async def _balance(request: web.Request) -> web.Response:
    return _json(ledger.balance_body(request.headers.get("Stripe-Account") or None))


async def _balance_transactions(request: web.Request) -> web.Response:
    data = ls_server.unflatten_data(request.query)
    expand = data.pop("expand", None)
    account = request.headers.get("Stripe-Account") or None
    listed = ledger.list_balance_transactions(request.path, account, **data)
    return _json(listed._export(expand=expand))


async def _balance_transaction(request: web.Request) -> web.Response:
    data = ls_server.unflatten_data(request.query)
    expand = data.pop("expand", None)
    account = request.headers.get("Stripe-Account") or None
    return _json(ledger.retrieve(account, request.match_info["id"])._export(expand=expand))


async def _test_payouts(request: web.Request) -> web.Response:
    """POST /_test/payouts: finish the pending payouts of the account(s), then pay out what is available now
    (`failure_code`: make them fail). Accounts whose payouts are disabled keep their balance."""
    data = await ls_server.get_post_data(request) or {}
    account, currency, failure_code = data.get("account"), data.get("currency"), data.get("failure_code")
    if account:
        if _account_obj(account) is None:
            raise _StripeError(404, f"No such account: '{account}'", code="resource_missing", param="account")
        accounts = [account]
    else:
        accounts = sorted(
            {a for (a, _c) in S.txns if a}
            | {p._account for p in _objects("payout") if p.status in ("pending", "in_transit") and p._account}
        )
    payouts = []
    for acct_id in accounts:
        acct = _account_obj(acct_id)
        with _background_context(acct_id):
            for payout in [
                p for p in _objects("payout") if p._account == acct_id and p.status in ("pending", "in_transit")
            ]:
                payout._finish(failure_code)
                payouts.append(payout)
            if acct is None or not can_pay_out(acct):
                continue
            for cur in ledger.currencies(acct_id):
                if currency is not None and cur != currency:
                    continue
                payout = pay_out_balance(acct_id, cur)
                if payout is not None:
                    payout._finish(failure_code)
                    payouts.append(payout)
    return _json({"payouts": [dict(p._export(), account=p._account) for p in payouts]})


async def _test_payout_fail(request: web.Request) -> web.Response:
    """POST /_test/payouts/{id}/fail {"failure_code": "account_closed"}: fail a pending, in-transit or paid payout."""
    data = await ls_server.get_post_data(request) or {}
    payout = Payout._api_retrieve(request.match_info["id"])
    with _background_context(getattr(payout, "_account", None)):
        payout._fail(str(data.get("failure_code") or "could_not_process"))
    return _json(dict(payout._export(), account=payout._account))


async def _test_balances(request: web.Request) -> web.Response:
    """Available balance per account ("platform") and currency; `?detail=1`: available and pending."""
    detail = request.query.get("detail") in ("1", "true")
    out: dict[str, dict[str, Any]] = {}
    for account, currency in S.txns:
        available, pending = ledger.amounts(account, currency)
        out.setdefault(account or "platform", {})[currency] = (
            {"available": available, "pending": pending} if detail else available
        )
    return _json(out)


async def _test_balance_transactions(request: web.Request) -> web.Response:
    """GET /_test/balance_transactions?account=acct_...|platform: every balance transaction, oldest first."""
    wanted = request.query.get("account")
    txns = [
        t for (account, _c), rows in S.txns.items() if wanted is None or (account or "platform") == wanted for t in rows
    ]
    txns.sort(key=lambda t: t._seq)
    return _json({"data": [dict(t._export(), account=t._account, payout=t._payout) for t in txns]})


async def _test_clock(request: web.Request) -> web.Response:
    """GET: the clock. POST {"now": ts} or {"advance": seconds}: move it (never back), doing what falls due."""
    if request.method == "POST":
        data = await ls_server.get_post_data(request) or {}
        if data.get("now") is not None:
            target = _to_int(data["now"], "now")
        elif data.get("advance") is not None:
            target = _now() + _to_int(data["advance"], "advance")
        else:
            raise _missing("now")
        advance_clock(target)
    return _json({"now": _now(), "frozen": S.clock is not None})
