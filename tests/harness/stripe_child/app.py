"""The aiohttp application: localstripe patches (`_install()`), middlewares, routes, `/_test/*` controls, `main()`."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
import urllib.parse
import warnings
from collections import deque
from typing import Any

import aiohttp
from aiohttp import web
from localstripe import resources as ls
from localstripe import webhooks as ls_webhooks
from localstripe.errors import UserError
from localstripe.resources import (
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
    random_id,
    store,
)

from .authentication import _auth_page, _auth_submit, authenticate
from .connect import (
    Account,
    Transfer,
    _account_link,
    _capabilities,
    _capability,
    _express_dashboard,
    _login_link,
    _onboarding_page,
    _onboarding_submit,
    _own_account,
    _test_onboarding,
)
from .core import (
    HOST,
    LOOPBACK_HOSTS,
    S,
    _account_obj,
    _created_filter,
    _ctx_account,
    _ctx_idem,
    _ctx_request_id,
    _ctx_version,
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
from .disputes import Dispute, _test_decide_dispute, _test_open_dispute
from .payments import (
    _charge_amount_refunded,
    _charge_initialize,
    _charge_is_async,
    _charge_list,
    _charge_payment_method_details,
    _charge_raise_failure,
    _charge_refunds,
    _charge_set_auth_failure,
    _charge_trigger_payment,
    _customer_payment_methods,
    _orig,
    _pi_api_cancel,
    _pi_api_confirm,
    _pi_api_create,
    _pi_api_update,
    _pi_check_payment_method,
    _pi_confirm,
    _pi_create_charge,
    _pi_export,
    _pi_init,
    _pi_last_payment_error,
    _pi_list,
    _pi_on_success,
    _pi_report_failure,
    _pm_api_attach,
    _pm_attaching_is_declined,
    _pm_canonical,
    _pm_charging_is_declined,
    _pm_init,
    _pm_list,
    _pm_requires_authentication,
    _resolve_pm,
    _settle_charge,
)
from .payouts import (
    HarnessPayout,
    _balance,
    _balance_transaction,
    _balance_transactions,
    _payout_list,
    _test_balance_transactions,
    _test_balances,
    _test_clock,
    _test_payout_fail,
    _test_payouts,
)
from .refunds import _refund_init, _refund_list, _refund_update, settle_refund
from .setup_intents import (
    Mandate,
    _si_api_cancel,
    _si_api_confirm,
    _si_api_create,
    _si_init,
    _si_verify_microdeposits,
)
from .webhooks import _endpoint_wants, _schedule_event

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
        self.created = _now()  # the test clock, when it is set


def _class_for_id(cls, id):
    """The class of an id's prefix, for `expand` (localstripe only looks at direct subclasses of StripeObject)."""
    best = None
    stack = list(StripeObject.__subclasses__())
    while stack:
        klass = stack.pop()
        stack.extend(klass.__subclasses__())
        prefix = getattr(klass, "_id_prefix", None)
        if prefix and str(id).startswith(prefix) and (best is None or len(prefix) > len(best._id_prefix)):
            best = klass
    return best


def _so_export(self, expand=None):
    """localstripe's export, with Stripe's `expand`: dotted paths through lists and nested objects, up to 4
    levels; a path that does not apply to an object (a polymorphic `source`, say) is left alone, like Stripe."""
    if expand is None:
        expand = []
    if not isinstance(expand, list) or not all(isinstance(e, str) for e in expand):
        raise _invalid("expand")
    if any(len(path.split(".")) > 4 for path in expand):
        raise _StripeError(400, "You cannot expand more than 4 levels of a property.", param="expand")
    out = _orig["so_export"](self, expand=None)
    for path in expand:
        _expand(out, path.split("."))
    return out


