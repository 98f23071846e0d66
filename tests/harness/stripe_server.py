"""A Stripe-compatible HTTP test server: localstripe plus the Stripe behaviour the product relies on.

Parent side (imported by tests and benchmarks): `StripeTestServer` starts the server in a *child process* that
binds 127.0.0.1 on a free port, and talks to it over HTTP. Each instance has its own process, so its own
in-memory store: localstripe keeps its store, its webhook registry and its aiohttp `app` as module globals, and a
separate process is the only way two instances (or two test sessions) cannot see each other's state.
The child exits when `stop()` is called, when the parent process dies (its stdin pipe closes) or after
`max_lifetime` seconds.

Child side (`python stripe_server.py --port 0 --config '{...}'`): localstripe's resources, patched in that process
only, behind a few aiohttp middlewares (request log, fault injection, Idempotency-Key, Stripe-Account) and extra
routes (Connect accounts, transfers, payouts, search, `/_test/*` controls). See docs/stripe-test-server.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import hmac
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import warnings
import weakref
from collections import OrderedDict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiohttp
from aiohttp import web

with warnings.catch_warnings():  # localstripe registers plain functions as aiohttp handlers (deprecated)
    warnings.simplefilter("ignore", DeprecationWarning)
    from localstripe import resources as ls
    from localstripe import server as ls_server
    from localstripe import webhooks as ls_webhooks
    from localstripe.errors import UserError
    from localstripe.resources import (
        BalanceTransaction,
        Charge,
        Customer,
        Event,
        List,
        PaymentIntent,
        PaymentMethod,
        Payout,
        Refund,
        SetupIntent,
        StripeObject,
        fingerprint,
        random_id,
        store,
        try_convert_to_bool,
        try_convert_to_int,
    )

HOST = "127.0.0.1"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


# =====================================================================================================================
# Parent side
# =====================================================================================================================


def _terminate(proc: subprocess.Popen, log_file: Any) -> None:
    """Stop the child: close its stdin (it exits on EOF), then SIGTERM, then SIGKILL. Safe to call twice."""
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            if proc.stdin:
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=3)
    for stream in (proc.stdin, proc.stdout):
        with contextlib.suppress(OSError):
            if stream:
                stream.close()
    with contextlib.suppress(OSError):
        if log_file:
            log_file.close()


class StripeTestServer:
    """A private Stripe-compatible server on 127.0.0.1 (see module docstring and docs/stripe-test-server.md).

    >>> with StripeTestServer() as server:
    ...     client = stripe.StripeClient("sk_test_x", base_addresses={"api": server.url})
    """

    def __init__(
        self,
        *,
        port: int = 0,
        webhook_delay: float = 0.05,
        webhook_retries: int = 3,
        webhook_backoff: float = 0.25,
        webhook_timeout: float = 5.0,
        bank_settle_delay: float | None = None,
        request_log_size: int = 100_000,
        startup_timeout: float = 20.0,
        max_lifetime: float | None = None,
    ) -> None:
        self._port = port
        self._config = {
            "webhook_delay": webhook_delay,
            "webhook_retries": webhook_retries,
            "webhook_backoff": webhook_backoff,
            "webhook_timeout": webhook_timeout,
            "bank_settle_delay": bank_settle_delay,
            "request_log_size": request_log_size,
            "max_lifetime": max_lifetime,
        }
        self._startup_timeout = startup_timeout
        self._proc: subprocess.Popen | None = None
        self._log: Any = None
        self._finalizer: weakref.finalize | None = None
        self.port: int | None = None

    # ---------------------------------------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("StripeTestServer is not started")
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> StripeTestServer:
        if self.running:
            return self
        self._log = tempfile.TemporaryFile(prefix="stripe-test-server-")
        cmd = [
            sys.executable,
            "-u",
            os.path.abspath(__file__),
            "--port",
            str(self._port),
            "--parent-pid",
            str(os.getpid()),
            "--config",
            json.dumps(self._config),
        ]
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, close_fds=True
        )
        self._finalizer = weakref.finalize(self, _terminate, self._proc, self._log)
        try:
            self.port = self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> int:
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + self._startup_timeout
        buf = b""
        fd = self._proc.stdout.fileno()
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"Stripe test server did not start in time:\n{self.log_text()}")
            ready, _, _ = select.select([fd], [], [], min(remaining, 0.2))
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    self._proc.wait(timeout=5)
                    raise RuntimeError(f"Stripe test server exited during start-up:\n{self.log_text()}")
                buf += chunk
        line = buf.split(b"\n", 1)[0].decode()
        if not line.startswith("READY "):
            raise RuntimeError(f"unexpected start-up line {line!r}:\n{self.log_text()}")
        return int(line.split()[1])

    def stop(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # runs _terminate once
            self._finalizer = None
        self._proc = None

    def __enter__(self) -> StripeTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        """What the child wrote to stderr (tracebacks of unexpected errors end up here)."""
        if self._log is None or self._log.closed:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    # ---------------------------------------------------------------------------------------------- plumbing
    def _call(self, method: str, path: str, payload: dict | None = None, timeout: float = 30.0) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{method} {path} -> {e.code}: {e.read().decode(errors='replace')}") from None
        return json.loads(body) if body else None

    def client(
        self, api_key: str = "sk_test_harness", *, stripe_account: str | None = None, max_network_retries: int = 0
    ) -> Any:
        """A `stripe.StripeClient` pointed at this server."""
        import stripe

        return stripe.StripeClient(
            api_key,
            base_addresses={"api": self.url, "connect": self.url, "files": self.url},
            stripe_account=stripe_account,
            max_network_retries=max_network_retries,
        )

    # ---------------------------------------------------------------------------------------------- state
    def reset(self, *, keep_webhooks: bool = True) -> None:
        """Forget every object, balance, idempotency key, logged request and fault (webhooks kept by default)."""
        self._call("POST", "/_test/reset", {"keep_webhooks": keep_webhooks})

    def configure(self, **settings: Any) -> dict:
        """Change webhook_delay, webhook_retries, webhook_backoff, webhook_timeout or bank_settle_delay."""
        return self._call("POST", "/_test/config", settings)

    # ---------------------------------------------------------------------------------------------- webhooks
    def add_webhook(
        self,
        url: str,
        secret: str,
        events: list[str] | None = None,
        *,
        connect: bool | None = None,
        endpoint_id: str = "default",
    ) -> None:
        """Register (or replace) a webhook endpoint. `connect=True`: only events of connected accounts (they carry
        `account`), `False`: only platform events, `None`: both. `url` must be on loopback."""
        payload: dict[str, Any] = {"url": url, "secret": secret}
        if events is not None:
            payload["events"] = events
        if connect is not None:
            payload["connect"] = connect
        self._call("POST", f"/_config/webhooks/{endpoint_id}", payload)

    def remove_webhook(self, endpoint_id: str = "default") -> None:
        self._call("DELETE", f"/_config/webhooks/{endpoint_id}")

    def webhook_deliveries(self) -> list[dict]:
        return self._call("GET", "/_test/webhooks/deliveries")["data"]

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        """Block until no webhook delivery (retries included) is pending; False on timeout."""
        return self._call("POST", "/_test/webhooks/wait", {"timeout": timeout}, timeout=timeout + 10)["idle"]

    def resend_event(self, event_id: str) -> None:
        """Deliver an event again (Stripe may deliver an event more than once)."""
        self._call("POST", f"/_test/events/{event_id}/resend", {})

    def events(self, type: str | None = None) -> list[dict]:
        query = "?" + urllib.parse.urlencode({"type": type}) if type else ""
        return self._call("GET", "/_test/events" + query)["data"]

    # ---------------------------------------------------------------------------------------------- faults
    def set_latency(self, seconds: float) -> None:
        """Delay every /v1 response by `seconds` (0 to disable)."""
        self._call("POST", "/_test/faults", {"latency": seconds})

    def set_rate_limit(self, per_second: float | None) -> None:
        """Answer 429 `rate_limit` once more than `per_second` /v1 requests arrived in the last second (None: off)."""
        self._call("POST", "/_test/faults", {"rate_limit": per_second})

    def inject_errors(
        self,
        count: int = 1,
        *,
        status: int = 500,
        path_prefix: str | None = None,
        method: str | None = None,
        after: bool = False,
    ) -> None:
        """Make the next `count` matching /v1 requests fail with `status`. `after=True`: the request is executed
        (and its idempotent result saved) before the error is returned, like a response lost on the way back."""
        self._call(
            "POST",
            "/_test/faults",
            {
                "errors": [
                    {"count": count, "status": status, "path_prefix": path_prefix, "method": method, "after": after}
                ]
            },
        )

    def clear_faults(self) -> None:
        self._call("POST", "/_test/faults", {"latency": 0, "rate_limit": None, "errors": None})

    def faults(self) -> dict:
        return self._call("GET", "/_test/faults")

    # ---------------------------------------------------------------------------------------------- request log
    @property
    def request_log(self) -> list[dict]:
        """Every /v1 request seen: id, method, path, query, params, status, duration_ms, idempotency_key,
        stripe_account, api_key, replayed."""
        return self._call("GET", "/_test/requests")["data"]

    def request_count(
        self, method: str | None = None, path_prefix: str | None = None, status: int | None = None
    ) -> int:
        return sum(
            1
            for r in self.request_log
            if (method is None or r["method"] == method.upper())
            and (path_prefix is None or r["path"].startswith(path_prefix))
            and (status is None or r["status"] == status)
        )

    def clear_request_log(self) -> None:
        self._call("DELETE", "/_test/requests")

    # ---------------------------------------------------------------------------------------------- money truth
    def settle(self, payment_intent: str | None = None, *, outcome: str | None = None) -> list[dict]:
        """Settle processing bank debits (ACH, SEPA) now. The outcome follows the test account number unless
        `outcome` ("succeeded" / "failed") forces it. Returns one row per settled charge."""
        return self._call("POST", "/_test/settle", {"payment_intent": payment_intent, "outcome": outcome})["settled"]

    def pay_out(
        self, account: str | None = None, *, currency: str | None = None, failure_code: str | None = None
    ) -> list[dict]:
        """Pay out the available balance of a connected account (all of them when None): payout.created, then
        payout.paid (or payout.failed) events carrying `account`. Returns the payouts."""
        return self._call(
            "POST", "/_test/payouts", {"account": account, "currency": currency, "failure_code": failure_code}
        )["payouts"]

    def balances(self) -> dict[str, dict[str, int]]:
        """Available balance per account ("platform" for the platform) and currency."""
        return self._call("GET", "/_test/balances")

    def payment_intents(self, **metadata: str) -> list[dict]:
        """All PaymentIntents (oldest first) with status, amount, metadata, idempotency key, charges, refunds...;
        keyword arguments filter on metadata."""
        query = "?" + urllib.parse.urlencode({f"metadata[{k}]": v for k, v in metadata.items()}) if metadata else ""
        return self._call("GET", "/_test/payment_intents" + query)["data"]

    def charges_for(self, ref: str | None = None, *, metadata: dict[str, str] | None = None) -> list[dict]:
        """Charges (every attempt, failed ones included) of a PaymentIntent id, or of the PaymentIntents whose
        metadata has the key `ref`, or whose metadata contains all of `metadata`."""
        params: dict[str, str] = {}
        if ref and ref.startswith("pi_"):
            params["payment_intent"] = ref
        elif ref:
            params["metadata_key"] = ref
        for k, v in (metadata or {}).items():
            params[f"metadata[{k}]"] = v
        return self._call("GET", "/_test/charges?" + urllib.parse.urlencode(params))["data"]


class WebhookRecorder:
    """A tiny webhook receiver on 127.0.0.1 (threaded http.server) that records what it is sent.

    `status` is what it answers (a callable `(n) -> int` for the n-th request, from 1, is accepted too)."""

    def __init__(self, status: int | Any = 200) -> None:
        self.status = status
        self.received: list[dict] = []
        self._cond = threading.Condition()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://{HOST}:{self._httpd.server_address[1]}/webhook"

    def start(self) -> WebhookRecorder:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with recorder._cond:
                    recorder.received.append({"headers": dict(self.headers), "body": body, "path": self.path})
                    n = len(recorder.received)
                    recorder._cond.notify_all()
                status = recorder.status(n) if callable(recorder.status) else recorder.status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer((HOST, 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> WebhookRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def payloads(self) -> list[dict]:
        with self._cond:
            return [json.loads(r["body"]) for r in self.received]

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> list[dict]:
        """Wait until `predicate(list of event payloads)` is true; returns the payloads (raises on timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                events = [json.loads(r["body"]) for r in self.received]
                if predicate(events):
                    return events
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"webhooks received so far: {[e.get('type') for e in events]}")
                self._cond.wait(remaining)

    def wait_for_type(self, event_type: str, timeout: float = 10.0) -> dict:
        events = self.wait_for(lambda evs: any(e["type"] == event_type for e in evs), timeout)
        return next(e for e in events if e["type"] == event_type)


# =====================================================================================================================
# Child side: state, errors, helpers
# =====================================================================================================================

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
        self.ledger: dict[tuple[str | None, str], int] = {}
        self.refunds_by_charge: dict[str, list[str]] = {}
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


