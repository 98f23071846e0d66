"""Connect Express onboarding on the Stripe test server: accounts that start not onboarded, Account Links to a
local hosted-onboarding page (single use, expiring, refresh_url), `account.updated` with `account`, and the test
control that drives the same transitions. Over real HTTP with the official `stripe` library."""

from __future__ import annotations

import datetime

import pytest
import stripe

from tests.harness.helpers import SECRET, card_customer, hidden_inputs, http_request, off_session
from tests.harness.stripe_server import StripeTestServer

RETURN_URL = "http://127.0.0.1:9/billing-setup/payouts/return"
REFRESH_URL = "http://127.0.0.1:9/billing-setup/payouts/refresh"
MONDAY = datetime.datetime(2027, 1, 4, 10, 0, tzinfo=datetime.UTC)


@pytest.fixture
def onboarding(server: StripeTestServer) -> StripeTestServer:
    server.configure(connect_onboarding=True)
    return server


def express(client: stripe.StripeClient, **params) -> stripe.Account:
    return client.v1.accounts.create(
        params={"type": "express", "country": "US", "email": "agency@example.com", **params}
    )


def link(client: stripe.StripeClient, account: str) -> stripe.AccountLink:
    return client.v1.account_links.create(
        params={"account": account, "type": "account_onboarding", "refresh_url": REFRESH_URL, "return_url": RETURN_URL}
    )


def press(url: str, action: str, **fields: str) -> tuple[int, dict[str, str]]:
    """Open the hosted page (as a browser would) and press one of its buttons."""
    status, _, page = http_request(url)
    assert status == 200, page
    form = {**hidden_inputs(page), "action": action, **fields}
    status, headers, _ = http_request(url, "POST", form)
    return status, headers


def account_events(server: StripeTestServer, account: str, type: str = "account.updated") -> list[dict]:
    return [e for e in server.events(type) if e.get("account") == account]


def test_ONB_2_express_account_starts_not_onboarded_with_stripes_requirements(client, onboarding):
    account = express(client)
    assert (account.details_submitted, account.charges_enabled, account.payouts_enabled) == (False, False, False)
    due = account.requirements.currently_due
    assert {"external_account", "tos_acceptance.date", "tos_acceptance.ip", "business_type"} <= set(due)
    assert account.requirements.eventually_due == due and account.requirements.past_due == due
    assert account.requirements.disabled_reason == "requirements.past_due"
    assert account.requirements.pending_verification == [] and account.requirements.current_deadline is None
    assert account.capabilities["transfers"] == "inactive" and account.capabilities["card_payments"] == "inactive"
    assert account.external_accounts.data == [] and account.settings.payouts.schedule.interval == "manual"
    # Stripe refuses destination charges and transfers to it
    customer, pm = card_customer(client)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        off_session(client, customer, pm, transfer_data={"destination": account.id})
    assert refused.value.code == "insufficient_capabilities_for_transfer"
    assert refused.value.param == "transfer_data[destination]"
    off_session(client, customer, pm, amount=5000)  # the platform's own charge works
    with pytest.raises(stripe.InvalidRequestError) as transfer:
        client.v1.transfers.create(params={"amount": 1000, "currency": "usd", "destination": account.id})
    assert transfer.value.code == "insufficient_capabilities_for_transfer"
    # the capability shows the same
    capability = client.v1.accounts.capabilities.retrieve(account.id, "transfers")
    assert capability.status == "inactive" and capability.requested is True
    with pytest.raises(stripe.InvalidRequestError):  # no Express dashboard before onboarding
        client.v1.accounts.login_links.create(account.id)


def test_ONB_2_account_link_onboarding_completes_on_the_local_page(client, onboarding, recorder):
    onboarding.add_webhook(recorder.url, SECRET, connect=True)
    account = express(client)
    account_link = link(client, account.id)
    assert account_link.object == "account_link" and account_link.url.startswith(onboarding.url + "/")
    assert account_link.expires_at > account_link.created
    status, headers = press(account_link.url, "complete", bank_account="000123456789")
    assert status == 303 and headers["location"] == RETURN_URL
    done = client.v1.accounts.retrieve(account.id)
    assert (done.details_submitted, done.charges_enabled, done.payouts_enabled) == (True, True, True)
    assert done.requirements.currently_due == [] and done.requirements.disabled_reason is None
    assert done.capabilities["transfers"] == "active"
    assert done.external_accounts.data[0].last4 == "6789" and done.tos_acceptance.date
    # Connect webhooks: account.updated with `account`, previous_attributes, then capability.updated
    updated = recorder.wait_for_type("account.updated")
    event = stripe.Webhook.construct_event(
        next(r["body"] for r in recorder.received if b'"account.updated"' in r["body"]),
        next(r["headers"]["Stripe-Signature"] for r in recorder.received if b'"account.updated"' in r["body"]),
        SECRET,
    )
    assert event.account == account.id and updated["account"] == account.id
    assert updated["data"]["object"]["charges_enabled"] is True
    assert updated["data"]["previous_attributes"]["charges_enabled"] is False
    assert updated["data"]["previous_attributes"]["details_submitted"] is False
    recorder.wait_for(lambda evs: sum(e["type"] == "capability.updated" for e in evs) == 2)
    # the link worked once: opening it again leads to refresh_url
    status, headers, _ = http_request(account_link.url)
    assert status == 303 and headers["location"] == REFRESH_URL
    # now destination charges and the Express dashboard work
    customer, pm = card_customer(client)
    assert off_session(client, customer, pm, transfer_data={"destination": account.id}).status == "succeeded"
    assert client.v1.accounts.login_links.create(account.id).url.startswith(onboarding.url)