def _expand(obj: Any, parts: list[str]) -> None:
    if isinstance(obj, list):
        for item in obj:
            _expand(item, parts)
        return
    if not isinstance(obj, dict) or parts[0] not in obj:
        return
    value = obj[parts[0]]
    if isinstance(value, str):
        klass = _class_for_id(StripeObject, value)
        if klass is None:
            return
        value = obj[parts[0]] = klass._api_retrieve(value)._export()
    if len(parts) > 1 and value is not None:
        _expand(value, parts[1:])


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
    # Events of a connected account carry `account` (Connect webhooks); an Account's own events belong to it.
    account = getattr(data, "_event_account", None) or getattr(data, "_account", None)
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
        so_export=StripeObject._export,
        user_error_init=UserError.__init__,
        event_init=Event.__init__,
        pi_init=PaymentIntent.__init__,
        pi_on_success=PaymentIntent._on_success,
        pi_export=_so_export,
        si_init=SetupIntent.__init__,
        customer_init=Customer.__init__,
    )
    StripeObject.__init__ = _so_init
    StripeObject._api_retrieve = classmethod(_so_api_retrieve)
    StripeObject._get_class_for_id = classmethod(_class_for_id)
    StripeObject._export = _so_export
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
    Charge._trigger_payment = _charge_trigger_payment
    Charge.disputed = False
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
    Refund._api_list_all = classmethod(_refund_list)
    Refund._api_update = classmethod(_refund_update)
    SetupIntent.__init__ = _si_init
    SetupIntent._api_create = classmethod(_si_api_create)
    SetupIntent._api_confirm = classmethod(_si_api_confirm)
    SetupIntent._api_cancel = classmethod(_si_api_cancel)
    Customer.__init__ = _customer_init

    Payout._api_create = classmethod(lambda cls, **data: HarnessPayout._api_create(**data))
    Payout._api_list_all = classmethod(_payout_list)


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/v1/") or request.path == "/v1"


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
    "balance_transactions": "balance_transaction",
    "disputes": "dispute",
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
    S.txns.clear()
    S.clock = None
    S.account_links.clear()
    S.pending_refunds.clear()
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
    _configure(data)
    return _json({k: getattr(S, k) for k in CONFIG_KEYS})


CONFIG_KEYS = (
    "webhook_delay",
    "webhook_retries",
    "webhook_backoff",
    "webhook_timeout",
    "bank_settle_delay",
    "connect_onboarding",
    "payout_schedule",
    "platform_delay_days",
    "payout_transit_days",
    "dispute_fee",
)


def _configure(data: dict) -> None:
    """The Connect and money settings (the webhook ones are read above and in _serve)."""
    if data.get("connect_onboarding") is not None:
        S.connect_onboarding = bool(_to_bool(data["connect_onboarding"], "connect_onboarding"))
    if data.get("payout_schedule") is not None:
        schedule = data["payout_schedule"]
        if not isinstance(schedule, dict) or schedule.get("interval", "manual") not in (
            "manual",
            "daily",
            "weekly",
            "monthly",
        ):
            raise _invalid("payout_schedule")
        S.payout_schedule = {"interval": "manual", "delay_days": 0, **schedule}
    for key in ("platform_delay_days", "payout_transit_days", "dispute_fee"):
        if data.get(key) is not None:
            value = _to_int(data[key], key)
            if value < 0:
                raise _invalid(key)
            setattr(S, key, value)


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


async def _test_settle_refunds(request: web.Request) -> web.Response:
    """POST /_test/refunds/settle {"refund": id?, "outcome": "succeeded"|"failed"?, "failure_reason": ...?}"""
    data = await ls_server.get_post_data(request) or {}
    outcome = data.get("outcome")
    if outcome not in (None, "succeeded", "failed"):
        raise _invalid("outcome", "outcome must be succeeded or failed")
    ids = list(S.pending_refunds)
    if data.get("refund"):
        ids = [r for r in ids if r == data["refund"]]
    rows = [settle_refund(store["refund:" + r], outcome, data.get("failure_reason")) for r in ids]
    return _json({"settled": [r for r in rows if r]})


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
        if getattr(charge, "_is_payment", False):
            continue
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


def _si_verify_microdeposits_route(**data):
    return _si_verify_microdeposits(SetupIntent, **data)