def _credit(account: str | None, currency: str, amount: int) -> None:
    key = (account, currency.lower())
    S.ledger[key] = S.ledger.get(key, 0) + amount


def _available(account: str | None, currency: str) -> int:
    return S.ledger.get((account, currency.lower()), 0)


def _account_obj(account_id: str) -> Account | None:
    return store.get("account:" + account_id) if isinstance(account_id, str) else None


def _emit(type_: str, obj: Any) -> Event:
    event = Event(type_, obj)
    _schedule_event(event)
    return event


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


# ------------------------------------------------------------------------------------------------ test card tables
CARD_TEST_PAYMENT_METHODS = {
    "pm_card_visa": "4242424242424242",
    "pm_card_us": "4242424242424242",
    "pm_card_visa_debit": "4000056655665556",
    "pm_card_mastercard": "5555555555554444",
    "pm_card_mastercard_debit": "5200828282828210",
    "pm_card_amex": "378282246310005",
    "pm_card_discover": "6011111111111117",
    "pm_card_bypassPending": "4000000000000077",
    "pm_card_visa_chargeDeclined": "4000000000000002",
    "pm_card_visa_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_visa_chargeDeclinedLostCard": "4000000000009987",
    "pm_card_visa_chargeDeclinedStolenCard": "4000000000009979",
    "pm_card_chargeDeclinedExpiredCard": "4000000000000069",
    "pm_card_chargeDeclinedIncorrectCvc": "4000000000000127",
    "pm_card_chargeDeclinedProcessingError": "4000000000000119",
    "pm_card_chargeCustomerFail": "4000000000000341",
    "pm_card_radarBlock": "4100000000000019",
    "pm_card_authenticationRequired": "4000002760003184",
    "pm_card_authenticationRequiredOnSetup": "4000002500003155",
    "pm_card_authenticationRequiredSetupForOffSession": "4000002500003155",
    "pm_card_threeDSecure2Required": "4000000000003220",
}

