"""Request context, state, Stripe-shaped errors and list helpers shared by every resource module."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
import warnings
from collections import OrderedDict, deque
from typing import Any

import aiohttp
from aiohttp import web
from localstripe.errors import UserError
from localstripe.resources import (
    List,
    store,
    try_convert_to_bool,
    try_convert_to_int,
)

with warnings.catch_warnings():  # localstripe.server registers plain functions as aiohttp handlers (deprecated)
    warnings.simplefilter("ignore", DeprecationWarning)
    from localstripe import server as ls_server


HOST = "127.0.0.1"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}

_ctx_account: contextvars.ContextVar[str | None] = contextvars.ContextVar("stripe_account", default=None)
_ctx_idem: contextvars.ContextVar[str | None] = contextvars.ContextVar("idempotency_key", default=None)
_ctx_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_ctx_version: contextvars.ContextVar[str | None] = contextvars.ContextVar("stripe_version", default=None)


class _State:
    def __init__(self) -> None:
        self.webhooks: dict[str, dict] = {}
        self.webhook_queues: dict[str, asyncio.Queue] = {}
        self.webhook_workers: dict[str, asyncio.Task] = {}
        self.webhook_delay = 0.05
        self.webhook_retries = 3
        self.webhook_backoff = 0.25
        self.webhook_timeout = 5.0
        self.deliveries: list[dict] = []
        self.pending_deliveries = 0
        self.session: aiohttp.ClientSession | None = None
        self.bank_settle_delay: float | None = None
        self.pending_bank: list[str] = []
        self.refunds_by_charge: dict[str, list[str]] = {}
        # balances: every balance transaction of (account or None for the platform, currency), oldest first
        self.txns: dict[tuple[str | None, str], list[Any]] = {}
        # the test clock: None is real time; otherwise the frozen "now" that `POST /_test/clock` moves forward
        self.clock: int | None = None
        # Connect and money-movement settings (StripeTestServer(...), POST /_test/config)
        self.connect_onboarding = False  # new connected accounts start not onboarded (Express Account Links)
        self.payout_schedule: dict[str, Any] = {"interval": "manual", "delay_days": 0}  # new accounts' default
        self.platform_delay_days = 0  # business days before the platform's own charges become available
        self.payout_transit_days = 1  # business days from a payout's creation to its arrival_date
        self.dispute_fee = 1500  # Stripe's dispute fee, in minor units of the disputed charge's currency
        self.account_links: dict[str, dict[str, Any]] = {}
        self.base_url = ""  # http://127.0.0.1:PORT, for the URLs of the local pages
        self.pending_refunds: list[str] = []  # bank-debit (and 0000000000005126) refunds awaiting settlement
        self.idem: OrderedDict[tuple[str, str, str], dict] = OrderedDict()
        self.idem_inflight: set[tuple[str, str, str]] = set()
        self.idem_max = 200_000
        self.request_log: deque[dict] = deque(maxlen=100_000)
        self.latency = 0.0
        self.rate_limit: float | None = None
        self.rate_window: deque[float] = deque()
        self.errors: list[dict] = []
        self.generation = 0
        self.background: set[asyncio.Task] = set()


S = _State()


class _StripeError(UserError):
    """A UserError with Stripe's error shape (type, code, param, decline_code, ...)."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", **fields: Any) -> None:
        super().__init__(status, message, {k: v for k, v in fields.items() if v is not None})
        self.body["error"]["type"] = type
        code = fields.get("code")
        if code:
            self.body["error"]["doc_url"] = "https://stripe.com/docs/error-codes/" + code.replace("_", "-")


def _unknown(kwargs: dict) -> _StripeError:
    first = next(iter(kwargs))
    return _StripeError(400, f"Received unknown parameter: {first}", code="parameter_unknown", param=first)


def _missing(param: str) -> _StripeError:
    return _StripeError(400, f"Missing required param: {param}.", code="parameter_missing", param=param)


def _invalid(param: str, message: str | None = None, code: str = "parameter_invalid") -> _StripeError:
    return _StripeError(400, message or f"Invalid value for {param}.", code=code, param=param)


def _to_int(value: Any, param: str) -> int:
    v = try_convert_to_int(value)
    if type(v) is not int:
        raise _StripeError(400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=param)
    return v


def _to_bool(value: Any, param: str) -> bool | None:
    if value is None or value == "":
        return None
    v = try_convert_to_bool(value)
    if type(v) is not bool:
        raise _StripeError(400, f"Invalid boolean: {value}", code="parameter_invalid_boolean", param=param)
    return v


def _blank_to_none(value: Any) -> Any:
    return None if value == "" else value


def _now() -> int:
    """The server's "now": the test clock when it is set (POST /_test/clock), else real time."""
    return S.clock if S.clock is not None else int(time.time())


def _account_obj(account_id: Any) -> Any:
    return store.get("account:" + account_id) if isinstance(account_id, str) else None


@contextlib.contextmanager
def _background_context(account: str | None):
    """Context for work not caused by an API request (settlement, payouts): no request id, given account."""
    tokens = [
        (_ctx_account, _ctx_account.set(account)),
        (_ctx_request_id, _ctx_request_id.set(None)),
        (_ctx_idem, _ctx_idem.set(None)),
    ]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def _created_filter(created: Any) -> Any:
    if created is None:
        return lambda obj: True
    if isinstance(created, str | int):
        ts = _to_int(created, "created")
        return lambda obj: obj.created == ts
    if not isinstance(created, dict):
        raise _invalid("created")
    ops = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}
    checks = []
    for op, value in created.items():
        if op not in ops:
            raise _unknown({f"created[{op}]": value})
        checks.append((ops[op], _to_int(value, f"created[{op}]")))
    return lambda obj: all(fn(obj.created, v) for fn, v in checks)


def _list_of(url: str, objects: list, limit: Any = None, starting_after: Any = None, ending_before: Any = None) -> List:
    """A localstripe List, newest first like Stripe."""
    objects = list(reversed(objects))  # the store keeps insertion (= creation) order
    if ending_before:
        ids = [o.id for o in objects]
        if ending_before in ids:
            objects = objects[: ids.index(ending_before)]
    li = List(url, limit=limit, starting_after=starting_after)
    li._list = objects
    return li


def _objects(object_name: str) -> list:
    prefix = object_name + ":"
    return [v for k, v in store.items() if k.startswith(prefix)]


def _json(data: Any, status: int = 200) -> web.Response:
    return ls_server.json_response(data, status=status)
