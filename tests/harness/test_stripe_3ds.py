"""3-D Secure on the Stripe test server (COL-7): off-session confirmation of Stripe's authentication cards fails with
402 `authentication_required`; on-session it waits in `requires_action` for a local challenge page (or the test
control) that completes or fails it, with Stripe's events."""

from __future__ import annotations

import urllib.parse

import pytest
import stripe

from tests.harness.helpers import SECRET, card_customer, hidden_inputs, http_request, off_session

RETURN_URL = "http://127.0.0.1:9/portal/invoices/7/confirm"


def declined_off_session(client, pm_name="pm_card_authenticationRequired"):
    customer, pm = card_customer(client, pm_name)
    with pytest.raises(stripe.CardError) as err:
        off_session(client, customer, pm, amount=4_200, metadata={"invoice": "INV-7"})
    return customer, pm, err.value


@pytest.mark.parametrize("pm_name", ["pm_card_authenticationRequired", "pm_card_threeDSecureRequired"])
def test_COL_7_off_session_needs_authentication(client, server, recorder, pm_name):
    server.add_webhook(recorder.url, SECRET)
    _, pm, err = declined_off_session(client, pm_name)
    assert err.http_status == 402 and err.code == "authentication_required"
    assert err.error.decline_code == "authentication_required" and err.error.type == "card_error"
    intent = err.error.payment_intent
    assert intent["status"] == "requires_payment_method" and intent["next_action"] is None
    assert intent["last_payment_error"]["code"] == "authentication_required"
    assert intent["last_payment_error"]["payment_method"]["id"] == pm
    pi = client.v1.payment_intents.retrieve(intent["id"])
    assert pi.status == "requires_payment_method" and pi.last_payment_error.decline_code == "authentication_required"
    events = recorder.wait_for(lambda evs: any(e["type"] == "payment_intent.payment_failed" for e in evs))
    assert [e["type"] for e in events if e["type"].startswith(("charge.", "payment_intent."))] == [
        "payment_intent.created",
        "charge.failed",
        "payment_intent.payment_failed",
    ]


def test_COL_7_on_session_confirmation_completed_on_the_local_page(client, server, recorder):
    server.add_webhook(recorder.url, SECRET)
    _, pm, err = declined_off_session(client)
    pi_id = err.error.payment_intent["id"]
    # the customer comes back (the portal) and confirms on-session with the same card
    pi = client.v1.payment_intents.confirm(pi_id, params={"payment_method": pm, "return_url": RETURN_URL})
    assert pi.status == "requires_action" and pi.next_action.type == "redirect_to_url"
    assert pi.next_action.redirect_to_url.return_url == RETURN_URL
    url = pi.next_action.redirect_to_url.url
    assert url.startswith(server.url + "/_test/3ds/" + pi_id)
    status, _, page = http_request(url)
    assert status == 200 and "Complete authentication" in page
    status, headers, _ = http_request(url, "POST", {**hidden_inputs(page), "outcome": "succeeded"})
    assert status == 303
    location = urllib.parse.urlsplit(headers["location"])
    assert location._replace(query="").geturl() == RETURN_URL
    assert urllib.parse.parse_qs(location.query) == {
        "payment_intent": [pi_id],
        "payment_intent_client_secret": [pi.client_secret],
        "redirect_status": ["succeeded"],
    }
    done = client.v1.payment_intents.retrieve(pi_id)
    assert done.status == "succeeded" and done.amount_received == 4_200 and done.next_action is None
    assert [c["status"] for c in server.charges_for(pi_id)] == ["failed", "succeeded"]
    events = recorder.wait_for(lambda evs: any(e["type"] == "payment_intent.succeeded" for e in evs))
    tail = [e["type"] for e in events if e["type"].startswith(("charge.", "payment_intent."))][3:]
    assert tail == ["payment_intent.requires_action", "charge.succeeded", "payment_intent.succeeded"]
    status, _, _ = http_request(url, "POST", {**hidden_inputs(page), "outcome": "succeeded"})
    assert status == 400  # done once


def test_COL_7_use_stripe_sdk_and_failed_authentication(client, server, recorder):
    server.add_webhook(recorder.url, SECRET)
    customer, pm = card_customer(client, "pm_card_threeDSecure2Required")
    pi = client.v1.payment_intents.create(
        params={"amount": 1_500, "currency": "usd", "customer": customer.id, "payment_method": pm, "confirm": True}
    )
    assert pi.status == "requires_action" and pi.next_action.type == "use_stripe_sdk"
    assert pi.next_action.use_stripe_sdk.type == "three_d_secure_redirect"
    assert pi.next_action.use_stripe_sdk.stripe_js.startswith(server.url + "/_test/3ds/")
    failed = server.authenticate(pi.id, succeed=False)
    assert failed["status"] == "requires_payment_method" and failed["payment_method"] is None
    error = client.v1.payment_intents.retrieve(pi.id).last_payment_error
    assert error.code == "payment_intent_authentication_failure" and error.payment_method.id == pm
    recorder.wait_for(lambda evs: any(e["type"] == "payment_intent.payment_failed" for e in evs))
    assert server.charges_for(pi.id) == []  # no charge was attempted
    # another card finishes it
    retried = client.v1.payment_intents.confirm(pi.id, params={"payment_method": "pm_card_visa"})
    assert retried.status == "succeeded"
    with pytest.raises(RuntimeError):
        server.authenticate(pi.id)  # nothing to authenticate any more


def test_COL_7_authenticated_then_declined(client, server):
    customer, pm = card_customer(client, "pm_card_authenticationRequiredChargeDeclinedInsufficientFunds")
    pi = client.v1.payment_intents.create(
        params={"amount": 2_000, "currency": "usd", "customer": customer.id, "payment_method": pm, "confirm": True}
    )
    assert pi.status == "requires_action"
    after = server.authenticate(pi.id)
    assert after["status"] == "requires_payment_method"
    assert after["last_payment_error"]["decline_code"] == "insufficient_funds"
    assert [c["status"] for c in server.charges_for(pi.id)] == ["failed"]


def test_COL_7_error_on_requires_action_and_cards_set_up_for_off_session(client, server):
    customer, pm = card_customer(client, "pm_card_authenticationRequired")
    with pytest.raises(stripe.CardError) as err:
        client.v1.payment_intents.create(
            params={
                "amount": 1_000,
                "currency": "usd",
                "customer": customer.id,
                "payment_method": pm,
                "confirm": True,
                "error_on_requires_action": True,
            }
        )
    assert err.value.code == "authentication_required"
    # 4000002500003155 asks for authentication on setup, then charges off-session work
    setup_customer, setup_pm = card_customer(client, "pm_card_authenticationRequiredOnSetup")
    assert off_session(client, setup_customer, setup_pm).status == "succeeded"


def test_COL_7_page_refuses_a_wrong_client_secret(client, server):
    customer, pm = card_customer(client, "pm_card_threeDSecureRequired")
    pi = client.v1.payment_intents.create(
        params={"amount": 1_000, "currency": "usd", "customer": customer.id, "payment_method": pm, "confirm": True}
    )
    url = f"{server.url}/_test/3ds/{pi.id}?client_secret=wrong"
    assert http_request(url)[0] == 403
    assert http_request(url, "POST", {"client_secret": "wrong", "outcome": "succeeded"})[0] == 403
    assert client.v1.payment_intents.retrieve(pi.id).status == "requires_action"