def test_ONB_2_onboarding_left_half_done_then_verified(client, onboarding):
    account = express(client, business_type="individual")
    status, headers = press(link(client, account.id).url, "pending_verification")
    assert status == 303 and headers["location"] == RETURN_URL
    pending = client.v1.accounts.retrieve(account.id)
    assert pending.details_submitted is True and (pending.charges_enabled, pending.payouts_enabled) == (False, False)
    assert pending.requirements.currently_due == [] and pending.requirements.past_due == []
    assert pending.requirements.pending_verification == ["individual.id_number", "individual.verification.document"]
    assert pending.requirements.disabled_reason == "requirements.pending_verification"
    assert pending.capabilities["transfers"] == "pending"
    verified = onboarding.onboard(account.id, "complete")
    assert verified["payouts_enabled"] is True and verified["requirements"]["pending_verification"] == []
    states = [
        (e["data"]["object"]["details_submitted"], e["data"]["object"]["payouts_enabled"])
        for e in account_events(onboarding, account.id)
    ]
    assert states == [(True, False), (True, True)]


def test_ONB_2_restricted_account_shows_what_is_past_due(client, onboarding):
    account = express(client, business_type="individual")
    press(link(client, account.id).url, "complete")
    status, _ = press(link(client, account.id).url, "restricted")
    assert status == 303
    restricted = client.v1.accounts.retrieve(account.id)
    assert (restricted.charges_enabled, restricted.payouts_enabled, restricted.details_submitted) == (
        False,
        False,
        True,
    )
    assert restricted.requirements.past_due == ["individual.verification.document"]
    assert restricted.requirements.currently_due == ["individual.verification.document"]
    assert restricted.requirements.disabled_reason == "requirements.past_due"
    assert restricted.requirements.errors[0].requirement == "individual.verification.document"
    assert restricted.capabilities["transfers"] == "inactive"
    soon = onboarding.onboard(account.id, "restricted_soon")
    assert soon["payouts_enabled"] is True and soon["requirements"]["current_deadline"] > restricted.created
    assert soon["requirements"]["currently_due"] == ["individual.verification.document"]
    assert soon["requirements"]["past_due"] == []


def test_ONB_2_leaving_the_page_changes_nothing(client, onboarding):
    account = express(client)
    status, headers = press(link(client, account.id).url, "leave")
    assert status == 303 and headers["location"] == RETURN_URL  # return_url does not mean onboarded
    assert client.v1.accounts.retrieve(account.id).details_submitted is False
    assert account_events(onboarding, account.id) == []


def test_ONB_2_expired_or_reused_links_go_to_refresh_url(client, onboarding):
    onboarding.set_clock(MONDAY)
    account = express(client)
    expired = link(client, account.id)
    onboarding.advance_clock(seconds=301)
    status, headers, _ = http_request(expired.url)
    assert status == 303 and headers["location"] == REFRESH_URL
    # a form posted from a page opened before the link expired is refused as well
    fresh = link(client, account.id)
    _, _, page = http_request(fresh.url)
    onboarding.advance_clock(seconds=301)
    status, headers, _ = http_request(fresh.url, "POST", {**hidden_inputs(page), "action": "complete"})
    assert status == 303 and headers["location"] == REFRESH_URL
    assert client.v1.accounts.retrieve(account.id).details_submitted is False
    status, _, _ = http_request(onboarding.url + "/_test/connect/onboarding/doesnotexist")
    assert status == 404


def test_account_link_bad_input(client, onboarding):
    account = express(client)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.account_links.create(params={"account": "acct_nope0000000000", "type": "account_onboarding"})
    assert missing.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as bad_type:
        client.v1.account_links.create(params={"account": account.id, "type": "account_update"})
    assert bad_type.value.param == "type"  # Express accounts have no account_update links
    with pytest.raises(stripe.InvalidRequestError) as bad_url:
        client.v1.account_links.create(
            params={"account": account.id, "type": "account_onboarding", "return_url": "not a url"}
        )
    assert bad_url.value.param == "return_url"


def test_accounts_are_enabled_at_once_unless_onboarding_is_asked_for(client, server):
    account = client.v1.accounts.create(params={"type": "express"})
    assert (account.details_submitted, account.charges_enabled, account.payouts_enabled) == (True, True, True)
    assert account.capabilities["transfers"] == "active" and account.requirements.currently_due == []
    assert server.events("account.updated") == []


def test_controller_properties_and_payout_schedule_settings(client, onboarding):
    account = client.v1.accounts.create(
        params={
            "controller": {
                "fees": {"payer": "application"},
                "losses": {"payments": "application"},
                "stripe_dashboard": {"type": "express"},
            },
            "settings": {"payouts": {"schedule": {"interval": "weekly", "weekly_anchor": "friday", "delay_days": 3}}},
        }
    )
    assert account.type == "express" and account.controller.is_controller is True
    assert account.details_submitted is False
    schedule = account.settings.payouts.schedule
    assert (schedule.interval, schedule.weekly_anchor, schedule.delay_days) == ("weekly", "friday", 3)
    updated = client.v1.accounts.update(
        account.id, params={"settings": {"payouts": {"schedule": {"interval": "daily"}}}}
    )
    assert updated.settings.payouts.schedule.interval == "daily"
    with pytest.raises(stripe.InvalidRequestError) as bad:
        client.v1.accounts.update(account.id, params={"settings": {"payouts": {"schedule": {"interval": "hourly"}}}})
    assert bad.value.param == "settings[payouts][schedule][interval]"