GENERIC_DECLINE = ("card_declined", "generic_decline", "Your card was declined.")
CARD_DECLINES = {  # number -> (code, decline_code, message); attaching these fails too, except 0341
    "4000000000000002": GENERIC_DECLINE,
    "4000000000009995": ("card_declined", "insufficient_funds", "Your card has insufficient funds."),
    "4000000000009987": ("card_declined", "lost_card", "Your card was declined."),
    "4000000000009979": ("card_declined", "stolen_card", "Your card was declined."),
    "4000000000000069": ("expired_card", "expired_card", "Your card has expired."),
    "4000000000000127": ("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."),
    "4000000000000119": (
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
    "4242424242424241": ("incorrect_number", "incorrect_number", "Your card number is incorrect."),
    "4100000000000019": ("card_declined", "fraudulent", "Your card was declined."),
    "4000000000000341": GENERIC_DECLINE,
    "4000008260003178": ("card_declined", "insufficient_funds", "Your card has insufficient funds."),
    "4000008400001629": GENERIC_DECLINE,
}
CHARGE_ONLY_DECLINES = {"4000000000000341", "4000008260003178", "4000008400001629"}
AUTH_REQUIRED = {
    "4000002500003155",
    "4000002760003184",
    "4000008260003178",
    "4000000000003220",
    "4000000000003063",
    "4000008400001629",
}
AUTH_REQUIRED_DECLINE = (
    "authentication_required",
    "authentication_required",
    "Your card was declined. This transaction requires authentication.",
)

# ACH (us_bank_account) test account numbers, routing 110000000: failure code on settlement.
ACH_FAILURES = {
    "000111111113": "account_closed",
    "000111111116": "no_account",
    "000222222227": "insufficient_funds",
    "000333333335": "debit_not_authorized",
    "000444444440": "invalid_currency",
}
ACH_TEST_PAYMENT_METHODS = {
    "pm_usBankAccount_success": "000123456789",
    "pm_usBankAccount_accountClosed": "000111111113",
    "pm_usBankAccount_noAccount": "000111111116",
    "pm_usBankAccount_insufficientFunds": "000222222227",
    "pm_usBankAccount_debitNotAuthorized": "000333333335",
    "pm_usBankAccount_invalidCurrency": "000444444440",
}
SEPA_FAILURES = {"DE62370400440532013001": "insufficient_funds", "DE78370400440532013004": "insufficient_funds"}
DEBIT_FAILURE_MESSAGES = {
    "account_closed": "The customer's bank account has been closed.",
    "no_account": "The customer's bank account could not be located.",
    "insufficient_funds": "The customer's account has insufficient funds to cover this payment.",
    "debit_not_authorized": "The customer has notified their bank that this payment was unauthorized.",
    "invalid_currency": "The customer's bank account does not support this currency.",
}
PAYOUT_FAILURES = {
    "111111116": "no_account",
    "111111113": "account_closed",
    "222222227": "insufficient_funds",
    "333333335": "debit_not_authorized",
    "444444440": "invalid_currency",
}
PAYOUT_FAILURE_MESSAGES = {
    "no_account": "The bank account details on file are probably incorrect. No bank account could be located.",
    "account_closed": "The bank account has been closed.",
    "insufficient_funds": "Your Stripe account has insufficient funds to cover the payout.",
    "debit_not_authorized": "Debit transactions are not approved on the bank account.",
    "invalid_currency": "The bank was unable to process this payout because of its currency.",
    "could_not_process": "The bank could not process this payout.",
}
MIN_AMOUNTS = {"usd": 50, "eur": 50, "cad": 50, "aud": 50, "chf": 50, "gbp": 30}
COUNTRY_CURRENCY = {"US": "usd", "CA": "cad", "GB": "gbp", "AU": "aud", "JP": "jpy", "CH": "chf", "NZ": "nzd"}
EURO_COUNTRIES = {
    "AT",
    "BE",
    "CY",
    "DE",
    "EE",
    "ES",
    "FI",
    "FR",
    "GR",
    "HR",
    "IE",
    "IT",
    "LT",
    "LU",
    "LV",
    "MT",
    "NL",
    "PT",
    "SI",
    "SK",
}
STATEMENT_DESCRIPTOR_FORBIDDEN = set("<>\\'\"*")


def _luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _aba_ok(routing: str) -> bool:
    weights = (3, 7, 1) * 3
    return len(routing) == 9 and routing.isdigit() and sum(int(c) * w for c, w in zip(routing, weights)) % 10 == 0


def _card_brand(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if re.match(r"^(5[1-5]|2[2-7])", number):
        return "mastercard"
    if re.match(r"^3[47]", number):
        return "amex"
    if re.match(r"^(6011|65|64[4-9])", number):
        return "discover"
    return "unknown"


def _decline_info(pm: Any) -> tuple[str, str, str]:
    if getattr(pm, "type", None) == "card":
        return CARD_DECLINES.get(pm._card_number, GENERIC_DECLINE)
    return GENERIC_DECLINE


def _bank_failure(pm: Any) -> str | None:
    if pm.type == "us_bank_account":
        return ACH_FAILURES.get(pm._account_number)
    if pm.type == "sepa_debit":
        return SEPA_FAILURES.get(pm._sepa_debit_iban)
    return None


def _check_statement_descriptor(value: Any, param: str, minimum: int) -> str | None:
    value = _blank_to_none(value)
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not minimum <= len(value) <= 22
        or not re.search("[A-Za-z]", value)
        or STATEMENT_DESCRIPTOR_FORBIDDEN & set(value)
    ):
        raise _invalid(
            param,
            f"Invalid {param}: it must be {minimum} to 22 characters long, contain at least one "
            "letter and none of < > \\ ' \" *.",
        )
    return value


# =====================================================================================================================
# Child side: new resources (Connect)
# =====================================================================================================================


class Account(StripeObject):
    object = "account"
    _id_prefix = "acct_"
    _fields = (
        "type",
        "country",
        "email",
        "business_type",
        "capabilities",
        "metadata",
        "business_profile",
        "company",
        "individual",
        "tos_acceptance",
        "external_account",
        "default_currency",
        "settings",
        "controller",
    )

    def __init__(
        self,
        type=None,
        country=None,
        email=None,
        business_type=None,
        capabilities=None,
        metadata=None,
        business_profile=None,
        company=None,
        individual=None,
        tos_acceptance=None,
        external_account=None,
        default_currency=None,
        settings=None,
        controller=None,
        **kwargs,
    ):
        if kwargs:
            raise _unknown(kwargs)
        if type not in (None, "standard", "express", "custom"):
            raise _invalid("type")
        country = (country or "US").upper()
        if len(country) != 2:
            raise _invalid("country")
        for name, value in (
            ("capabilities", capabilities),
            ("metadata", metadata),
            ("settings", settings),
            ("business_profile", business_profile),
            ("controller", controller),
        ):
            if value is not None and not isinstance(value, dict):
                raise _invalid(name)
        super().__init__()
        self.type = type or ("custom" if controller else "standard")
        self.country = country
        self.email = email
        self.business_type = business_type
        self.business_profile = business_profile or {}
        self.company = company
        self.individual = individual
        self.controller = controller
        self.default_currency = (
            default_currency or COUNTRY_CURRENCY.get(country) or ("eur" if country in EURO_COUNTRIES else "usd")
        ).lower()
        self.capabilities = {}
        self._set_capabilities(capabilities or {})
        self.metadata = metadata or {}
        self.charges_enabled = True
        self.payouts_enabled = True
        self.details_submitted = True
        self.requirements = {
            "currently_due": [],
            "eventually_due": [],
            "past_due": [],
            "pending_verification": [],
            "disabled_reason": None,
            "current_deadline": None,
            "errors": [],
        }
        self.settings = settings or {"payouts": {"schedule": {"interval": "manual"}}}
        self.tos_acceptance = tos_acceptance or {}
        self._bank = None
        self._set_external_account(external_account)

    def _set_capabilities(self, capabilities: dict) -> None:
        for name, value in capabilities.items():
            requested = (
                _to_bool(value.get("requested"), f"capabilities[{name}][requested]")
                if isinstance(value, dict)
                else True
            )
            self.capabilities[name] = "active" if requested is not False else "inactive"

    def _set_external_account(self, external_account: Any) -> None:
        if external_account is None:
            return
        if isinstance(external_account, dict):
            number = str(external_account.get("account_number") or "000123456789")
            routing = str(external_account.get("routing_number") or "110000000")
            currency = str(external_account.get("currency") or self.default_currency).lower()
            country = str(external_account.get("country") or self.country).upper()
        elif isinstance(external_account, str):  # a token such as btok_us_verified
            number, routing, currency, country = "000123456789", "110000000", self.default_currency, self.country
        else:
            raise _invalid("external_account")
        self._bank = {
            "id": "ba_" + random_id(24),
            "object": "bank_account",
            "account": self.id,
            "bank_name": "STRIPE TEST BANK",
            "country": country,
            "currency": currency,
            "default_for_currency": True,
            "fingerprint": fingerprint(routing + ":" + number),
            "last4": number[-4:],
            "routing_number": routing,
            "status": "new",
            "_account_number": number,
        }

    @property
    def external_accounts(self):
        data = [{k: v for k, v in self._bank.items() if not k.startswith("_")}] if self._bank else []
        return {
            "object": "list",
            "data": data,
            "has_more": False,
            "total_count": len(data),
            "url": f"/v1/accounts/{self.id}/external_accounts",
        }

    @classmethod
    def _api_update(cls, id, **data):
        obj = cls._api_retrieve(id)
        unknown = {k: v for k, v in data.items() if k not in cls._fields or k in ("type", "country", "controller")}
        if unknown:
            raise _unknown(unknown)
        if "capabilities" in data:
            obj._set_capabilities(data.pop("capabilities") or {})
        if "external_account" in data:
            obj._set_external_account(data.pop("external_account"))
        metadata = data.pop("metadata", None)
        if isinstance(metadata, dict):
            obj.metadata.update(metadata)
        for key, value in data.items():
            setattr(obj, key, value)
        _emit("account.updated", obj)
        return obj

    @classmethod
    def _api_list_all(cls, url, limit=None, starting_after=None, ending_before=None, created=None):
        keep = _created_filter(created)
        return _list_of(url, [a for a in _objects("account") if keep(a)], limit, starting_after, ending_before)


def _require_account(account_id: Any, param: str, noun: str = "account") -> Account:
    obj = _account_obj(account_id)
    if obj is None:
        raise _StripeError(400, f"No such {noun}: '{account_id}'", code="resource_missing", param=param)
    return obj


class Transfer(StripeObject):
    object = "transfer"
    _id_prefix = "tr_"

    def __init__(
        self,
        amount=None,
        currency=None,
        destination=None,
        description=None,
        metadata=None,
        source_transaction=None,
        transfer_group=None,
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
        if not destination:
            raise _missing("destination")
        _require_account(destination, "destination", "destination")
        if source_transaction:
            Charge._api_retrieve(source_transaction)
        super().__init__()
        self.amount = amount
        self.amount_reversed = 0
        self.currency = str(currency).lower()
        self.description = description
        self.destination = destination
        self.destination_payment = "py_" + random_id(24)
        self.metadata = metadata or {}
        self.reversed = False
        self.source_transaction = source_transaction
        self.source_type = "card"
        self.transfer_group = transfer_group
        self.balance_transaction = "txn_" + random_id(24)
        self._reversals: list[str] = []
        _credit(None, self.currency, -amount)
        _credit(destination, self.currency, amount)
        _emit("transfer.created", self)

    @property
    def reversals(self):
        data = [store["transfer_reversal:" + r]._export() for r in self._reversals]
        return {
            "object": "list",
            "data": data,
            "has_more": False,
            "total_count": len(data),
            "url": f"/v1/transfers/{self.id}/reversals",
        }

    @classmethod
    def _api_create(cls, **data):
        if not data.get("source_transaction") and data.get("currency") and data.get("amount") is not None:
            amount = _to_int(data["amount"], "amount")
            if amount > _available(None, str(data["currency"])):
                raise _StripeError(
                    400,
                    "You have insufficient available funds in your Stripe account. Try adding "
                    "funds directly to your available balance.",
                    code="balance_insufficient",
                )
        return cls(**data)

    @classmethod
    def _api_list_all(
        cls,
        url,
        destination=None,
        transfer_group=None,
        created=None,
        limit=None,
        starting_after=None,
        ending_before=None,
    ):
        keep = _created_filter(created)
        objs = [
            t
            for t in _objects("transfer")
            if keep(t)
            and (destination is None or t.destination == destination)
            and (transfer_group is None or t.transfer_group == transfer_group)
        ]
        return _list_of(url, objs, limit, starting_after, ending_before)

    @classmethod
    def _api_create_reversal(
        cls, id, amount=None, metadata=None, description=None, refund_application_fee=None, **kwargs
    ):
        if kwargs:
            raise _unknown(kwargs)
        transfer = cls._api_retrieve(id)
        remaining = transfer.amount - transfer.amount_reversed
        amount = remaining if amount is None else _to_int(amount, "amount")
        if amount <= 0 or amount > remaining:
            raise _invalid("amount", f"Amount must be between 1 and {remaining}.")
        return TransferReversal(transfer, amount, metadata)


class TransferReversal(StripeObject):
    object = "transfer_reversal"
    _id_prefix = "trr_"

    def __init__(self, transfer, amount, metadata=None, source_refund=None):
        super().__init__()
        self.amount = amount
        self.currency = transfer.currency
        self.transfer = transfer.id
        self.metadata = metadata or {}
        self.source_refund = source_refund
        self.destination_payment_refund = "pyr_" + random_id(24)
        self.balance_transaction = "txn_" + random_id(24)
        transfer.amount_reversed += amount
        transfer.reversed = transfer.amount_reversed >= transfer.amount
        transfer._reversals.append(self.id)
        _credit(transfer.destination, self.currency, -amount)
        _credit(None, self.currency, amount)
        _emit("transfer.reversed", transfer)


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


# =====================================================================================================================
# Child side: patches of localstripe's resources (applied in the child process only, by _install())
# =====================================================================================================================


def _resolve_pm(pm_id: Any, param: str = "payment_method") -> Any:
    if not isinstance(pm_id, str) or not pm_id:
        raise _invalid(param)
    if not pm_id.startswith(("pm_", "src_", "card_")):
        raise _StripeError(400, f"No such PaymentMethod: '{pm_id}'", code="resource_missing", param=param)
    try:
        return PaymentMethod._api_retrieve(pm_id)
    except UserError:
        raise _StripeError(400, f"No such PaymentMethod: '{pm_id}'", code="resource_missing", param=param) from None


def _billing_details(value: Any) -> dict:
    if value is not None and not isinstance(value, dict):
        raise _invalid("billing_details")
    value = value or {}
    address = value.get("address") or {}
    return {
        "address": {k: address.get(k) for k in ("city", "country", "line1", "line2", "postal_code", "state")},
        "email": value.get("email"),
        "name": value.get("name"),
        "phone": value.get("phone"),
    }


def _pm_init(
    self,
    type=None,
    billing_details=None,
    card=None,
    sepa_debit=None,
    us_bank_account=None,
    metadata=None,
    allow_redisplay=None,
    **kwargs,
):
    if kwargs:
        raise _unknown(kwargs)
    if type is None:
        raise _missing("type")
    if type not in ("card", "sepa_debit", "us_bank_account"):
        raise _invalid("type", f"Invalid type: must be one of card, sepa_debit, us_bank_account (got {type!r}).")
    details = _billing_details(billing_details)
    if type == "card":
        if not isinstance(card, dict):
            raise _missing("card")
        number = re.sub(r"[\s-]", "", str(card.get("number") or ""))
        if not number:
            raise _missing("card[number]")
        if not number.isdigit() or not 13 <= len(number) <= 19:
            raise _StripeError(
                402, "Your card number is incorrect.", type="card_error", code="incorrect_number", param="number"
            )
        exp_month = _to_int(card.get("exp_month"), "card[exp_month]")
        exp_year = _to_int(card.get("exp_year"), "card[exp_year]")
        if 0 < exp_year < 100:
            exp_year += 2000
        if not 1 <= exp_month <= 12:
            raise _StripeError(
                402,
                "Your card's expiration month is invalid.",
                type="card_error",
                code="invalid_expiry_month",
                param="exp_month",
            )
        now = time.gmtime()
        if not (now.tm_year, now.tm_mon) <= (exp_year, exp_month) or exp_year > now.tm_year + 50:
            raise _StripeError(
                402,
                "Your card's expiration year is invalid.",
                type="card_error",
                code="invalid_expiry_year",
                param="exp_year",
            )
        unexpected = set(card) - {"number", "exp_month", "exp_year", "cvc"}
        if unexpected:
            raise _unknown({f"card[{sorted(unexpected)[0]}]": None})
    elif type == "sepa_debit":
        if not isinstance(sepa_debit, dict) or not sepa_debit.get("iban"):
            raise _missing("sepa_debit[iban]")
        iban = re.sub(r"\s", "", str(sepa_debit["iban"])).upper()
        if not 14 <= len(iban) <= 34 or not re.match(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]+$", iban):
            raise _invalid("sepa_debit[iban]", "The IBAN you provided is invalid.", code="invalid_bank_account_iban")
        for field in ("name", "email"):
            if not details[field]:
                raise _missing(f"billing_details[{field}]")
    else:
        if not isinstance(us_bank_account, dict):
            raise _missing("us_bank_account")
        if us_bank_account.get("financial_connections_account"):
            routing, account_number = "110000000", "000123456789"
        else:
            routing = str(us_bank_account.get("routing_number") or "")
            account_number = str(us_bank_account.get("account_number") or "")
            if not routing:
                raise _missing("us_bank_account[routing_number]")
            if not account_number:
                raise _missing("us_bank_account[account_number]")
            if not _aba_ok(routing):
                raise _invalid(
                    "us_bank_account[routing_number]",
                    "Routing number must have 9 digits and be valid.",
                    code="routing_number_invalid",
                )
            if not account_number.isdigit() or not 4 <= len(account_number) <= 17:
                raise _invalid(
                    "us_bank_account[account_number]", "Invalid account number.", code="account_number_invalid"
                )
        holder_type = us_bank_account.get("account_holder_type") or "individual"
        account_type = us_bank_account.get("account_type") or "checking"
        if holder_type not in ("individual", "company"):
            raise _invalid("us_bank_account[account_holder_type]")
        if account_type not in ("checking", "savings"):
            raise _invalid("us_bank_account[account_type]")
        if not details["name"]:
            raise _missing("billing_details[name]")
    if metadata is not None and not isinstance(metadata, dict):
        raise _invalid("metadata")

    StripeObject.__init__(self)
    self.type = type
    self.billing_details = details
    self.customer = None
    self.metadata = metadata or {}
    self.allow_redisplay = allow_redisplay or "unspecified"
    if type == "card":
        self._card_number = number
        brand = _card_brand(number)
        self.card = {
            "brand": brand,
            "display_brand": brand,
            "country": "US",
            "exp_month": exp_month,
            "exp_year": exp_year,
            "fingerprint": fingerprint(number),
            "funding": "debit" if number in ("4000056655665556", "5200828282828210") else "credit",
            "last4": number[-4:],
            "checks": {
                "address_line1_check": None,
                "address_postal_code_check": None,
                "cvc_check": "pass" if card.get("cvc") else None,
            },
            "networks": {"available": [brand], "preferred": None},
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
            "generated_from": None,
        }
    elif type == "sepa_debit":
        self._sepa_debit_iban = iban
        self.sepa_debit = {
            "bank_code": iban[4:12],
            "branch_code": "",
            "country": iban[:2],
            "fingerprint": fingerprint(iban),
            "last4": iban[-4:],
            "generated_from": None,
        }
    else:
        self._routing_number = routing
        self._account_number = account_number
        self.us_bank_account = {
            "account_holder_type": holder_type,
            "account_type": account_type,
            "bank_name": "STRIPE TEST BANK",
            "financial_connections_account": us_bank_account.get("financial_connections_account"),
            "fingerprint": fingerprint(routing + ":" + account_number),
            "last4": account_number[-4:],
            "networks": {"preferred": "ach", "supported": ["ach"]},
            "routing_number": routing,
            "status_details": {},
        }


def _pm_canonical(cls, id):
    if id in CARD_TEST_PAYMENT_METHODS:
        return PaymentMethod(
            type="card",
            card={
                "number": CARD_TEST_PAYMENT_METHODS[id],
                "exp_month": "12",
                "exp_year": str(time.gmtime().tm_year + 3),
                "cvc": "123",
            },
        )
    if id in ACH_TEST_PAYMENT_METHODS:
        return PaymentMethod(
            type="us_bank_account",
            billing_details={"name": "Jenny Rosen"},
            us_bank_account={"routing_number": "110000000", "account_number": ACH_TEST_PAYMENT_METHODS[id]},
        )
    return None


def _pm_requires_authentication(self):
    return self.type == "card" and self._card_number in AUTH_REQUIRED


def _pm_attaching_is_declined(self):
    return self.type == "card" and self._card_number in CARD_DECLINES and self._card_number not in CHARGE_ONLY_DECLINES


def _pm_charging_is_declined(self):
    if self.type == "card":
        return self._card_number in CARD_DECLINES
    return _bank_failure(self) is not None


def _pm_list(cls, url, customer=None, type=None, limit=None, starting_after=None, ending_before=None):
    if customer is not None:
        Customer._api_retrieve(customer)
    objs = [
        pm
        for pm in _objects("payment_method")
        if (customer is None or pm.customer == customer) and (type is None or pm.type == type)
    ]
    return _list_of(url, objs, limit, starting_after, ending_before)


def _card_error(message: str, code: str, decline_code: str | None, **fields: Any) -> _StripeError:
    return _StripeError(402, message, type="card_error", code=code, decline_code=decline_code, **fields)


def _pm_api_attach(cls, id, customer=None, **kwargs):
    if kwargs:
        raise _unknown(kwargs)
    if not customer:
        raise _missing("customer")
    obj = PaymentMethod._api_retrieve(id)
    Customer._api_retrieve(customer)
    if obj.customer and obj.customer != customer:
        raise _StripeError(
            400,
            "The payment method you provided has already been attached to a customer.",
            code="payment_method_unexpected_state",
        )
    if obj._attaching_is_declined():
        code, decline_code, message = _decline_info(obj)
        raise _card_error(message, code, decline_code, payment_method=obj._export())
    if obj.customer != customer:
        obj.customer = customer
        _emit("payment_method.attached", obj)
    return obj


def _customer_payment_methods(id, type=None, limit=None, starting_after=None, ending_before=None, **kwargs):
    if kwargs:
        raise _unknown(kwargs)
    return _pm_list(
        PaymentMethod,
        f"/v1/customers/{id}/payment_methods",
        customer=id,
        type=type,
        limit=limit,
        starting_after=starting_after,
        ending_before=ending_before,
    )


# ------------------------------------------------------------------------------------------------ charges
def _charge_is_async(self):
    pm = PaymentMethod._api_retrieve(self.payment_method)
    return pm.type in ("sepa_debit", "us_bank_account")


def _charge_set_auth_failure(self):
    forced = getattr(self, "_forced_failure", None)
    code, decline_code, message = forced or _decline_info(PaymentMethod._api_retrieve(self.payment_method))
    self.status = "failed"
    self.failure_code = code
    self.failure_message = message
    self._decline_code = decline_code
    self.outcome = {
        "network_status": "declined_by_network",
        "reason": decline_code,
        "risk_level": "normal",
        "seller_message": "The bank did not return any further details with this decline.",
        "type": "issuer_declined",
    }


def _charge_raise_failure(self):
    raise _card_error(self.failure_message, self.failure_code, getattr(self, "_decline_code", None), charge=self.id)


def _charge_initialize(self, on_success=None, on_failure_now=None, on_failure_later=None):
    if self._is_async_payment_method():
        # Bank debits stay `pending` (PaymentIntent: processing) until settled: POST /_test/settle, or
        # bank_settle_delay seconds later if configured. The outcome follows the test account number.
        self.status = "pending"
        self._settle_callbacks = (on_success, on_failure_later)
        S.pending_bank.append(self.id)
        _emit("charge.pending", self)
        if S.bank_settle_delay is not None:
            generation, charge_id = S.generation, self.id

            def later() -> None:
                if generation == S.generation:
                    _settle_charge(charge_id)

            asyncio.get_running_loop().call_later(S.bank_settle_delay, later)
        return
    if not self._authorized:
        self._set_auth_failure()
        _emit("charge.failed", self)
        if on_failure_now:
            on_failure_now()
        return
    self.status = "succeeded"
    self.outcome = {
        "network_status": "approved_by_network",
        "reason": None,
        "risk_level": "normal",
        "seller_message": "Payment complete.",
        "type": "authorized",
    }
    if self.captured:
        self._trigger_payment(on_success)


def _settle_charge(charge_id: str, outcome: str | None = None) -> dict | None:
    charge = store.get("charge:" + charge_id)
    if charge is None or charge.status != "pending":
        return None
    with contextlib.suppress(ValueError):
        S.pending_bank.remove(charge_id)
    pm = PaymentMethod._api_retrieve(charge.payment_method)
    failure = _bank_failure(pm)
    if outcome == "failed":
        failure = failure or "insufficient_funds"
    elif outcome == "succeeded":
        failure = None
    on_success, on_failure_later = getattr(charge, "_settle_callbacks", (None, None))
    with _background_context(getattr(charge, "_account", None)):
        if failure:
            charge.status = "failed"
            charge.failure_code = failure
            charge.failure_message = DEBIT_FAILURE_MESSAGES.get(failure, "The payment failed.")
            charge._decline_code = None
            charge.outcome = {
                "network_status": "declined_by_network",
                "reason": failure,
                "risk_level": "normal",
                "seller_message": charge.failure_message,
                "type": "issuer_declined",
            }
            _emit("charge.failed", charge)
            if on_failure_later:
                on_failure_later()
        else:
            txn = BalanceTransaction(
                amount=charge.amount,
                currency=charge.currency,
                description=charge.description,
                exchange_rate=1.0,
                reporting_category="charge",
                source=charge.id,
                type="charge",
            )
            charge.balance_transaction = txn.id
            charge.status = "succeeded"
            charge.outcome = {
                "network_status": "approved_by_network",
                "reason": None,
                "risk_level": "normal",
                "seller_message": "Payment complete.",
                "type": "authorized",
            }
            if charge.captured and on_success:
                on_success()
    return {
        "charge": charge.id,
        "payment_intent": charge.payment_intent,
        "status": charge.status,
        "failure_code": charge.failure_code,
        "amount": charge.amount,
        "currency": charge.currency,
    }


def _charge_api_create(cls, **data):
    """Charges API (legacy): same as localstripe, plus the balance ledger."""
    obj = _orig["charge_api_create"](**data)
    if obj.status == "succeeded" and obj.captured:
        _credit(getattr(obj, "_account", None), obj.currency, obj.amount)
    return obj


def _charge_refunds(self):
    """localstripe scans the whole store for a charge's refunds on every export: index them instead."""
    li = List("/v1/charges/" + self.id + "/refunds")
    li._list = [store["refund:" + r] for r in reversed(S.refunds_by_charge.get(self.id, ())) if "refund:" + r in store]
    return li


def _charge_amount_refunded(self):
    return sum(store["refund:" + r].amount for r in S.refunds_by_charge.get(self.id, ()) if "refund:" + r in store)


def _charge_payment_method_details(self):
    pm = store.get("payment_method:" + str(self.payment_method))
    if pm is None:
        return None
    details = {"type": pm.type}
    if pm.type == "card":
        details["card"] = {
            k: pm.card[k]
            for k in ("brand", "country", "exp_month", "exp_year", "fingerprint", "funding", "last4", "network")
            if k in pm.card
        }
    elif pm.type == "sepa_debit":
        details["sepa_debit"] = dict(pm.sepa_debit)
    elif pm.type == "us_bank_account":
        details["us_bank_account"] = {
            k: pm.us_bank_account[k]
            for k in ("account_holder_type", "account_type", "bank_name", "fingerprint", "last4", "routing_number")
        }
    return details


def _charge_list(
    cls,
    url,
    customer=None,
    payment_intent=None,
    transfer_group=None,
    created=None,
    limit=None,
    starting_after=None,
    ending_before=None,
):
    keep = _created_filter(created)
    account = _ctx_account.get()
    objs = [
        c
        for c in _objects("charge")
        if keep(c)
        and getattr(c, "_account", None) == account
        and (customer is None or c.customer == customer)
        and (payment_intent is None or c.payment_intent == payment_intent)
        and (transfer_group is None or c.transfer_group == transfer_group)
    ]
    return _list_of(url, objs, limit, starting_after, ending_before)


# ------------------------------------------------------------------------------------------------ payment intents
# Create params localstripe refuses as "Unexpected": stored on the PaymentIntent (and echoed) ...
PI_EXTRA = {
    "description": None,
    "setup_future_usage": None,
    "transfer_data": None,
    "on_behalf_of": None,
    "application_fee_amount": None,
    "statement_descriptor": None,
    "statement_descriptor_suffix": None,
    "receipt_email": None,
    "transfer_group": None,
    "shipping": None,
    "confirmation_method": "automatic",
    "automatic_payment_methods": None,
}
# ... accepted and not echoed ...
PI_IGNORED = ("payment_method_configuration", "payment_method_data")
# ... and accepted on create only with confirm=true.
PI_CONFIRM_ONLY = (
    "mandate",
    "mandate_data",
    "return_url",
    "error_on_requires_action",
    "use_stripe_sdk",
    "radar_options",
)
PM_TYPES = ("card", "sepa_debit", "us_bank_account", "link", "ideal", "bancontact", "acss_debit", "bacs_debit")

_orig = {}


def _validate_pi_extras(extras: dict, amount: Any, currency: Any) -> None:
    td = extras.get("transfer_data")
    if td is not None:
        if not isinstance(td, dict) or not td.get("destination"):
            raise _missing("transfer_data[destination]")
        unexpected = set(td) - {"destination", "amount"}
        if unexpected:
            raise _unknown({f"transfer_data[{sorted(unexpected)[0]}]": None})
        _require_account(td["destination"], "transfer_data[destination]", "destination")
        normalized = {"destination": td["destination"], "amount": None}
        if td.get("amount") not in (None, ""):
            normalized["amount"] = _to_int(td["amount"], "transfer_data[amount]")
            if amount is not None and not 0 <= normalized["amount"] <= _to_int(amount, "amount"):
                raise _invalid("transfer_data[amount]", "transfer_data[amount] must be between 0 and the amount.")
        extras["transfer_data"] = normalized
    if extras.get("on_behalf_of"):
        _require_account(extras["on_behalf_of"], "on_behalf_of")
    else:
        extras["on_behalf_of"] = None
    fee = _blank_to_none(extras.get("application_fee_amount"))
    if fee is not None:
        fee = _to_int(fee, "application_fee_amount")
        if fee < 0 or (amount is not None and fee > _to_int(amount, "amount")):
            raise _invalid("application_fee_amount", "application_fee_amount must be between 0 and the amount.")
        if extras.get("transfer_data") is None and not _ctx_account.get():
            raise _StripeError(
                400,
                "Can only apply an application_fee_amount when the PaymentIntent is attempting a "
                "direct payment (using an OAuth key or Stripe-Account header) or destination "
                "payment (using `transfer_data[destination]`).",
                param="application_fee_amount",
            )
        if (extras.get("transfer_data") or {}).get("amount") is not None:
            raise _StripeError(
                400,
                "You cannot specify both `application_fee_amount` and `transfer_data[amount]`.",
                param="application_fee_amount",
            )
    extras["application_fee_amount"] = fee
    sfu = _blank_to_none(extras.get("setup_future_usage"))
    if sfu not in (None, "on_session", "off_session"):
        raise _invalid("setup_future_usage")
    extras["setup_future_usage"] = sfu
    extras["statement_descriptor"] = _check_statement_descriptor(
        extras.get("statement_descriptor"), "statement_descriptor", 5
    )
    extras["statement_descriptor_suffix"] = _check_statement_descriptor(
        extras.get("statement_descriptor_suffix"), "statement_descriptor_suffix", 1
    )
    if extras.get("description") is not None and not isinstance(extras["description"], str):
        raise _invalid("description")
    if extras.get("confirmation_method") not in (None, "automatic", "manual"):
        raise _invalid("confirmation_method")


def _pi_init(self, **data):
    extras = {k: data.pop(k) for k in list(data) if k in PI_EXTRA or k in PI_IGNORED}
    amount, currency = data.get("amount"), data.get("currency")
    if amount is None:
        raise _missing("amount")
    if not currency:
        raise _missing("currency")
    currency = str(currency).lower()
    data["currency"] = currency
    amount = _to_int(amount, "amount")
    if amount < MIN_AMOUNTS.get(currency, 1):
        raise _StripeError(
            400,
            f"Amount must be at least {MIN_AMOUNTS.get(currency, 1)} {currency} (in the smallest currency unit)",
            code="amount_too_small",
            param="amount",
        )
    _validate_pi_extras(extras, amount, currency)
    pmt = data.get("payment_method_types")
    if pmt is not None:
        if isinstance(pmt, str):
            pmt = [pmt]
        if not isinstance(pmt, list) or not pmt or any(t not in PM_TYPES for t in pmt):
            raise _invalid("payment_method_types")
        data["payment_method_types"] = pmt
    metadata = data.get("metadata")
    if metadata is not None and metadata != "" and not isinstance(metadata, dict):
        raise _invalid("metadata")
    if data.get("customer"):
        try:
            Customer._api_retrieve(data["customer"])
        except UserError:
            raise _StripeError(
                400, f"No such customer: '{data['customer']}'", code="resource_missing", param="customer"
            ) from None
    pm_data = extras.pop("payment_method_data", None)
    if pm_data is not None:
        if not isinstance(pm_data, dict):
            raise _invalid("payment_method_data")
        data["payment_method"] = PaymentMethod(**pm_data).id
    elif data.get("payment_method"):
        data["payment_method"] = _resolve_pm(data["payment_method"]).id
    _orig["pi_init"](self, **data)
    self.payment_method_types = pmt or ["card", "link", "us_bank_account", "sepa_debit"]
    self._explicit_pmt = pmt is not None
    for key, default in PI_EXTRA.items():
        setattr(self, key, extras.get(key, default))
    self.confirmation_method = self.confirmation_method or "automatic"
    self.canceled_at = None
    self.cancellation_reason = None
    self._idempotency_key = _ctx_idem.get()
    self._request_id = _ctx_request_id.get()
    self._charges: list[str] = []
    self._off_session = False
    self._force_failure = None
    self._error_on_requires_action = None
    self._mandate = None


def _pi_api_create(cls, confirm=None, off_session=None, **data):
    confirm = _to_bool(confirm, "confirm")
    off_session = _to_bool(off_session, "off_session") if off_session not in ("one_off", "recurring") else True
    if off_session is not None and not confirm:
        raise _StripeError(400, "You may only specify `off_session` when `confirm` is true.", param="off_session")
    confirm_params = {k: data.pop(k) for k in PI_CONFIRM_ONLY if k in data}
    if confirm_params and not confirm:
        first = next(iter(confirm_params))
        raise _StripeError(400, f"You may only specify `{first}` when `confirm` is true.", param=first)
    obj = cls(**data)
    obj._error_on_requires_action = _to_bool(confirm_params.get("error_on_requires_action"), "error_on_requires_action")
    obj._mandate = confirm_params.get("mandate")
    _emit("payment_intent.created", obj)
    if confirm:
        obj._off_session = bool(off_session)
        obj._confirm(on_failure_now=obj._report_failure)
    return obj


def _pi_check_payment_method(self, pm) -> None:
    if self._explicit_pmt and pm.type not in self.payment_method_types:
        raise _StripeError(
            400,
            f"The PaymentMethod provided ({pm.type}) is not allowed for this PaymentIntent. "
            "Please attach a PaymentMethod of one of the following types: "
            f"{', '.join(self.payment_method_types)}. Alternatively update the allowed "
            f'payment_method_types for this PaymentIntent to include "{pm.type}".',
            code="payment_intent_invalid_parameter",
            param="payment_method",
        )
    required = {"us_bank_account": "usd", "sepa_debit": "eur"}.get(pm.type)
    if required and self.currency != required:
        raise _StripeError(
            400,
            f"The currency provided ({self.currency}) is invalid. Payments with {pm.type} "
            f"support the following currencies: {required}.",
            code="payment_intent_invalid_parameter",
            param="currency",
        )
    if pm.customer and self.customer and pm.customer != self.customer:
        raise _StripeError(
            400,
            f"The provided PaymentMethod {pm.id} belongs to the Customer {pm.customer}. Please "
            "use the Customer ID that this PaymentMethod belongs to.",
            param="payment_method",
        )
    if pm.customer and not self.customer:
        raise _StripeError(
            400,
            f"The PaymentMethod {pm.id} belongs to the Customer {pm.customer}. Please include "
            "the Customer in the `customer` parameter on the PaymentIntent.",
            param="payment_method",
        )


def _pi_confirm(self, on_failure_now):
    self._authentication_failed = False
    if not self.payment_method:
        raise _StripeError(
            400,
            "You cannot confirm this PaymentIntent because it's missing a payment method. "
            "Update it with a payment method and then confirm it again.",
            code="payment_intent_unexpected_state",
        )
    pm = PaymentMethod._api_retrieve(self.payment_method)
    self._check_payment_method(pm)
    if pm._requires_authentication():
        set_up_for_off_session = pm._card_number == "4000002500003155" and pm.customer is not None
        if self._off_session and set_up_for_off_session:
            pass
        elif self._off_session or self._error_on_requires_action:
            self._force_failure = AUTH_REQUIRED_DECLINE
        else:
            self.next_action = {
                "type": "use_stripe_sdk",
                "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": ""},
            }
            _emit("payment_intent.requires_action", self)
            return
    self._create_charge(on_failure_now=on_failure_now)


def _pi_create_charge(self, on_failure_now):
    if self.status != "requires_confirmation":
        raise _StripeError(
            400,
            f"This PaymentIntent's status is {self.status}; it cannot be confirmed.",
            code="payment_intent_unexpected_state",
        )
    charge = Charge(
        amount=self.amount,
        currency=self.currency,
        customer=self.customer,
        source=self.payment_method,
        capture=(self.capture_method != "manual"),
        description=self.description,
        metadata=dict(self.metadata or {}),
    )
    charge.payment_intent = self.id
    charge.transfer_data = self.transfer_data
    charge.application_fee_amount = self.application_fee_amount
    charge.on_behalf_of = self.on_behalf_of
    charge.transfer_group = self.transfer_group
    charge.statement_descriptor = self.statement_descriptor
    charge.statement_descriptor_suffix = self.statement_descriptor_suffix
    charge.receipt_email = self.receipt_email
    charge._account = getattr(self, "_account", None)
    if self._force_failure:
        charge._authorized = False
        charge._forced_failure = self._force_failure
        self._force_failure = None
    self.latest_charge = charge
    self._charges.append(charge.id)
    charge._initialize_charge(self._on_success, on_failure_now, self._report_async_failure)
    if charge.status == "pending":
        _emit("payment_intent.processing", self)


def _pi_on_success(self):
    charge = self.latest_charge
    currency, fee = self.currency, self.application_fee_amount or 0
    account = getattr(self, "_account", None)
    if account:  # direct charge on a connected account
        _credit(account, currency, self.amount - fee)
        _credit(None, currency, fee)
    else:
        _credit(None, currency, self.amount)
        if self.transfer_data:
            amount = self.transfer_data.get("amount")
            amount = self.amount - fee if amount is None else amount
            transfer = Transfer(
                amount=amount,
                currency=currency,
                destination=self.transfer_data["destination"],
                source_transaction=charge.id,
                transfer_group=self.transfer_group,
            )
            charge.transfer = transfer.id
            charge.destination = self.transfer_data["destination"]
    if fee:
        charge.application_fee = "fee_" + random_id(24)
    if self.setup_future_usage and self.customer:
        pm = PaymentMethod._api_retrieve(self.payment_method)
        if pm.customer is None:
            pm.customer = self.customer
            _emit("payment_method.attached", pm)
    _emit("charge.succeeded", charge)
    _orig["pi_on_success"](self)


def _pi_report_failure(self):
    _emit("payment_intent.payment_failed", self)
    if self.invoice:
        ls.Invoice._api_retrieve(self.invoice)._on_payment_failure_now()
    charge = self.latest_charge
    pm = PaymentMethod._api_retrieve(charge.payment_method)
    raise _card_error(
        charge.failure_message,
        charge.failure_code,
        getattr(charge, "_decline_code", None),
        charge=charge.id,
        payment_intent=self._export(),
        payment_method=pm._export(),
    )


def _pi_last_payment_error(self):
    if self._authentication_failed:
        return {
            "code": "payment_intent_authentication_failure",
            "type": "invalid_request_error",
            "message": "The provided PaymentMethod has failed authentication.",
        }
    charge = self.latest_charge
    if charge is not None and charge.status == "failed":
        pm = PaymentMethod._api_retrieve(charge.payment_method)
        return {
            "charge": charge.id,
            "code": charge.failure_code,
            "decline_code": getattr(charge, "_decline_code", None),
            "message": charge.failure_message,
            "type": "card_error" if pm.type == "card" else "invalid_request_error",
            "payment_method": pm._export(),
        }
    return None


def _pi_export(self, expand=None):
    expand = list(expand or [])
    out = _orig["pi_export"](self, expand=expand)
    out.pop("charges", None)
    if not any(e == "latest_charge" or e.startswith("latest_charge.") for e in expand):
        if isinstance(out.get("latest_charge"), dict):
            out["latest_charge"] = out["latest_charge"]["id"]
    status = out.get("status")
    out["amount_received"] = self.amount if status == "succeeded" else 0
    out["amount_capturable"] = self.amount if status == "requires_capture" else 0
    return out


def _pi_api_confirm(
    cls,
    id,
    payment_method=None,
    off_session=None,
    payment_method_data=None,
    client_secret=None,
    setup_future_usage=None,
    receipt_email=None,
    capture_method=None,
    payment_method_types=None,
    error_on_requires_action=None,
    mandate=None,
    mandate_data=None,
    return_url=None,
    payment_method_options=None,
    use_stripe_sdk=None,
    shipping=None,
    radar_options=None,
    **kwargs,
):
    if kwargs:
        raise _unknown(kwargs)
    off_session = _to_bool(off_session, "off_session") if off_session not in ("one_off", "recurring") else True
    obj = cls._api_retrieve(id)
    if client_secret is not None and client_secret != obj.client_secret:
        raise _StripeError(
            400,
            "The client_secret provided does not match the client_secret associated with the PaymentIntent.",
            param="client_secret",
        )
    if payment_method_data is not None:
        if not isinstance(payment_method_data, dict):
            raise _invalid("payment_method_data")
        payment_method = PaymentMethod(**payment_method_data).id
    if obj.status not in ("requires_payment_method", "requires_confirmation"):
        raise _StripeError(
            400,
            f"This PaymentIntent's status is {obj.status}; it cannot be confirmed.",
            code="payment_intent_unexpected_state",
        )
    if payment_method:
        obj.payment_method = _resolve_pm(payment_method).id
    if obj.latest_charge is not None and obj.latest_charge.status == "failed":
        obj.latest_charge = None  # a new attempt
    if setup_future_usage is not None:
        obj.setup_future_usage = _validate_setup_future_usage(setup_future_usage)
    if receipt_email is not None:
        obj.receipt_email = receipt_email
    if capture_method is not None:
        if capture_method not in ("automatic", "automatic_async", "manual"):
            raise _invalid("capture_method")
        obj.capture_method = capture_method
    if shipping is not None:
        obj.shipping = shipping
    if mandate is not None:
        obj._mandate = mandate
    obj._error_on_requires_action = _to_bool(error_on_requires_action, "error_on_requires_action")
    obj._off_session = bool(off_session)
    obj._confirm(on_failure_now=obj._report_failure)
    return obj


def _validate_setup_future_usage(value: Any) -> str | None:
    value = _blank_to_none(value)
    if value not in (None, "on_session", "off_session"):
        raise _invalid("setup_future_usage")
    return value


def _pi_api_cancel(cls, id, cancellation_reason=None, **kwargs):
    if kwargs:
        raise _unknown(kwargs)
    if cancellation_reason not in (None, "duplicate", "fraudulent", "requested_by_customer", "abandoned"):
        raise _invalid("cancellation_reason")
    obj = cls._api_retrieve(id)
    if obj.status not in ("requires_payment_method", "requires_capture", "requires_confirmation", "requires_action"):
        raise _StripeError(
            400,
            f"You cannot cancel this PaymentIntent because it has a status of {obj.status}.",
            code="payment_intent_unexpected_state",
        )
    obj._canceled = True
    obj.next_action = None
    obj.canceled_at = int(time.time())
    obj.cancellation_reason = cancellation_reason
    _emit("payment_intent.canceled", obj)
    return obj


def _pi_api_update(cls, id, **data):
    obj = cls._api_retrieve(id)
    if obj.status in ("processing", "succeeded", "canceled"):
        raise _StripeError(
            400,
            f"This PaymentIntent's status is {obj.status}; it cannot be updated.",
            code="payment_intent_unexpected_state",
        )
    extras = {
        k: data[k]
        for k in (
            "transfer_data",
            "application_fee_amount",
            "on_behalf_of",
            "setup_future_usage",
            "statement_descriptor",
            "statement_descriptor_suffix",
        )
        if k in data
    }
    if extras:
        merged = {k: getattr(obj, k) for k in ("transfer_data", "application_fee_amount", "on_behalf_of")}
        merged.update(extras)
        _validate_pi_extras(merged, data.get("amount", obj.amount), obj.currency)
        for k in extras:
            data[k] = merged[k]
    if "amount" in data:
        data["amount"] = _to_int(data["amount"], "amount")
    if data.get("payment_method"):
        data["payment_method"] = _resolve_pm(data["payment_method"]).id
        if obj.latest_charge is not None and obj.latest_charge.status == "failed":
            obj.latest_charge = None
    unknown = {k: v for k, v in data.items() if not hasattr(obj, k) or k.startswith("_")}
    if unknown:
        raise _unknown(unknown)
    obj._update(**data)
    return obj


def _pi_list(cls, url, customer=None, created=None, limit=None, starting_after=None, ending_before=None):
    keep = _created_filter(created)
    account = _ctx_account.get()
    objs = [
        p
        for p in _objects("payment_intent")
        if keep(p) and getattr(p, "_account", None) == account and (customer is None or p.customer == customer)
    ]
    return _list_of(url, objs, limit, starting_after, ending_before)


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


# ------------------------------------------------------------------------------------------------ setup intents
SI_EXTRA = (
    "description",
    "mandate_data",
    "on_behalf_of",
    "return_url",
    "automatic_payment_methods",
    "payment_method_options",
    "single_use",
    "flow_directions",
    "attach_to_self",
    "use_stripe_sdk",
    "payment_method_configuration",
)


def _si_init(
    self,
    customer=None,
    usage=None,
    payment_method_types=None,
    metadata=None,
    payment_method=None,
    payment_method_data=None,
    **kwargs,
):
    extras = {k: kwargs.pop(k) for k in list(kwargs) if k in SI_EXTRA}
    if kwargs:
        raise _unknown(kwargs)
    if payment_method_types is not None:
        if isinstance(payment_method_types, str):
            payment_method_types = [payment_method_types]
        if not isinstance(payment_method_types, list) or any(t not in PM_TYPES for t in payment_method_types):
            raise _invalid("payment_method_types")
    if extras.get("on_behalf_of"):
        _require_account(extras["on_behalf_of"], "on_behalf_of")
    if customer:
        try:
            Customer._api_retrieve(customer)
        except UserError:
            raise _StripeError(
                400, f"No such customer: '{customer}'", code="resource_missing", param="customer"
            ) from None
    pm = None
    if payment_method_data is not None:
        pm = PaymentMethod(**payment_method_data)
    elif payment_method:
        pm = _resolve_pm(payment_method)
    _orig["si_init"](self, customer=customer, usage=usage, payment_method_types=None, metadata=metadata)
    self.payment_method_types = payment_method_types or ["card", "link", "us_bank_account", "sepa_debit"]
    self._explicit_pmt = payment_method_types is not None
    for key in SI_EXTRA:
        setattr(self, key, extras.get(key))
    self.last_setup_error = None
    self.mandate = None
    self.cancellation_reason = None
    if pm is not None:
        self.payment_method = pm.id
        self.status = "requires_confirmation"


def _si_api_create(cls, confirm=None, **data):
    confirm = _to_bool(confirm, "confirm")
    obj = cls(**data)
    _emit("setup_intent.created", obj)
    if confirm:
        _si_do_confirm(obj)
    return obj


def _si_do_confirm(obj) -> None:
    if obj.status not in ("requires_payment_method", "requires_confirmation"):
        raise _StripeError(
            400,
            f"This SetupIntent's status is {obj.status}; it cannot be confirmed.",
            code="setup_intent_unexpected_state",
        )
    if not obj.payment_method:
        raise _StripeError(
            400,
            "You cannot confirm this SetupIntent because it's missing a payment method.",
            code="setup_intent_unexpected_state",
        )
    pm = PaymentMethod._api_retrieve(obj.payment_method)
    if obj._explicit_pmt and pm.type not in obj.payment_method_types:
        raise _StripeError(
            400,
            f"The PaymentMethod provided ({pm.type}) is not allowed for this SetupIntent.",
            code="setup_intent_invalid_parameter",
            param="payment_method",
        )
    if obj.customer and pm.customer and pm.customer != obj.customer:
        raise _StripeError(
            400,
            "The payment method you provided has already been attached to a customer.",
            code="payment_method_unexpected_state",
            param="payment_method",
        )
    if pm._attaching_is_declined():
        code, decline_code, message = _decline_info(pm)
        obj.status = "requires_payment_method"
        obj.last_setup_error = {
            "code": code,
            "decline_code": decline_code,
            "message": message,
            "type": "card_error",
            "payment_method": pm._export(),
        }
        _emit("setup_intent.setup_failed", obj)
        raise _card_error(message, code, decline_code, setup_intent=obj._export(), payment_method=pm._export())
    if pm._requires_authentication():
        obj.status = "requires_action"
        obj.next_action = {
            "type": "use_stripe_sdk",
            "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": ""},
        }
        _emit("setup_intent.requires_action", obj)
        return
    obj.status = "succeeded"
    obj.next_action = None
    obj.last_setup_error = None
    if pm.type in ("sepa_debit", "us_bank_account"):
        obj.mandate = "mandate_" + random_id(24)
    if obj.customer and pm.customer is None:
        pm.customer = obj.customer
        _emit("payment_method.attached", pm)
    _emit("setup_intent.succeeded", obj)


