"""Balances as Stripe keeps them: every money movement is a balance transaction of one account (or the platform),
`pending` until its `available_on`, then `available`; an automatic payout carries the available ones.

Funds become available `delay_days` business days (Monday to Friday, no holidays) after midnight UTC of the day
they arrive: the account's `settings.payouts.schedule.delay_days`, or `S.platform_delay_days` for the platform.
With 0 they are available at once (`available_on` = `created`). Stripe's processing fees are not modelled (fee 0),
except the dispute fee.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from localstripe.resources import StripeObject

from .core import S, _account_obj, _created_filter, _list_of, _now, _StripeError, _unknown

DAY = 86_400

REPORTING_CATEGORY = {
    "charge": "charge",
    "payment": "charge",
    "refund": "refund",
    "payment_refund": "refund",
    "refund_failure": "refund_failure",
    "payment_failure_refund": "refund_failure",
    "transfer": "transfer",
    "transfer_refund": "transfer_reversal",
    "payout": "payout",
    "payout_failure": "payout_reversal",
    "payout_cancel": "payout_reversal",
    "application_fee": "platform_earning",
    "adjustment": "other_adjustment",
}
# Never carried by a later payout: a payout's own transaction (it is "carried" by that payout).
NOT_CARRIED = ("payout",)
_SEQ = itertools.count()


def midnight(ts: int) -> int:
    return ts - ts % DAY


def is_business_day(ts: int) -> bool:
    return time.gmtime(ts).tm_wday < 5


def add_business_days(day: int, days: int) -> int:
    """Midnight UTC `days` business days after the midnight `day` (a weekend `day` counts from the next Monday)."""
    while days > 0:
        day += DAY
        if is_business_day(day):
            days -= 1
    return day


def delay_days(account: str | None) -> int:
    if account is None:
        return int(S.platform_delay_days)
    acct = _account_obj(account)
    schedule = ((acct.settings or {}).get("payouts") or {}).get("schedule") or {} if acct is not None else {}
    return int(schedule.get("delay_days") or 0)


def available_on_for(account: str | None, at: int | None = None) -> int:
    """When funds arriving now (or at `at`) in this balance become available."""
    at = _now() if at is None else at
    delay = delay_days(account)
    return at if delay <= 0 else add_business_days(midnight(at), delay)


class BalanceTransaction(StripeObject):
    """One movement of one balance (`_account` None: the platform). Exported like Stripe's balance transaction."""

    object = "balance_transaction"
    _id_prefix = "txn_"

    def __init__(
        self,
        account: str | None,
        currency: str,
        amount: int,
        type: str,
        source: str | None,
        *,
        fee: int = 0,
        fee_details: list[dict] | None = None,
        available_on: int | None = None,
        description: str | None = None,
        reporting_category: str | None = None,
        source_type: str = "card",
    ) -> None:
        super().__init__()
        self._account = account
        self._source_type = source_type
        self._payout: str | None = None  # the automatic payout that carried it
        self._seq = next(_SEQ)
        self.amount = amount
        self.available_on = self.created if available_on is None else available_on
        self.balance_type = "payments"
        self.currency = currency.lower()
        self.description = description
        self.exchange_rate = None
        self.fee = fee
        self.fee_details = fee_details or []
        self.reporting_category = reporting_category or REPORTING_CATEGORY.get(type, type)
        self.source = source
        self.type = type
        S.txns.setdefault((account, self.currency), []).append(self)

    @property
    def net(self) -> int:
        return self.amount - self.fee

    @property
    def status(self) -> str:
        return "available" if self.available_on <= _now() else "pending"


def record(
    account: str | None, currency: str, amount: int, type: str, source: str | None, **kwargs: Any
) -> BalanceTransaction:
    return BalanceTransaction(account, currency, amount, type, source, **kwargs)


def txns(account: str | None, currency: str | None = None) -> list[BalanceTransaction]:
    if currency is not None:
        return list(S.txns.get((account, currency.lower()), ()))
    return [t for (a, _c), rows in S.txns.items() if a == account for t in rows]


def currencies(account: str | None) -> list[str]:
    return sorted(c for (a, c), rows in S.txns.items() if a == account and rows)


def amounts(account: str | None, currency: str) -> tuple[int, int]:
    """(available, pending) of one balance."""
    now = _now()
    available = pending = 0
    for t in S.txns.get((account, currency.lower()), ()):
        if t.available_on <= now:
            available += t.net
        else:
            pending += t.net
    return available, pending


def available(account: str | None, currency: str) -> int:
    return amounts(account, currency)[0]


def source_types(account: str | None, currency: str, status: str) -> dict[str, int]:
    now = _now()
    out: dict[str, int] = {}
    for t in S.txns.get((account, currency.lower()), ()):
        if (t.available_on <= now) == (status == "available"):
            out[t._source_type] = out.get(t._source_type, 0) + t.net
    return out or {"card": 0}


def payable(account: str | None, currency: str) -> list[BalanceTransaction]:
    """The available transactions no payout carried yet (what the next automatic payout carries)."""
    now = _now()
    return [
        t
        for t in S.txns.get((account, currency.lower()), ())
        if t._payout is None and t.available_on <= now and t.type not in NOT_CARRIED
    ]


def balance_body(account: str | None) -> dict:
    cur = currencies(account)
    if not cur:
        acct = _account_obj(account) if account else None
        cur = [acct.default_currency if acct is not None else "usd"]
    available_rows, pending_rows = [], []
    for c in cur:
        avail, pend = amounts(account, c)
        available_rows.append({"amount": avail, "currency": c, "source_types": source_types(account, c, "available")})
        pending_rows.append({"amount": pend, "currency": c, "source_types": source_types(account, c, "pending")})
    body: dict[str, Any] = {
        "object": "balance",
        "available": available_rows,
        "pending": pending_rows,
        "livemode": False,
    }
    if account is None:
        body["connect_reserved"] = [{"amount": 0, "currency": c} for c in cur]
    return body


def list_balance_transactions(
    url: str,
    account: str | None,
    payout: Any = None,
    source: Any = None,
    type: Any = None,
    currency: Any = None,
    created: Any = None,
    limit: Any = None,
    starting_after: Any = None,
    ending_before: Any = None,
    **kwargs: Any,
):
    if kwargs:
        raise _unknown(kwargs)
    keep = _created_filter(created)
    if payout is not None:
        from localstripe.resources import store

        po = store.get("payout:" + str(payout))
        if po is None or getattr(po, "_account", None) != account:
            raise _StripeError(404, f"No such payout: '{payout}'", code="resource_missing", param="payout")
        if not po.automatic:
            raise _StripeError(
                400,
                "Balance transaction history can only be filtered on automatic transfers, not manual.",
                param="payout",
            )
    rows = [
        t
        for t in sorted(txns(account), key=lambda t: t._seq)
        if keep(t)
        and (payout is None or t._payout == payout)
        and (source is None or t.source == source)
        and (type is None or t.type == type)
        and (currency is None or t.currency == str(currency).lower())
    ]
    return _list_of(url, rows, limit, starting_after, ending_before)


def retrieve(account: str | None, id: str) -> BalanceTransaction:
    from localstripe.resources import store

    obj = store.get("balance_transaction:" + str(id))
    if obj is None or getattr(obj, "_account", None) != account:
        raise _StripeError(404, f"No such balance transaction: '{id}'", code="resource_missing", param="id")
    return obj