def _ls_authenticate(id, client_secret=None, success=False, **kwargs):
    """localstripe's own 3DS endpoint (its Stripe.js uses it), on the same path as the local page."""
    if kwargs:
        raise _unknown(kwargs)
    intent = PaymentIntent._api_retrieve(id)
    if client_secret != intent.client_secret:
        raise UserError(401, "Unauthorized")
    return authenticate(intent, bool(_to_bool(success, "success")))


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
        ("GET", "/v1/accounts/{id}/capabilities", _capabilities),
        ("GET", "/v1/accounts/{id}/capabilities/{capability}", _capability),
        ("GET", "/v1/account", _own_account),
        ("POST", "/v1/account_links", _account_link),
        ("POST", "/v1/transfers", ls_server.api_create(Transfer, "/v1/transfers")),
        ("GET", "/v1/transfers", ls_server.api_list_all(Transfer, "/v1/transfers")),
        ("GET", "/v1/transfers/{id}", ls_server.api_retrieve(Transfer, "/v1/transfers/{id}")),
        ("POST", "/v1/transfers/{id}/reversals", extra(Transfer._api_create_reversal, "")),
        ("GET", "/v1/transfers/{id}/reversals", extra(Transfer._api_list_reversals, "")),
        # balances and payouts
        ("GET", "/v1/balance", _balance),
        ("GET", "/v1/balance_transactions", _balance_transactions),
        ("GET", "/v1/balance_transactions/{id}", _balance_transaction),
        ("GET", "/v1/balance/history", _balance_transactions),
        ("GET", "/v1/balance/history/{id}", _balance_transaction),
        # disputes
        ("GET", "/v1/disputes", ls_server.api_list_all(Dispute, "/v1/disputes")),
        ("GET", "/v1/disputes/{id}", ls_server.api_retrieve(Dispute, "/v1/disputes/{id}")),
        ("POST", "/v1/disputes/{id}", ls_server.api_update(Dispute, "/v1/disputes/{id}")),
        ("POST", "/v1/disputes/{id}/close", extra(Dispute._api_close, "")),
        ("POST", "/v1/payouts/{id}/cancel", extra(HarnessPayout._api_cancel, "")),
        # localstripe's extra routes captured the original functions: re-route them to the patched ones
        ("POST", "/v1/payment_intents/{id}/confirm", extra(PaymentIntent._api_confirm, "")),
        ("POST", "/v1/payment_intents/{id}/cancel", extra(PaymentIntent._api_cancel, "")),
        ("POST", "/v1/payment_methods/{id}/attach", extra(PaymentMethod._api_attach, "")),
        ("POST", "/v1/setup_intents/{id}/confirm", extra(SetupIntent._api_confirm, "")),
        ("POST", "/v1/setup_intents/{id}/cancel", extra(SetupIntent._api_cancel, "")),
        ("POST", "/v1/setup_intents/{id}/verify_microdeposits", extra(_si_verify_microdeposits_route, "")),
        ("POST", "/v1/payment_intents/{id}/_authenticate", extra(_ls_authenticate, "")),
        ("GET", "/v1/mandates/{id}", ls_server.api_retrieve(Mandate, "/v1/mandates/{id}")),
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
        ("POST", "/_test/payouts/{id}/fail", _test_payout_fail),
        ("GET", "/_test/balances", _test_balances),
        ("GET", "/_test/balance_transactions", _test_balance_transactions),
        ("GET", "/_test/clock", _test_clock),
        ("POST", "/_test/clock", _test_clock),
        ("POST", "/_test/refunds/settle", _test_settle_refunds),
        ("POST", "/_test/disputes", _test_open_dispute),
        ("POST", "/_test/disputes/{id}", _test_decide_dispute),
        ("POST", "/_test/accounts/{id}/onboarding", _test_onboarding),
        ("GET", "/_test/payment_intents", _test_payment_intents),
        ("GET", "/_test/charges", _test_charges),
        ("GET", "/_test/events", _test_events),
        ("GET", "/_test/webhooks/deliveries", _test_deliveries),
        ("POST", "/_test/webhooks/wait", _test_wait_webhooks),
        ("POST", "/_test/events/{id}/resend", _test_resend),
        ("GET", "/_test/health", _health),
        ("GET", "/_test/connect/onboarding/{token}", _onboarding_page),
        ("POST", "/_test/connect/onboarding/{token}", _onboarding_submit),
        ("GET", "/_test/express/{id}", _express_dashboard),
        ("GET", "/_test/3ds/{id}", _auth_page),
        ("POST", "/_test/3ds/{id}", _auth_submit),
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


async def _serve(port: int, parent_pid: int, config: dict) -> None:
    S.webhook_delay = float(config.get("webhook_delay", 0.05))
    S.webhook_retries = int(config.get("webhook_retries", 3))
    S.webhook_backoff = float(config.get("webhook_backoff", 0.25))
    S.webhook_timeout = float(config.get("webhook_timeout", 5.0))
    S.bank_settle_delay = config.get("bank_settle_delay")
    S.request_log = deque(maxlen=int(config.get("request_log_size") or 100_000))
    _configure(config)
    max_lifetime = config.get("max_lifetime")

    app = _build_app()
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, port))
    S.base_url = f"http://{HOST}:{sock.getsockname()[1]}"
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


def main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Stripe-compatible test server (localstripe + extensions)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--parent-pid", type=int, default=os.getppid())
    parser.add_argument("--config", default="{}")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", DeprecationWarning)
    _install()
    asyncio.run(_serve(args.port, args.parent_pid, json.loads(args.config)))