def _si_api_confirm(
    cls,
    id,
    payment_method=None,
    payment_method_data=None,
    client_secret=None,
    use_stripe_sdk=None,
    mandate_data=None,
    return_url=None,
    payment_method_options=None,
    **kwargs,
):
    if kwargs:
        raise _unknown(kwargs)
    obj = cls._api_retrieve(id)
    if client_secret and client_secret != obj.client_secret:
        raise UserError(401, "Unauthorized")
    if payment_method_data is not None:
        obj.payment_method = PaymentMethod(**payment_method_data).id
    elif payment_method is not None:
        obj.payment_method = _resolve_pm(payment_method).id
    if obj.status == "requires_payment_method" and obj.payment_method:
        obj.status = "requires_confirmation"
    _si_do_confirm(obj)
    return obj


def _si_api_cancel(cls, id, cancellation_reason=None, client_secret=None, use_stripe_sdk=None, **kwargs):
    if kwargs:
        raise _unknown(kwargs)
    obj = cls._api_retrieve(id)
    if obj.status in ("succeeded", "canceled", "processing"):
        raise _StripeError(
            400,
            f"This SetupIntent's status is {obj.status}; it cannot be canceled.",
            code="setup_intent_unexpected_state",
        )
    obj.status = "canceled"
    obj.next_action = None
    obj.cancellation_reason = cancellation_reason
    _emit("setup_intent.canceled", obj)
    return obj


