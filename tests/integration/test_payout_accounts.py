"""The agency's payout account (ONB-2): Billing Setup → Set up payouts, Stripe Connect Express over real HTTP (the
Stripe-compatible test server: Account Links, its hosted onboarding page, `account.updated` webhooks) and the
sandbox's local page; every state (not started, pending verification, payouts enabled, restricted) with the
processor's requirement list; Administrators only (ROLE-1); forged and out-of-order webhooks change nothing."""

from __future__ import annotations

import json
from datetime import date

import pytest
from django.test import Client as HttpClient
from django.utils import timezone
from django_tenants.utils import schema_context, tenant_context

from accounts.models import AuditEntry, Role
from billing.platform.models import PayoutAccount, PayoutAccountState, WebhookEvent
from billing.providers import get_provider
from billing.settlement import provider_day_settle
from tests.billing_helpers import with_plan
from tests.conftest import login_client, make_user
from tests.harness.stripe_server import StripeTestServer
from tests.payout_helpers import deliver, eventually, hosted_onboarding, path_of, sign, stripe_product

S = PayoutAccountState


@pytest.fixture(scope="module")
def stripe_server():
    with StripeTestServer(max_lifetime=900, connect_onboarding=True) as server:
        yield server


@pytest.fixture
def server(stripe_server):
    stripe_server.reset(keep_webhooks=False)
    return stripe_server


def _state(agency) -> str:
    account = PayoutAccount.objects.filter(agency=agency).first()
    return account.state if account else S.NOT_STARTED


def _admin(agency):
    make_user(agency, "admin@alpha.test", Role.ADMINISTRATOR)
    return login_client(agency, "admin@alpha.test")


@pytest.mark.django_db
def test_ONB_2_sandbox_billing_setup_walks_every_state(agency_a):
    """Not started → left half done → link used twice goes to a fresh one → restricted (with the processor's words)
    → pending verification → verified the next business day → payouts enabled."""
    agency = with_plan(agency_a)
    http = _admin(agency)
    page = http.get("/setup/").content.decode()
    assert "Not started" in page and "Set up payouts" in page

    started = http.post("/setup/payouts/start")
    assert started.status_code == 302 and "/setup/payouts/sandbox/" in started["Location"]
    link = path_of(started["Location"])
    account = PayoutAccount.objects.get(agency=agency)
    agency.refresh_from_db()
    assert agency.connected_account_id == account.account_id and account.provider == "sandbox"
    hosted = http.get(link).content.decode()
    assert "business_profile.url" in hosted and "Complete onboarding" in hosted

    left = http.post(link, {"action": "leave"})
    assert path_of(left["Location"]) == "/setup/payouts/return/"
    http.get("/setup/payouts/return/")
    page = http.get("/setup/").content.decode()
    assert _state(agency) == S.NOT_STARTED and "Bank account for payouts" in page and "Continue payout set-up" in page

    # A link works once: opened again, it goes to the refresh URL, which makes a new one.
    again = http.get(link)
    assert path_of(again["Location"]) == "/setup/payouts/refresh/"
    fresh = http.get("/setup/payouts/refresh/")
    assert "/setup/payouts/sandbox/" in fresh["Location"] and path_of(fresh["Location"]) != link

    bad = http.post(path_of(fresh["Location"]), {"action": "complete", "bank_account": "12"})
    assert bad.status_code == 400 and b"test bank account numbers" in bad.content
    http.post(path_of(fresh["Location"]), {"action": "restricted"})
    http.get("/setup/payouts/return/")
    page = http.get("/setup/").content.decode()
    assert _state(agency) == S.RESTRICTED
    assert "Restricted" in page and "identity document" in page and "could not be verified" in page

    link = path_of(http.post("/setup/payouts/start")["Location"])
    http.post(link, {"action": "pending_verification"})
    returned = http.get("/setup/payouts/return/", follow=True).content.decode()
    assert _state(agency) == S.PENDING_VERIFICATION and "being verified" in returned

    provider_day_settle(agency=agency, today=date(2099, 1, 5))  # the processor verifies, reports account.updated
    assert _state(agency) == S.PAYOUTS_ENABLED
    page = http.get("/setup/").content.decode()
    assert "Payouts enabled" in page and "···· 6789" in page
    with schema_context(agency.schema_name):
        moves = list(
            AuditEntry.objects.filter(action="payout_account.state").order_by("id").values_list("after", flat=True)
        )
    assert [m["state"] for m in moves] == [S.RESTRICTED, S.PENDING_VERIFICATION, S.PAYOUTS_ENABLED]


