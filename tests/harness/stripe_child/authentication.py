"""3-D Secure: the authentication a PaymentIntent or SetupIntent in `requires_action` waits for.

Stripe's 3DS test cards (`pm_card_authenticationRequired` 4000002760003184, `pm_card_threeDSecureRequired`
4000000000003063, `pm_card_threeDSecure2Required` 4000000000003220, `pm_card_authenticationRequiredOnSetup`
4000002500003155, 4000008260003178 which then declines for insufficient funds): confirmed off-session (or with
`error_on_requires_action`), the attempt fails with 402 `authentication_required` and the PaymentIntent is back in
`requires_payment_method`; confirmed on-session it goes to `requires_action` with `next_action`
`redirect_to_url` (`url`, `return_url`) when a `return_url` was given, else `use_stripe_sdk`
(`three_d_secure_redirect`, `stripe_js` = the same URL). That URL is a local page (`/_test/3ds/{id}`) with
**Complete authentication** and **Fail authentication**; it redirects to `return_url` with Stripe's query
(`payment_intent`, `payment_intent_client_secret`, `redirect_status`, or the `setup_intent` ones). Completed: the
charge is attempted (`charge.succeeded`/`payment_intent.succeeded`, or the card's decline); failed:
`requires_payment_method`, `last_payment_error.code` `payment_intent_authentication_failure`,
`payment_intent.payment_failed` (SetupIntents: `setup_intent_authentication_failure`, `setup_intent.setup_failed`).
`POST /_test/3ds/{id}` with JSON `{"outcome": "succeeded"|"failed"}` does the same without a browser.
"""

from __future__ import annotations

import html
import urllib.parse
from typing import Any

from aiohttp import web
from localstripe.resources import random_id, store

from .core import S, _background_context, _json, _StripeError
from .webhooks import _emit


def auth_url(intent: Any) -> str:
    query = urllib.parse.urlencode({"client_secret": intent.client_secret})
    return f"{S.base_url}/_test/3ds/{intent.id}?{query}"


def next_action(intent: Any, return_url: str | None) -> dict:
    """Stripe's `next_action` for a 3-D Secure challenge."""
    url = auth_url(intent)
    if return_url:
        return {"type": "redirect_to_url", "redirect_to_url": {"url": url, "return_url": return_url}}
    return {
        "type": "use_stripe_sdk",
        "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": url, "source": "src_" + random_id(24)},
    }


def _intent(intent_id: str) -> Any:
    kind = "setup_intent" if intent_id.startswith("seti_") else "payment_intent"
    obj = store.get(f"{kind}:{intent_id}")
    if obj is None:
        raise _StripeError(404, f"No such {kind}: '{intent_id}'", code="resource_missing", param="id")
    return obj


def authenticate(intent: Any, success: bool) -> Any:
    """Finish the challenge of a PaymentIntent or SetupIntent in `requires_action`."""
    if intent.status != "requires_action":
        what = "SetupIntent" if intent.object == "setup_intent" else "PaymentIntent"
        raise _StripeError(
            400,
            f"This {what}'s status is {intent.status}; there is no authentication to complete.",
            code=f"{intent.object}_unexpected_state",
        )
    with _background_context(getattr(intent, "_account", None)):
        if intent.object == "setup_intent":
            from .setup_intents import _si_authenticated

            _si_authenticated(intent, success)
        else:
            _pi_authenticated(intent, success)
    return intent


def _pi_authenticated(pi: Any, success: bool) -> None:
    pi.next_action = None
    if success:
        pi._create_charge(on_failure_now=pi._report_async_failure)
        return
    pi._authentication_failed = True
    pi._failed_payment_method = pi.payment_method
    pi.payment_method = None
    _emit("payment_intent.payment_failed", pi)


def _return_url(intent: Any) -> str | None:
    if intent.object == "setup_intent":
        return intent.return_url
    return getattr(intent, "_auth_return_url", None)


def _page(title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        content_type="text/html",
        text=(
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:32rem;margin:2rem auto}"
            "button{display:block;margin:.5rem 0;padding:.6rem 1rem;font-size:1rem;width:100%}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
        ),
    )


async def _auth_page(request: web.Request) -> web.Response:
    intent = _intent(request.match_info["id"])
    if request.query.get("client_secret") != intent.client_secret:
        return _page("3-D Secure", "<p>This authentication link is not valid.</p>", status=403)
    if intent.status != "requires_action":
        return _page("3-D Secure", f"<p>Nothing to authenticate: the status is {html.escape(intent.status)}.</p>")
    amount = f"{intent.amount / 100:.2f} {intent.currency.upper()}" if intent.object == "payment_intent" else ""
    secret = f"<input type='hidden' name='client_secret' value='{html.escape(intent.client_secret)}'>"
    forms = "".join(
        f"<form method='post'>{secret}<input type='hidden' name='outcome' value='{outcome}'>"
        f"<button type='submit'>{label}</button></form>"
        for outcome, label in (("succeeded", "Complete authentication"), ("failed", "Fail authentication"))
    )
    body = f"<p>Stripe test server: 3-D Secure 2 challenge for <code>{intent.id}</code> {amount}.</p>{forms}"
    return _page("3-D Secure authentication", body)


async def _auth_submit(request: web.Request) -> web.Response:
    intent = _intent(request.match_info["id"])
    if request.content_type == "application/json":  # the test control (server.authenticate)
        data = await request.json()
        outcome = data.get("outcome") or "succeeded"
        if outcome not in ("succeeded", "failed"):
            raise _StripeError(400, "outcome must be succeeded or failed", param="outcome")
        authenticate(intent, outcome == "succeeded")
        return _json(intent._export())
    form = await request.post()
    if form.get("client_secret") != intent.client_secret:
        return _page("3-D Secure", "<p>This authentication link is not valid.</p>", status=403)
    if intent.status != "requires_action":
        return _page("3-D Secure", "<p>This authentication was already completed.</p>", status=400)
    succeeded = form.get("outcome") == "succeeded"
    authenticate(intent, succeeded)
    return_url = _return_url(intent)
    if not return_url:
        return _page("3-D Secure", f"<p>Authentication {'completed' if succeeded else 'failed'}.</p>")
    kind = intent.object
    query = urllib.parse.urlencode(
        {
            kind: intent.id,
            f"{kind}_client_secret": intent.client_secret,
            "redirect_status": {"succeeded": "succeeded", "processing": "processing"}.get(intent.status, "failed"),
        }
    )
    raise web.HTTPSeeOther(return_url + ("&" if "?" in return_url else "?") + query)