# ------------------------------------------------------------------------------------------------ misc patches
CUSTOMER_EXTRA = ("shipping", "tax_exempt", "invoice_prefix", "test_clock", "tax", "next_invoice_sequence", "validate")


def _customer_init(self, **data):
    extras = {k: data.pop(k) for k in list(data) if k in CUSTOMER_EXTRA}
    if data.get("payment_method"):
        data["payment_method"] = _resolve_pm(data["payment_method"]).id
    _orig["customer_init"](self, **data)
    self.shipping = extras.get("shipping")
    self.tax_exempt = extras.get("tax_exempt") or "none"
    self.invoice_prefix = extras.get("invoice_prefix")


def _so_init(self, id=None):
    _orig["so_init"](self, id)
    if not isinstance(self, List):
        self._account = _ctx_account.get()


def _so_api_retrieve(cls, id):
    obj = store.get(cls.object + ":" + str(id))
    if obj is None:
        raise _StripeError(404, f"No such {cls.object}: '{id}'", code="resource_missing", param="id")
    return obj


def _user_error_init(self, code, message=None, contents=None):
    if code == 400 and message and message.startswith("Unexpected ") and not contents:
        first = message[len("Unexpected ") :].split(", ")[0]
        message = f"Received unknown parameter: {first}"
        contents = {"code": "parameter_unknown", "param": first}
    elif code == 404 and message == "Not Found" and not contents:
        contents = {"code": "resource_missing"}
    _orig["user_error_init"](self, code, message, contents)