@pytest.mark.django_db
def test_ONB_2_ROLE_1_only_administrators_set_up_payouts(agency_a, agency_b):
    agency = with_plan(agency_a)
    for role in (Role.COMPANY_MANAGER, Role.SALES_MANAGER, Role.SALESPERSON):
        make_user(agency, f"{role.lower()}@alpha.test", role)
        http = login_client(agency, f"{role.lower()}@alpha.test")
        assert http.post("/setup/payouts/start").status_code == 403
        assert http.get("/setup/payouts/return/").status_code == 403
    assert not PayoutAccount.objects.exists()
    # Another agency's onboarding link does not open on this agency's host.
    other = with_plan(agency_b)
    make_user(other, "admin@beta.test", Role.ADMINISTRATOR)
    theirs = path_of(login_client(other, "admin@beta.test").post("/setup/payouts/start")["Location"])
    assert _admin(agency).get(theirs).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_ONB_2_stripe_express_account_link_and_account_updated_webhooks(
    server, agency_a, live_server, settings, eager_tasks
):
    """Over real HTTP: the Express account and its Account Link are made at Stripe, the hosted page is walked, and
    `account.updated` deliveries alone (before the browser comes back) keep the state."""
    agency = with_plan(agency_a)
    with stripe_product(settings, server):
        server.add_webhook(f"{live_server.url}/webhooks/stripe", settings.STRIPE_WEBHOOK_SECRET, connect=True)
        http = _admin(agency)
        started = http.post("/setup/payouts/start")
        assert started.status_code == 302 and started["Location"].startswith(server.url + "/_test/connect/onboarding/")
        account = PayoutAccount.objects.get(agency=agency)
        assert account.provider == "stripe" and account.account_id.startswith("acct_")
        [created] = [r for r in server.request_log if r["path"] == "/v1/accounts" and r["method"] == "POST"]
        assert created["params"]["type"] == "express"
        [link] = [r for r in server.request_log if r["path"] == "/v1/account_links"]
        assert link["params"]["type"] == "account_onboarding"
        assert link["params"]["return_url"] == "http://alpha.localhost/setup/payouts/return/"
        assert link["params"]["refresh_url"] == "http://alpha.localhost/setup/payouts/refresh/"

        back = hosted_onboarding(started["Location"], "leave")
        assert back == "http://alpha.localhost/setup/payouts/return/"
        http.get(path_of(back))
        assert _state(agency) == S.NOT_STARTED
        assert "Bank account for payouts" in http.get("/setup/").content.decode()

        # Used link → refresh URL → a new Account Link at Stripe.
        assert hosted_onboarding(started["Location"], "complete") == "http://alpha.localhost/setup/payouts/refresh/"
        fresh = http.get("/setup/payouts/refresh/")
        assert fresh["Location"].startswith(server.url) and fresh["Location"] != started["Location"]

        hosted_onboarding(fresh["Location"], "pending_verification")
        eventually(lambda: _state(agency) == S.PENDING_VERIFICATION, what="pending verification by webhook")
        server.onboard(account.account_id, "restricted")
        eventually(lambda: _state(agency) == S.RESTRICTED, what="restricted by webhook")
        page = http.get("/setup/").content.decode().lower()
        assert "identity document" in page and "could not be verified" in page
        server.onboard(account.account_id, "complete", bank_account="000123456789")
        eventually(lambda: _state(agency) == S.PAYOUTS_ENABLED, what="enabled by webhook")
        assert server.wait_for_webhooks(timeout=15)
        assert "Payouts enabled" in http.get("/setup/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_ONB_2_forged_and_out_of_order_onboarding_webhooks_change_nothing(server, agency_a, settings, eager_tasks):
    """Bad input: a forged signature is refused (400) and stored nowhere; a signed event that claims more than Stripe
    says, or one for an account that is not an agency's, changes nothing; events delivered in reverse order leave
    the account as Stripe has it now."""
    agency = with_plan(agency_a)
    with stripe_product(settings, server):
        with tenant_context(agency):
            from billing.payout_accounts import payout_account_create

            account = payout_account_create(agency=agency, actor="test")
        platform = HttpClient(HTTP_HOST="localhost")
        claim = {
            "id": "evt_forged_1",
            "object": "event",
            "type": "account.updated",
            "account": account.account_id,
            "created": int(timezone.now().timestamp()),
            "data": {"object": {"id": account.account_id, "object": "account", "payouts_enabled": True}},
        }
        forged = deliver(platform, claim, secret="whsec_attacker")
        assert forged.status_code == 400 and forged.json()["code"] == "invalid_signature"
        tampered_body = json.dumps({**claim, "id": "evt_forged_2"}).encode()
        tampered = platform.post(
            "/webhooks/stripe",
            data=tampered_body.replace(b"true", b"false"),
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=sign(tampered_body),
        )
        assert tampered.status_code == 400
        assert not WebhookEvent.objects.exists()
        # Signed, but Stripe says otherwise: the account is read from Stripe, not from the event.
        assert deliver(platform, {**claim, "id": "evt_lie"}).status_code == 200
        assert _state(agency) == S.NOT_STARTED and not PayoutAccount.objects.get().payouts_enabled
        stranger = get_provider().connected_account_create(name="x", email="x@x.test", idempotency_key="stranger")
        server.onboard(stranger, "complete")
        event = {**claim, "id": "evt_stranger", "account": stranger, "data": {"object": {"id": stranger}}}
        assert deliver(platform, event).status_code == 200
        assert WebhookEvent.objects.get(event_id="evt_stranger").error == "unknown account"
        assert PayoutAccount.objects.count() == 1

        # Out of order: pending verification, then complete, delivered newest first.
        server.onboard(account.account_id, "pending_verification")
        server.onboard(account.account_id, "complete")
        updates = [e for e in server.events(type="account.updated") if e.get("account") == account.account_id]
        assert len(updates) >= 2
        for item in sorted(updates, key=lambda e: e["created"], reverse=True):
            assert deliver(platform, item).status_code == 200
        assert _state(agency) == S.PAYOUTS_ENABLED
        server.onboard(account.account_id, "restricted")
        late = [e for e in server.events(type="account.updated") if e["id"] not in {u["id"] for u in updates}]
        for item in [*late, *updates]:  # the newest first, then the stale ones again
            deliver(platform, item)
        assert _state(agency) == S.RESTRICTED
