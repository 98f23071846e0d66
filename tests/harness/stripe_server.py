"""A Stripe-compatible HTTP test server: localstripe plus the Stripe behaviour the product relies on.

Parent side (imported by tests and benchmarks): `StripeTestServer` starts the server in a *child process* that
binds 127.0.0.1 on a free port, and talks to it over HTTP. Each instance has its own process, so its own
in-memory store: localstripe keeps its store, its webhook registry and its aiohttp `app` as module globals, and a
separate process is the only way two instances (or two test sessions) cannot see each other's state.
The child exits when `stop()` is called, when the parent process dies (its stdin pipe closes) or after
`max_lifetime` seconds.

Child side (`python stripe_server.py --port 0 --config '{...}'`, or `python -m tests.harness.stripe_child ...`): the
package `tests/harness/stripe_child/`, one module per resource family, patches localstripe's resources in that
process only, behind a few aiohttp middlewares (request log, fault injection, Idempotency-Key, Stripe-Account) and
extra routes (Connect, balances and payouts, refunds, disputes, search, `/_test/*` controls). See
docs/stripe-test-server.md.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"
_CARD_TABLES = ("AUTH_REQUIRED", "CARD_DECLINES", "CARD_TEST_PAYMENT_METHODS")


def __getattr__(name: str) -> Any:
    """The test card tables live with the child (stripe_child/cards.py); they are readable from here too."""
    if name in _CARD_TABLES:
        from tests.harness.stripe_child import cards

        return getattr(cards, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        connect_onboarding: bool = False,
        payout_schedule: dict[str, Any] | None = None,
        platform_delay_days: int = 0,
        payout_transit_days: int = 1,
        dispute_fee: int = 1500,
    ) -> None:
        """`connect_onboarding`: new connected accounts start not onboarded (Account Links complete them); by
        default they are enabled at once. `payout_schedule`: new accounts' `settings.payouts.schedule` (default
        `{"interval": "manual", "delay_days": 0}`: funds available at once, no automatic payouts). See
        docs/stripe-test-server.md."""
        self._port = port
        self._config = {
            "webhook_delay": webhook_delay,
            "webhook_retries": webhook_retries,
            "webhook_backoff": webhook_backoff,
            "webhook_timeout": webhook_timeout,
            "bank_settle_delay": bank_settle_delay,
            "request_log_size": request_log_size,
            "max_lifetime": max_lifetime,
            "connect_onboarding": connect_onboarding,
            "payout_schedule": payout_schedule or {"interval": "manual", "delay_days": 0},
            "platform_delay_days": platform_delay_days,
            "payout_transit_days": payout_transit_days,
            "dispute_fee": dispute_fee,
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
        """Change webhook_delay, webhook_retries, webhook_backoff, webhook_timeout, bank_settle_delay,
        connect_onboarding, payout_schedule, platform_delay_days, payout_transit_days or dispute_fee (kept across
        `reset()`; `restore_settings()` puts back the constructor's)."""
        return self._call("POST", "/_test/config", settings)

    def restore_settings(self) -> dict:
        """The settings this server was started with (for a fixture after a test that changed them)."""
        settings = {k: v for k, v in self._config.items() if k not in ("request_log_size", "max_lifetime")}
        return self.configure(**settings)

    # ---------------------------------------------------------------------------------------------- test clock
    def clock(self) -> int:
        """The server's "now" (Unix seconds): the test clock when set, else real time."""
        return self._call("GET", "/_test/clock")["now"]

    def set_clock(self, when: int | float | datetime.date | datetime.datetime) -> int:
        """Freeze the server's clock at `when` (a date means its midnight UTC; a naive datetime is UTC). Later
        calls move it forward only, doing in order what falls due on the way (automatic payouts at each business
        day's midnight, payouts going in transit and arriving). `reset()` returns to real time."""
        return self._call("POST", "/_test/clock", {"now": _timestamp(when)})["now"]

    def advance_clock(self, *, days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0) -> int:
        """Move the frozen clock forward (see `set_clock`)."""
        delta = int(days * 86400 + hours * 3600 + minutes * 60 + seconds)
        return self._call("POST", "/_test/clock", {"advance": delta})["now"]

    # ---------------------------------------------------------------------------------------------- Connect
    def onboard(self, account: str, state: str = "complete", *, bank_account: str | None = None) -> dict:
        """Move a connected account to an onboarding state, as the hosted onboarding page does: `not_started`,
        `pending_verification`, `complete`, `restricted_soon` or `restricted` (`account.updated` follows).
        `bank_account`: the account number of its new bank account (Stripe's test numbers decide payouts)."""
        return self._call(
            "POST", f"/_test/accounts/{account}/onboarding", {"state": state, "bank_account": bank_account}
        )

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

    def authenticate(self, intent: str, *, succeed: bool = True) -> dict:
        """Complete (or fail) the 3-D Secure challenge of a PaymentIntent or SetupIntent in `requires_action`, as
        the page its `next_action` points to does. Returns the intent."""
        return self._call("POST", f"/_test/3ds/{intent}", {"outcome": "succeeded" if succeed else "failed"})

    def fail_payout(self, payout: str, failure_code: str = "could_not_process") -> dict:
        """Fail a pending, in-transit or paid payout (Stripe may fail one days after `paid`): funds come back."""
        return self._call("POST", f"/_test/payouts/{payout}/fail", {"failure_code": failure_code})

    def balances(self, *, detail: bool = False) -> dict[str, dict[str, Any]]:
        """Available balance per account ("platform" for the platform) and currency; `detail=True`:
        `{"available": n, "pending": n}` for each."""
        return self._call("GET", "/_test/balances" + ("?detail=1" if detail else ""))

    def balance_transactions(self, account: str | None = None) -> list[dict]:
        """Every balance transaction (oldest first) of `account` ("platform" for the platform; None: all), each
        with `account` and `payout` (the automatic payout that carried it)."""
        query = "?" + urllib.parse.urlencode({"account": account}) if account else ""
        return self._call("GET", "/_test/balance_transactions" + query)["data"]

    def settle_refunds(
        self, refund: str | None = None, *, outcome: str | None = None, failure_reason: str | None = None
    ) -> list[dict]:
        """Settle pending refunds (bank debits; card 4000000000005126's fail): `succeeded`, or `failed` when the
        test card says so or `outcome="failed"`. Returns one row per settled refund."""
        return self._call(
            "POST",
            "/_test/refunds/settle",
            {"refund": refund, "outcome": outcome, "failure_reason": failure_reason},
        )["settled"]

    def open_dispute(
        self, charge: str, *, reason: str = "fraudulent", amount: int | None = None, inquiry: bool = False
    ) -> dict:
        """Open a dispute on any succeeded charge (funds withdrawn unless `inquiry`)."""
        return self._call(
            "POST", "/_test/disputes", {"charge": charge, "reason": reason, "amount": amount, "inquiry": inquiry}
        )

    def decide_dispute(self, dispute: str, status: str) -> dict:
        """Close a dispute as `won` (funds reinstated), `lost`, or `warning_closed` (an inquiry)."""
        return self._call("POST", f"/_test/disputes/{dispute}", {"status": status})

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


def _timestamp(when: int | float | datetime.date | datetime.datetime) -> int:
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        return int(when.timestamp())
    if isinstance(when, datetime.date):
        return int(datetime.datetime(when.year, when.month, when.day, tzinfo=datetime.UTC).timestamp())
    return int(when)


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


if __name__ == "__main__":  # the child process: `python stripe_server.py --port 0 --config '{...}'`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from tests.harness.stripe_child.app import main

    main(sys.argv[1:])