def _event_init(self, type, data):
    _orig["event_init"](self, type, data)
    account = getattr(data, "_account", None)
    if account:
        self.account = account
    self.request = {"id": _ctx_request_id.get(), "idempotency_key": _ctx_idem.get()}
    self.api_version = _ctx_version.get() or self.api_version
    self.pending_webhooks = sum(1 for wid in S.webhooks if _endpoint_wants(wid, self))


def _event_list(cls, url, type=None, created=None, limit=None, starting_after=None, ending_before=None, types=None):
    keep = _created_filter(created)
    wanted = set(types) if isinstance(types, list) else None
    objs = [
        e
        for e in _objects("event")
        if keep(e) and (type is None or e.type == type) and (wanted is None or e.type in wanted)
    ]
    return _list_of(url, objs, limit, starting_after, ending_before)


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


def _install() -> None:
    """Apply the patches to localstripe (child process only)."""
    # No pickling of the store to /tmp/localstripe.pickle: every server process keeps its own in-memory store.
    ls.Store.dump_to_disk = lambda self: None
    ls.Store.try_load_from_disk = lambda self: None
    store.clear()
    ls_webhooks._webhooks.clear()
    ls.schedule_webhook = _schedule_event
    ls_webhooks.schedule_webhook = _schedule_event

    _orig.update(
        so_init=StripeObject.__init__,
        user_error_init=UserError.__init__,
        event_init=Event.__init__,
        pi_init=PaymentIntent.__init__,
        pi_on_success=PaymentIntent._on_success,
        pi_export=PaymentIntent._export,
        refund_init=Refund.__init__,
        si_init=SetupIntent.__init__,
        customer_init=Customer.__init__,
        charge_api_create=Charge._api_create,
    )
    StripeObject.__init__ = _so_init
    StripeObject._api_retrieve = classmethod(_so_api_retrieve)
    UserError.__init__ = _user_error_init
    Event.__init__ = _event_init
    Event._api_list_all = classmethod(_event_list)

    PaymentMethod.__init__ = _pm_init
    PaymentMethod._try_get_canonical_test_article = classmethod(_pm_canonical)
    PaymentMethod._requires_authentication = _pm_requires_authentication
    PaymentMethod._attaching_is_declined = _pm_attaching_is_declined
    PaymentMethod._charging_is_declined = _pm_charging_is_declined
    PaymentMethod._api_list_all = classmethod(_pm_list)
    PaymentMethod._api_attach = classmethod(_pm_api_attach)

    Charge._is_async_payment_method = _charge_is_async
    Charge._set_auth_failure = _charge_set_auth_failure
    Charge._raise_failure = _charge_raise_failure
    Charge._initialize_charge = _charge_initialize
    Charge._api_list_all = classmethod(_charge_list)
    Charge._api_create = classmethod(_charge_api_create)
    Charge.payment_method_details = property(_charge_payment_method_details)
    Charge.refunds = property(_charge_refunds)
    Charge.amount_refunded = property(_charge_amount_refunded)
    Charge.amount_captured = property(lambda self: self.amount if self.captured and self.status == "succeeded" else 0)
    for name in (
        "transfer_data",
        "application_fee_amount",
        "application_fee",
        "on_behalf_of",
        "transfer_group",
        "transfer",
        "destination",
        "statement_descriptor_suffix",
        "outcome",
    ):
        setattr(Charge, name, None)

    PaymentIntent.__init__ = _pi_init
    PaymentIntent._api_create = classmethod(_pi_api_create)
    PaymentIntent._api_confirm = classmethod(_pi_api_confirm)
    PaymentIntent._api_cancel = classmethod(_pi_api_cancel)
    PaymentIntent._api_update = classmethod(_pi_api_update)
    PaymentIntent._api_list_all = classmethod(_pi_list)
    PaymentIntent._check_payment_method = _pi_check_payment_method
    PaymentIntent._confirm = _pi_confirm
    PaymentIntent._create_charge = _pi_create_charge
    PaymentIntent._on_success = _pi_on_success
    PaymentIntent._report_failure = _pi_report_failure
    PaymentIntent.last_payment_error = property(_pi_last_payment_error)
    PaymentIntent._export = _pi_export

    Refund.__init__ = _refund_init
    SetupIntent.__init__ = _si_init
    SetupIntent._api_create = classmethod(_si_api_create)
    SetupIntent._api_confirm = classmethod(_si_api_confirm)
    SetupIntent._api_cancel = classmethod(_si_api_cancel)
    Customer.__init__ = _customer_init

    Payout._api_create = classmethod(lambda cls, **data: HarnessPayout(**data))
    Payout._api_list_all = classmethod(_payout_list)


# =====================================================================================================================
# Child side: webhooks
# =====================================================================================================================


def _endpoint_wants(endpoint_id: str, event: Any) -> bool:
    hook = S.webhooks.get(endpoint_id)
    if hook is None:
        return False
    if hook["events"] is not None and event.type not in hook["events"] and "*" not in hook["events"]:
        return False
    account = getattr(event, "account", None)
    if hook["connect"] is True and not account:
        return False
    return not (hook["connect"] is False and account)


def _schedule_event(event: Any) -> None:
    if not S.webhooks:
        return
    payload = json.dumps(event._export(), indent=2, sort_keys=True).encode()
    for endpoint_id in list(S.webhooks):
        if _endpoint_wants(endpoint_id, event):
            _enqueue_delivery(endpoint_id, event.id, event.type, getattr(event, "account", None), payload)


def _enqueue_delivery(endpoint_id: str, event_id: str, event_type: str, account: str | None, payload: bytes) -> None:
    queue = S.webhook_queues.get(endpoint_id)
    if queue is None:
        queue = S.webhook_queues[endpoint_id] = asyncio.Queue()
        S.webhook_workers[endpoint_id] = asyncio.ensure_future(_webhook_worker(endpoint_id, queue))
    S.pending_deliveries += 1
    queue.put_nowait(
        {
            "event_id": event_id,
            "type": event_type,
            "account": account,
            "payload": payload,
            "not_before": time.monotonic() + S.webhook_delay,
            "attempt": 1,
        }
    )


async def _webhook_worker(endpoint_id: str, queue: asyncio.Queue) -> None:
    """Delivers an endpoint's events one at a time, in order; failed deliveries are retried in the background."""
    while True:
        item = await queue.get()
        try:
            delay = item["not_before"] - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await _attempt_delivery(endpoint_id, item)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a broken delivery must not stop the worker
            traceback.print_exc()
            S.pending_deliveries -= 1


async def _attempt_delivery(endpoint_id: str, item: dict) -> None:
    hook = S.webhooks.get(endpoint_id)
    if hook is None:
        S.pending_deliveries -= 1
        return
    timestamp = int(time.time())
    signature = hmac.new(hook["secret"].encode(), b"%d." % timestamp + item["payload"], hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Stripe/1.0 (+https://stripe.com)",
        "Stripe-Signature": f"t={timestamp},v1={signature}",
    }
    status, error = None, None
    started = time.monotonic()
    try:
        assert S.session is not None
        async with S.session.post(
            hook["url"], data=item["payload"], headers=headers, timeout=aiohttp.ClientTimeout(total=S.webhook_timeout)
        ) as resp:
            status = resp.status
            await resp.read()
    except (aiohttp.ClientError, TimeoutError) as e:
        error = f"{type(e).__name__}: {e}"
    S.deliveries.append(
        {
            "endpoint": endpoint_id,
            "url": hook["url"],
            "event_id": item["event_id"],
            "type": item["type"],
            "account": item["account"],
            "attempt": item["attempt"],
            "status": status,
            "error": error,
            "at": time.time(),
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
        }
    )
    if status is not None and 200 <= status < 300:
        S.pending_deliveries -= 1
        return
    if item["attempt"] > S.webhook_retries:
        S.pending_deliveries -= 1
        return

    async def retry() -> None:
        try:
            await asyncio.sleep(S.webhook_backoff * 2 ** (item["attempt"] - 1))
            await _attempt_delivery(endpoint_id, {**item, "attempt": item["attempt"] + 1})
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            S.pending_deliveries -= 1

    _spawn(retry())


def _spawn(coro: Any) -> asyncio.Task:
    task = asyncio.ensure_future(coro)
    S.background.add(task)
    task.add_done_callback(S.background.discard)
    return task


# =====================================================================================================================
# Child side: middlewares
# =====================================================================================================================


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/v1/") or request.path == "/v1"


def _json(data: Any, status: int = 200) -> web.Response:
    return ls_server.json_response(data, status=status)


def _api_key(request: web.Request) -> str | None:
    try:
        return ls_server.get_api_key(request)
    except (UnboundLocalError, ValueError, UnicodeDecodeError, IndexError):
        return None


def _error_response(status: int) -> web.Response:
    if status == 429:
        body = {
            "code": "rate_limit",
            "type": "invalid_request_error",
            "message": "Request rate limit exceeded. Learn more about rate limits here "
            "https://stripe.com/docs/rate-limits.",
            "doc_url": "https://stripe.com/docs/error-codes/rate-limit",
        }
    elif status >= 500:
        body = {"type": "api_error", "message": "An unknown error occurred (injected by the test server)."}
    else:
        body = {"type": "invalid_request_error", "message": f"Injected error {status}."}
    return _json({"error": body}, status=status)


@web.middleware
async def _log_mw(request: web.Request, handler: Any) -> web.StreamResponse:
    if not _is_api(request):
        return await handler(request)
    request_id = "req_" + random_id(14)
    request["request_id"] = request_id
    params = None
    if request.method == "POST":
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            params = await ls_server.get_post_data(request, remove_auth=False)
            params = dict(params) if params else {}
    entry = {
        "id": request_id,
        "method": request.method,
        "path": request.path,
        "query": dict(request.query),
        "params": params,
        "started": time.time(),
        "status": None,
        "duration_ms": None,
        "idempotency_key": request.headers.get("Idempotency-Key"),
        "stripe_account": request.headers.get("Stripe-Account"),
        "api_key": _api_key(request),
        "replayed": False,
    }
    S.request_log.append(entry)
    started = time.monotonic()
    response = await handler(request)
    entry["status"] = response.status
    entry["duration_ms"] = round((time.monotonic() - started) * 1000, 2)
    entry["replayed"] = response.headers.get("Idempotent-Replayed") == "true"
    response.headers["Request-Id"] = request_id
    return response


@web.middleware
async def _error_mw(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except UserError as e:
        return e.to_response()
    except TypeError as e:  # a parameter a localstripe function does not take
        match = re.search(r"unexpected keyword argument '([^']+)'", str(e))
        if match is None:
            traceback.print_exc()
            return _json(
                {"error": {"type": "api_error", "message": f"Internal error in the Stripe test server: {e}"}}, 500
            )
        return _unknown({match.group(1): None}).to_response()
    except web.HTTPException as e:
        if e.status in (404, 405) and (_is_api(request) or request.path.startswith("/_test/")):
            return _json(
                {
                    "error": {
                        "type": "invalid_request_error",
                        "message": f"Unrecognized request URL ({request.method}: {request.path}). "
                        "Please see https://stripe.com/docs or we can help at "
                        "https://support.stripe.com/.",
                    }
                },
                status=404,
            )
        raise
    except Exception:  # noqa: BLE001 - a harness bug must come back as Stripe's api_error, with a traceback
        traceback.print_exc()
        return _json(
            {
                "error": {
                    "type": "api_error",
                    "message": "Internal error in the Stripe test server: " + traceback.format_exc(limit=1).strip(),
                }
            },
            500,
        )


@web.middleware
async def _fault_mw(request: web.Request, handler: Any) -> web.StreamResponse:
    if not _is_api(request):
        return await handler(request)
    limited = False
    if S.rate_limit:
        now = time.monotonic()
        while S.rate_window and S.rate_window[0] <= now - 1.0:
            S.rate_window.popleft()
        if len(S.rate_window) >= S.rate_limit:
            limited = True
        else:
            S.rate_window.append(now)
    if S.latency > 0:
        await asyncio.sleep(S.latency)
    if limited:
        return _error_response(429)
    injected = None
    for rule in S.errors:
        if (
            rule["count"] > 0
            and (not rule.get("path_prefix") or request.path.startswith(rule["path_prefix"]))
            and (not rule.get("method") or rule["method"].upper() == request.method)
        ):
            rule["count"] -= 1
            injected = rule
            break
    S.errors = [r for r in S.errors if r["count"] > 0]
    if injected and not injected.get("after"):
        return _error_response(int(injected["status"]))
    response = await handler(request)
    if injected:
        return _error_response(int(injected["status"]))
    return response


SCOPED_COLLECTIONS = {
    "payment_intents": "payment_intent",
    "charges": "charge",
    "customers": "customer",
    "payment_methods": "payment_method",
    "payouts": "payout",
    "refunds": "refund",
    "setup_intents": "setup_intent",
    "transfers": "transfer",
}


@web.middleware
async def _context_mw(request: web.Request, handler: Any) -> web.StreamResponse:
    if not _is_api(request):
        return await handler(request)
    account = request.headers.get("Stripe-Account") or None
    api_key = _api_key(request)
    if account and api_key and _account_obj(account) is None:
        masked = api_key[:8] + "*" * 4 + api_key[-4:] if len(api_key) > 12 else api_key
        raise _StripeError(
            403,
            f"The provided key '{masked}' does not have access to account '{account}' (or that "
            "account does not exist). Application access may have been revoked.",
            code="account_invalid",
        )
    parts = request.path.strip("/").split("/")
    if (
        len(parts) >= 3
        and parts[1] in SCOPED_COLLECTIONS
        and request.method in ("GET", "POST", "DELETE")
        and parts[2] != "search"
    ):
        obj = store.get(SCOPED_COLLECTIONS[parts[1]] + ":" + parts[2])
        if obj is not None and getattr(obj, "_account", None) != account:
            raise _StripeError(
                404, f"No such {SCOPED_COLLECTIONS[parts[1]]}: '{parts[2]}'", code="resource_missing", param="id"
            )
    tokens = [
        (_ctx_account, _ctx_account.set(account)),
        (_ctx_idem, _ctx_idem.set(request.headers.get("Idempotency-Key"))),
        (_ctx_request_id, _ctx_request_id.set(request.get("request_id"))),
        (_ctx_version, _ctx_version.set(request.headers.get("Stripe-Version"))),
    ]
    try:
        return await handler(request)
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def _params_fingerprint(body: bytes) -> str:
    text = body.decode(errors="replace")
    try:
        canonical = json.dumps(json.loads(text), sort_keys=True) if text.strip() else ""
    except json.JSONDecodeError:
        canonical = json.dumps(sorted(urllib.parse.parse_qsl(text, keep_blank_values=True)))
    return hashlib.sha256(canonical.encode()).hexdigest()


@web.middleware
async def _idempotency_mw(request: web.Request, handler: Any) -> web.StreamResponse:
    key = request.headers.get("Idempotency-Key")
    if not _is_api(request) or request.method != "POST" or not key:
        return await handler(request)
    scope = (_api_key(request) or "", request.headers.get("Stripe-Account") or "", key)
    fp = _params_fingerprint(await request.read())
    saved = S.idem.get(scope)
    if saved is not None:
        if saved["endpoint"] != f"{request.method} {request.path}":
            raise _StripeError(
                400,
                "Keys for idempotent requests can only be used for the same endpoint they were "
                f"first used for ('{saved['endpoint']}' vs '{request.method} {request.path}'). "
                f"Try using a key other than '{key}' if you meant to execute a different "
                "request.",
                type="idempotency_error",
            )
        if saved["fingerprint"] != fp:
            raise _StripeError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                "execute a different request.",
                type="idempotency_error",
            )
        return web.Response(
            status=saved["status"],
            body=saved["body"],
            content_type="application/json",
            headers={"Idempotent-Replayed": "true", "Original-Request": saved["request_id"], "Idempotency-Key": key},
        )
    if scope in S.idem_inflight:
        raise _StripeError(
            409,
            "There is currently another in-progress request using this Idempotent Key (that "
            "probably means you submitted twice, and the other request is still going through): "
            f"{key}. Please try again later.",
            code="idempotency_key_in_use",
        )
    S.idem_inflight.add(scope)
    try:
        try:
            response = await handler(request)
        except UserError as e:
            response = e.to_response()
    finally:
        S.idem_inflight.discard(scope)
    # Stripe saves the result once the endpoint started executing (successes, declines, 5xx), not for requests
    # rejected up front (bad parameters, missing objects, auth, rate limits, conflicts).
    if response.status < 300 or response.status == 402 or response.status >= 500:
        S.idem[scope] = {
            "endpoint": f"{request.method} {request.path}",
            "fingerprint": fp,
            "status": response.status,
            "body": response.body,
            "request_id": request.get("request_id"),
        }
        while len(S.idem) > S.idem_max:
            S.idem.popitem(last=False)
    response.headers["Idempotency-Key"] = key
    return response


@web.middleware
async def _auth_mw(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path.startswith("/_test/"):
        return await handler(request)
    return await ls_server.auth_middleware(request, handler)


# =====================================================================================================================
# Child side: routes
# =====================================================================================================================


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


async def _own_account(request: web.Request) -> web.Response:
    account = request.headers.get("Stripe-Account")
    if account:
        return _json(_account_obj(account)._export())
    return _json(
        {
            "id": "acct_platform0000000",
            "object": "account",
            "type": "standard",
            "country": "US",
            "default_currency": "usd",
            "charges_enabled": True,
            "payouts_enabled": True,
            "details_submitted": True,
            "email": "platform@example.com",
            "livemode": False,
            "settings": {"dashboard": {"display_name": "Stripe test server platform"}},
        }
    )


async def _account_link(request: web.Request) -> web.Response:
    data = await ls_server.get_post_data(request) or {}
    account = data.get("account")
    if not account:
        raise _missing("account")
    _require_account(account, "account")
    if data.get("type") not in ("account_onboarding", "account_update"):
        raise _invalid("type")
    now = int(time.time())
    base = f"{request.scheme}://{request.host}"
    return _json(
        {
            "object": "account_link",
            "created": now,
            "expires_at": now + 300,
            "url": f"{base}/_test/onboarding/{account}?return_url="
            + urllib.parse.quote(str(data.get("return_url") or "")),
        }
    )


async def _login_link(request: web.Request) -> web.Response:
    account = request.match_info["id"]
    _require_account(account, "account")
    base = f"{request.scheme}://{request.host}"
    return _json({"object": "login_link", "created": int(time.time()), "url": f"{base}/_test/express/{account}"})


async def _onboarding(request: web.Request) -> web.Response:
    return_url = request.query.get("return_url")
    if return_url:
        raise web.HTTPFound(return_url)
    return web.Response(text="Stripe test server: onboarding complete.")


SEARCH_RE = re.compile(
    r"""\s*(?:(metadata)\[['"]([^'"]+)['"]\]|([a-z_]+))\s*(:|>=|<=|>|<)\s*"""
    r"""(?:['"]([^'"]*)['"]|(\S+))"""
)


def _search_handler(object_name: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        query = request.query.get("query")
        if not query:
            raise _missing("query")
        if re.search(r"\bOR\b", query):
            raise _invalid("query", "The Stripe test server only supports AND in search queries.")
        clauses = []
        for part in re.split(r"\s+AND\s+", query.strip()):
            m = SEARCH_RE.fullmatch(part)
            if not m:
                raise _invalid("query", f"Could not parse the search query near '{part}'.")
            clauses.append(m.groups())
        account = request.headers.get("Stripe-Account") or None

        def matches(obj: Any) -> bool:
            for is_meta, meta_key, field, op, quoted, bare in clauses:
                value = quoted if quoted is not None else bare
                actual = (obj.metadata or {}).get(meta_key) if is_meta else getattr(obj, field, None)
                if op == ":":
                    if str(actual if actual is not None else "") != value:
                        return False
                else:
                    try:
                        a, b = float(actual), float(value)
                    except (TypeError, ValueError):
                        return False
                    if not {">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[op]:
                        return False
            return True

        objs = [o for o in reversed(_objects(object_name)) if getattr(o, "_account", None) == account and matches(o)]
        limit = _to_int(request.query.get("limit", 10), "limit")
        return _json(
            {
                "object": "search_result",
                "data": [o._export() for o in objs[:limit]],
                "has_more": len(objs) > limit,
                "next_page": None,
                "url": request.path,
                "total_count": len(objs),
            }
        )

    return handler


# ------------------------------------------------------------------------------------------------ /_config, /_test
async def _config_webhook(request: web.Request) -> web.Response:
    endpoint_id = request.match_info["id"]
    data = await ls_server.get_post_data(request) or {}
    url, secret, events = data.get("url"), data.get("secret"), data.get("events")
    if not url or not secret:
        raise UserError(400, "Bad request: url and secret are required")
    host = urllib.parse.urlsplit(url).hostname or ""
    if not url.startswith(("http://", "https://")) or (host not in LOOPBACK_HOSTS and host != "::1"):
        raise UserError(400, "Bad request: webhook URLs must be http(s) on loopback (127.0.0.1 / localhost)")
    if isinstance(events, str):
        events = [events]
    if events is not None and not isinstance(events, list):
        raise UserError(400, "Bad request: events must be a list")
    connect = _to_bool(data.get("connect"), "connect")
    S.webhooks[endpoint_id] = {"url": url, "secret": secret, "events": events, "connect": connect}
    return web.Response()


async def _delete_webhook(request: web.Request) -> web.Response:
    S.webhooks.pop(request.match_info["id"], None)
    return web.Response()


async def _reset(request: web.Request) -> web.Response:
    data = await ls_server.get_post_data(request) or {}
    keep_webhooks = data.get("keep_webhooks", True) not in (False, "false")
    S.generation += 1
    store.clear()
    S.ledger.clear()
    S.refunds_by_charge.clear()
    S.pending_bank.clear()
    S.idem.clear()
    S.idem_inflight.clear()
    S.request_log.clear()
    S.deliveries.clear()
    S.latency, S.rate_limit, S.errors = 0.0, None, []
    S.rate_window.clear()
    if not keep_webhooks:
        S.webhooks.clear()
    return _json({"reset": True})


async def _config(request: web.Request) -> web.Response:
    data = await ls_server.get_post_data(request) or {}
    for key in ("webhook_delay", "webhook_backoff", "webhook_timeout"):
        if key in data:
            setattr(S, key, float(data[key]))
    if "webhook_retries" in data:
        S.webhook_retries = int(data["webhook_retries"])
    if "bank_settle_delay" in data:
        S.bank_settle_delay = None if data["bank_settle_delay"] is None else float(data["bank_settle_delay"])
    return _json(
        {
            k: getattr(S, k)
            for k in ("webhook_delay", "webhook_retries", "webhook_backoff", "webhook_timeout", "bank_settle_delay")
        }
    )


async def _faults(request: web.Request) -> web.Response:
    if request.method == "POST":
        data = await ls_server.get_post_data(request) or {}
        if "latency" in data:
            S.latency = max(0.0, float(data["latency"] or 0))
        if "rate_limit" in data:
            S.rate_limit = float(data["rate_limit"]) if data["rate_limit"] else None
            S.rate_window.clear()
        if "errors" in data:
            if data["errors"] is None:
                S.errors = []
            else:
                S.errors.extend(
                    {
                        "count": int(r.get("count", 1)),
                        "status": int(r.get("status", 500)),
                        "path_prefix": r.get("path_prefix"),
                        "method": r.get("method"),
                        "after": bool(r.get("after")),
                    }
                    for r in data["errors"]
                )
    return _json({"latency": S.latency, "rate_limit": S.rate_limit, "errors": S.errors})


async def _requests(request: web.Request) -> web.Response:
    if request.method == "DELETE":
        S.request_log.clear()
        return _json({"data": []})
    return _json({"data": list(S.request_log)})


async def _settle(request: web.Request) -> web.Response:
    data = await ls_server.get_post_data(request) or {}
    outcome = data.get("outcome")
    if outcome not in (None, "succeeded", "failed"):
        raise UserError(400, "outcome must be succeeded or failed")
    charge_ids = list(S.pending_bank)
    if data.get("payment_intent"):
        pi = PaymentIntent._api_retrieve(data["payment_intent"])
        charge_ids = [c for c in charge_ids if c in pi._charges]
    settled = [row for row in (_settle_charge(c, outcome) for c in charge_ids) if row]
    return _json({"settled": settled})


async def _test_payouts(request: web.Request) -> web.Response:
    data = await ls_server.get_post_data(request) or {}
    account, currency, failure_code = data.get("account"), data.get("currency"), data.get("failure_code")
    if account:
        _require_account(account, "account")
        accounts = [account]
    else:
        accounts = sorted(
            {a for (a, _c), amount in S.ledger.items() if a and amount > 0}
            | {p._account for p in _objects("payout") if p.status == "pending" and p._account}
        )
    payouts = []
    for acct in accounts:
        with _background_context(acct):
            for payout in [p for p in _objects("payout") if p._account == acct and p.status == "pending"]:
                payout._finish(failure_code)
                payouts.append(payout)
            for (a, cur), amount in sorted(S.ledger.items(), key=lambda kv: kv[0][1]):
                if a == acct and amount > 0 and (currency is None or cur == currency):
                    payout = HarnessPayout(amount=amount, currency=cur, _automatic=True)
                    payout._finish(failure_code)
                    payouts.append(payout)
    return _json({"payouts": [dict(p._export(), account=p._account) for p in payouts]})


async def _test_balances(request: web.Request) -> web.Response:
    out: dict[str, dict[str, int]] = {}
    for (account, currency), amount in S.ledger.items():
        out.setdefault(account or "platform", {})[currency] = amount
    return _json(out)


def _charge_row(charge: Any) -> dict:
    return {
        "id": charge.id,
        "payment_intent": charge.payment_intent,
        "status": charge.status,
        "amount": charge.amount,
        "currency": charge.currency,
        "amount_refunded": charge.amount_refunded,
        "failure_code": charge.failure_code,
        "metadata": dict(charge.metadata or {}),
        "payment_method": charge.payment_method,
        "transfer": getattr(charge, "transfer", None),
        "account": getattr(charge, "_account", None),
        "created": charge.created,
    }


def _metadata_filter(query: Any) -> dict[str, str]:
    return {k[len("metadata[") : -1]: v for k, v in query.items() if k.startswith("metadata[") and k.endswith("]")}


async def _test_payment_intents(request: web.Request) -> web.Response:
    wanted = _metadata_filter(request.query)
    rows = []
    for pi in _objects("payment_intent"):
        if any((pi.metadata or {}).get(k) != v for k, v in wanted.items()):
            continue
        charges = [store["charge:" + c] for c in pi._charges if "charge:" + c in store]
        rows.append(
            {
                "id": pi.id,
                "status": pi.status,
                "amount": pi.amount,
                "currency": pi.currency,
                "customer": pi.customer,
                "payment_method": pi.payment_method,
                "metadata": dict(pi.metadata or {}),
                "description": pi.description,
                "idempotency_key": pi._idempotency_key,
                "request_id": pi._request_id,
                "transfer_data": pi.transfer_data,
                "application_fee_amount": pi.application_fee_amount,
                "on_behalf_of": pi.on_behalf_of,
                "account": pi._account,
                "created": pi.created,
                "latest_charge": pi.latest_charge.id if pi.latest_charge else None,
                "amount_refunded": sum(c.amount_refunded for c in charges),
                "last_payment_error": (pi.last_payment_error or {}).get("code"),
                "charges": [_charge_row(c) for c in charges],
            }
        )
    return _json({"data": rows})


async def _test_charges(request: web.Request) -> web.Response:
    pi_id = request.query.get("payment_intent")
    key = request.query.get("metadata_key")
    wanted = _metadata_filter(request.query)
    rows = []
    for charge in _objects("charge"):
        pi = store.get("payment_intent:" + str(charge.payment_intent)) if charge.payment_intent else None
        metadata = (pi.metadata if pi is not None else charge.metadata) or {}
        if pi_id and charge.payment_intent != pi_id:
            continue
        if key and key not in metadata:
            continue
        if any(metadata.get(k) != v for k, v in wanted.items()):
            continue
        rows.append(_charge_row(charge))
    return _json({"data": rows})


async def _test_events(request: web.Request) -> web.Response:
    wanted = request.query.get("type")
    return _json({"data": [e._export() for e in _objects("event") if wanted is None or e.type == wanted]})


async def _test_deliveries(request: web.Request) -> web.Response:
    return _json({"data": S.deliveries, "pending": S.pending_deliveries})


async def _test_wait_webhooks(request: web.Request) -> web.Response:
    data = await ls_server.get_post_data(request) or {}
    deadline = time.monotonic() + min(float(data.get("timeout") or 10), 120)
    while S.pending_deliveries > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return _json({"idle": S.pending_deliveries == 0, "pending": S.pending_deliveries})


async def _test_resend(request: web.Request) -> web.Response:
    event = Event._api_retrieve(request.match_info["id"])
    _schedule_event(event)
    return _json({"resent": event.id})


async def _health(request: web.Request) -> web.Response:
    return _json({"ok": True, "pid": os.getpid()})


def _build_app() -> web.Application:
    app = web.Application(
        middlewares=[_log_mw, _error_mw, _fault_mw, _context_mw, _idempotency_mw, ls_server.error_middleware, _auth_mw]
    )
    extra = ls_server.api_extra
    mine: list[tuple[str, str, Any]] = [
        # Connect
        ("POST", "/v1/accounts", ls_server.api_create(Account, "/v1/accounts")),
        ("GET", "/v1/accounts", ls_server.api_list_all(Account, "/v1/accounts")),
        ("GET", "/v1/accounts/{id}", ls_server.api_retrieve(Account, "/v1/accounts/{id}")),
        ("POST", "/v1/accounts/{id}", ls_server.api_update(Account, "/v1/accounts/{id}")),
        ("DELETE", "/v1/accounts/{id}", ls_server.api_delete(Account, "/v1/accounts/{id}")),
        ("POST", "/v1/accounts/{id}/login_links", _login_link),
        ("GET", "/v1/account", _own_account),
        ("POST", "/v1/account_links", _account_link),
        ("POST", "/v1/transfers", ls_server.api_create(Transfer, "/v1/transfers")),
        ("GET", "/v1/transfers", ls_server.api_list_all(Transfer, "/v1/transfers")),
        ("GET", "/v1/transfers/{id}", ls_server.api_retrieve(Transfer, "/v1/transfers/{id}")),
        ("POST", "/v1/transfers/{id}/reversals", extra(Transfer._api_create_reversal, "")),
        ("GET", "/v1/balance", _balance),
        ("POST", "/v1/payouts/{id}/cancel", extra(HarnessPayout._api_cancel, "")),
        # localstripe's extra routes captured the original functions: re-route them to the patched ones
        ("POST", "/v1/payment_intents/{id}/confirm", extra(PaymentIntent._api_confirm, "")),
        ("POST", "/v1/payment_intents/{id}/cancel", extra(PaymentIntent._api_cancel, "")),
        ("POST", "/v1/payment_methods/{id}/attach", extra(PaymentMethod._api_attach, "")),
        ("POST", "/v1/setup_intents/{id}/confirm", extra(SetupIntent._api_confirm, "")),
        ("POST", "/v1/setup_intents/{id}/cancel", extra(SetupIntent._api_cancel, "")),
        ("GET", "/v1/customers/{id}/payment_methods", extra(_customer_payment_methods, "")),
        ("GET", "/v1/payment_intents/search", _search_handler("payment_intent")),
        ("GET", "/v1/charges/search", _search_handler("charge")),
        ("GET", "/v1/customers/search", _search_handler("customer")),
        # configuration and test controls (not Stripe API)
        ("POST", "/_config/webhooks/{id}", _config_webhook),
        ("DELETE", "/_config/webhooks/{id}", _delete_webhook),
        ("DELETE", "/_config/data", _reset),
        ("POST", "/_test/reset", _reset),
        ("POST", "/_test/config", _config),
        ("GET", "/_test/faults", _faults),
        ("POST", "/_test/faults", _faults),
        ("GET", "/_test/requests", _requests),
        ("DELETE", "/_test/requests", _requests),
        ("POST", "/_test/settle", _settle),
        ("POST", "/_test/payouts", _test_payouts),
        ("GET", "/_test/balances", _test_balances),
        ("GET", "/_test/payment_intents", _test_payment_intents),
        ("GET", "/_test/charges", _test_charges),
        ("GET", "/_test/events", _test_events),
        ("GET", "/_test/webhooks/deliveries", _test_deliveries),
        ("POST", "/_test/webhooks/wait", _test_wait_webhooks),
        ("POST", "/_test/events/{id}/resend", _test_resend),
        ("GET", "/_test/health", _health),
        ("GET", "/_test/onboarding/{id}", _onboarding),
        ("GET", "/_test/express/{id}", _onboarding),
    ]
    taken = set()
    for method, path, handler in mine:
        app.router.add_route(method, path, handler)
        taken.add((method, path))
    for route in ls_server.app.router.routes():
        path = route.resource.canonical if route.resource is not None else None
        if path is None or (route.method, path) in taken:
            continue
        app.router.add_route(route.method, path, route.handler)
    return app


# =====================================================================================================================
# Child side: main
# =====================================================================================================================


async def _serve(port: int, parent_pid: int, config: dict) -> None:
    S.webhook_delay = float(config.get("webhook_delay", 0.05))
    S.webhook_retries = int(config.get("webhook_retries", 3))
    S.webhook_backoff = float(config.get("webhook_backoff", 0.25))
    S.webhook_timeout = float(config.get("webhook_timeout", 5.0))
    S.bank_settle_delay = config.get("bank_settle_delay")
    S.request_log = deque(maxlen=int(config.get("request_log_size") or 100_000))
    max_lifetime = config.get("max_lifetime")

    app = _build_app()
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, port))
    site = web.SockSite(runner, sock, shutdown_timeout=2.0)
    await site.start()
    S.session = aiohttp.ClientSession()

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def watch_stdin() -> None:  # EOF when the parent closes the pipe or dies
        with contextlib.suppress(OSError, ValueError):
            while sys.stdin.buffer.read(4096):
                pass
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()

    async def watch_parent() -> None:
        started = time.monotonic()
        while not stop.is_set():
            if os.getppid() != parent_pid or (max_lifetime and time.monotonic() - started > float(max_lifetime)):
                stop.set()
            await asyncio.sleep(0.5)

    watcher = asyncio.ensure_future(watch_parent())
    sys.stdout.write(f"READY {sock.getsockname()[1]}\n")
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # nobody reads our stdout any more
    os.close(devnull)

    await stop.wait()
    watcher.cancel()
    for task in list(S.webhook_workers.values()) + list(S.background):
        task.cancel()
    await asyncio.gather(watcher, *S.webhook_workers.values(), *S.background, return_exceptions=True)
    await S.session.close()
    await runner.cleanup()


def _main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Stripe-compatible test server (localstripe + extensions)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--parent-pid", type=int, default=os.getppid())
    parser.add_argument("--config", default="{}")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", DeprecationWarning)
    _install()
    asyncio.run(_serve(args.port, args.parent_pid, json.loads(args.config)))


if __name__ == "__main__":
    _main(sys.argv[1:])
