"""3-D Secure (COL-7) over real PostgreSQL, with the sandbox processor and with the Stripe-compatible test server
(tests/harness): an off-session charge that needs authentication is a failed attempt with code
`authentication_required`, its Payment Failed email links to the portal, automatic retries that could only fail
the same way are not made (nor counted), and the client's confirmation on-session in the portal is an attempt."""

from __future__ import annotations

import re
import urllib.parse
from datetime import date, timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from accounts.models import Role
from agencybilling import seed
from billing.attempts import attempts_resolve
from billing.models import Charge, ChargeAttempt
from billing.payment_methods import payment_method_attach
from billing.providers import get_provider
from billing.statuses import AttemptKind, AttemptOutcome, ChargeStatus
from clients.models import ClientUser
from notifications.catalog import NoticeKind
from notifications.models import Notice
from tenants.models import Agency
from tests.billing_helpers import with_plan
from tests.conftest import login_client, make_user
from tests.harness.helpers import hidden_inputs, http_request
from tests.harness.stripe_server import StripeTestServer

JAN = date(2027, 1, 1)  # a Friday: retries on the 5th and 10th weekdays, Fri 8 and Fri 15 Jan (RET-2)
EMAIL = "owner@secure.example"


def _pay_key(html: str) -> str:
    return re.search(r'name="request_key" value="([0-9a-f]{32})"', html).group(1)


def _secure_client(agency, token: str = seed.Outcome.AUTHENTICATION, method_tag: str = "secure"):
    """A client whose card asks for 3-D Secure, billed on 1 Jan; its portal user; the agency's Administrator."""
    with_plan(agency)
    make_user(agency, "admin@secure-agency.example", Role.ADMINISTRATOR)
    with schema_context(agency.schema_name):
        client = seed.client(
            name="Secure Salon",
            email="billing@secure.example",
            activated_on=date(2026, 12, 1),
            license_price_minor=15000,
            outcome=token,
            method_tag=method_tag,
        )
    user = make_user(agency, EMAIL, Role.CLIENT)
    with schema_context(agency.schema_name):
        ClientUser.objects.create(user=user, client=client)
    seed.run_days(agency, [JAN])
    Agency.objects.filter(pk=agency.pk).update(clock_date=JAN)
    return client


@pytest.mark.django_db
def test_COL_7_off_session_authentication_required_is_a_failed_attempt_and_the_email_links_to_the_portal(agency_a):
    client = _secure_client(agency_a)
    with schema_context("alpha"):
        charge = Charge.objects.get(client=client)
        [attempt] = charge.attempts.all()
        assert (attempt.outcome, attempt.decline_code) == (AttemptOutcome.DECLINED, "authentication_required")
        assert (charge.status, charge.next_retry_on) == (ChargeStatus.RETRYING, date(2027, 1, 8))
        mail = Notice.objects.get(kind=NoticeKind.PAYMENT_FAILED, account=str(client.public_id))
    assert mail.subject == "Please confirm your payment of 150.00 USD"
    assert f"Confirm it here: http://alpha.localhost/portal/charges/{charge.public_id}/pay/" in mail.body
    html = login_client(agency_a, EMAIL).get("/portal/").content.decode()
    assert "confirm it with your bank to pay" in html and "Your bank asks you to confirm this payment." in html
    assert "Confirm and pay 150.00 USD" in html


@pytest.mark.django_db
def test_COL_7_automatic_retries_are_not_made_while_the_same_card_needs_authentication(agency_a):
    client = _secure_client(agency_a)
    seed.run_days(agency_a, [date(2027, 1, 8)])
    with schema_context("alpha"):
        charge = Charge.objects.get(client=client)
        assert charge.attempts.count() == 1  # no off-session attempt was spent on the 5th weekday
        assert (charge.status, charge.next_retry_on) == (ChargeStatus.RETRYING, date(2027, 1, 15))
        assert "3-D Secure" in charge.events.order_by("-id").first().reason
    seed.run_days(agency_a, [date(2027, 1, 15)])
    with schema_context("alpha"):
        charge.refresh_from_db()
        assert charge.attempts.count() == 1 and charge.status == ChargeStatus.UNCOLLECTABLE
        kinds = set(Notice.objects.filter(account__startswith="agency:").values_list("kind", flat=True))
        assert NoticeKind.AGENCY_CHARGE_UNCOLLECTABLE in kinds
        # One Payment Failed email for the one failed attempt: the deferred retries sent nothing more (NOT-7).
        assert Notice.objects.filter(kind=NoticeKind.PAYMENT_FAILED, account=str(client.public_id)).count() == 1


@pytest.mark.django_db
def test_COL_7_a_new_card_ends_the_wait_and_the_next_retry_charges_it(agency_a):
    client = _secure_client(agency_a)
    with schema_context("alpha"):
        payment_method_attach(client=client, token="pm_card_visa:secure-new")
    seed.run_days(agency_a, [date(2027, 1, 8)])
    with schema_context("alpha"):
        charge = Charge.objects.get(client=client)
        outcomes = list(charge.attempts.order_by("number").values_list("kind", "outcome"))
        assert outcomes == [
            (AttemptKind.AUTOMATIC, AttemptOutcome.DECLINED),
            (AttemptKind.AUTOMATIC, AttemptOutcome.SUCCEEDED),
        ]
        assert charge.status == ChargeStatus.PAID


@pytest.mark.django_db
def test_COL_7_confirmed_in_the_portal_is_an_attempt_that_pays(agency_a):
    client = _secure_client(agency_a)
    http = login_client(agency_a, EMAIL)
    with schema_context("alpha"):
        charge = Charge.objects.get(client=client)
    pay = f"/portal/charges/{charge.public_id}/pay/"
    sent = http.post(pay, {"request_key": _pay_key(http.get(pay).content.decode())})
    assert sent.status_code == 302
    challenge = urllib.parse.urlsplit(sent["Location"])
    assert challenge.netloc == "alpha.localhost" and challenge.path.startswith("/portal/sandbox/authenticate/pi_sbx_")
    with schema_context("alpha"):
        waiting = charge.attempts.get(number=2)
        assert (waiting.kind, waiting.outcome) == (AttemptKind.CLIENT, AttemptOutcome.REQUIRES_ACTION)
    page = http.get(challenge.path)
    assert "Complete authentication" in page.content.decode() and "150.00 USD" in page.content.decode()
    # While the client is at the bank's page, the pay page offers to continue, not a second payment.
    assert "Continue to your bank's confirmation" in http.get(pay).content.decode()
    back = http.post(challenge.path, {"outcome": "succeeded"})
    assert back["Location"] == f"http://alpha.localhost/portal/charges/{charge.public_id}/pay/return"
    done = http.get(urllib.parse.urlsplit(back["Location"]).path)
    assert done.status_code == 302 and done["Location"] == "/portal/?month=2027-01"
    assert "Thank you — 150.00 USD paid" in http.get(done["Location"]).content.decode()
    with schema_context("alpha"):
        charge.refresh_from_db()
        assert charge.status == ChargeStatus.PAID
        assert list(charge.attempts.order_by("number").values_list("outcome", flat=True)) == [
            AttemptOutcome.DECLINED,
            AttemptOutcome.SUCCEEDED,
        ]
        assert Notice.objects.filter(kind=NoticeKind.PAYMENT_RECEIVED, account=str(client.public_id), number=2).exists()
    # The challenge is done: the page is gone.
    assert http.get(challenge.path).status_code == 404


@pytest.mark.django_db
def test_COL_7_failed_or_abandoned_authentication_is_a_failed_attempt(agency_a):
    client = _secure_client(agency_a)
    http = login_client(agency_a, EMAIL)
    with schema_context("alpha"):
        charge = Charge.objects.get(client=client)
    pay = f"/portal/charges/{charge.public_id}/pay/"
    sent = http.post(pay, {"request_key": _pay_key(http.get(pay).content.decode())})
    back = http.post(urllib.parse.urlsplit(sent["Location"]).path, {"outcome": "failed"})
    failed = http.get(urllib.parse.urlsplit(back["Location"]).path, follow=True).content.decode()
    assert "Payment failed: The payment was not confirmed with your bank." in failed
    with schema_context("alpha"):
        second = charge.attempts.get(number=2)
        assert (second.outcome, second.decline_code) == (
            AttemptOutcome.DECLINED,
            "payment_intent_authentication_failure",
        )
    # A third try, left at the bank's page: past AUTHENTICATION_WAIT_SECONDS it is cancelled and counts as failed.
    http.post(pay, {"request_key": _pay_key(http.get(pay).content.decode())})
    with schema_context("alpha"):
        ChargeAttempt.objects.filter(charge=charge, number=3).update(created_at=timezone.now() - timedelta(hours=2))
        assert attempts_resolve(charge, today=JAN)
        third = charge.attempts.get(number=3)
        assert (third.outcome, third.decline_code) == (AttemptOutcome.DECLINED, "authentication_required")
        charge.refresh_from_db()
        assert charge.status == ChargeStatus.UNCOLLECTABLE  # three failed attempts (RET-3)


# --- the same over the Stripe-compatible test server ------------------------------------------------------------


@pytest.fixture(scope="module")
def stripe_server():
    with StripeTestServer(max_lifetime=900) as server:
        yield server


@pytest.fixture
def stripe_provider(stripe_server, settings):
    stripe_server.reset(keep_webhooks=False)
    settings.PAYMENT_PROVIDER = "stripe"
    settings.STRIPE_SECRET_KEY = "sk_test_three_d_secure"
    settings.STRIPE_API_BASE = stripe_server.url
    settings.STRIPE_RATE_LIMIT = -1
    get_provider.cache_clear()
    yield stripe_server
    get_provider.cache_clear()


@pytest.mark.django_db
def test_COL_7_stripe_off_session_decline_then_on_session_confirmation_on_the_bank_page(agency_a, stripe_provider):
    Agency.objects.filter(pk=agency_a.pk).update(connected_account_id="")
    client = _secure_client(agency_a, token="pm_card_authenticationRequired", method_tag="")
    with schema_context("alpha"):
        charge = Charge.objects.get(client=client)
        [first] = charge.attempts.all()
        assert (first.outcome, first.decline_code) == (AttemptOutcome.DECLINED, "authentication_required")
    http = login_client(agency_a, EMAIL)
    pay = f"/portal/charges/{charge.public_id}/pay/"
    sent = http.post(pay, {"request_key": _pay_key(http.get(pay).content.decode())})
    challenge = sent["Location"]
    assert challenge.startswith(stripe_provider.url + "/_test/3ds/pi_")
    status, _, page = http_request(challenge)
    assert status == 200 and "Complete authentication" in page
    status, headers, _ = http_request(challenge, "POST", {**hidden_inputs(page), "outcome": "succeeded"})
    assert status == 303
    back = urllib.parse.urlsplit(headers["location"])
    assert back.path == f"/portal/charges/{charge.public_id}/pay/return" and "redirect_status=succeeded" in back.query
    done = http.get(f"{back.path}?{back.query}")
    assert done["Location"] == "/portal/?month=2027-01"
    with schema_context("alpha"):
        charge.refresh_from_db()
        second = charge.attempts.get(number=2)
        assert (second.kind, second.outcome) == (AttemptKind.CLIENT, AttemptOutcome.SUCCEEDED)
        assert charge.status == ChargeStatus.PAID and charge.paid_reference == second.gateway_reference
    [intent] = [i for i in stripe_provider.payment_intents() if i["metadata"].get("attempt") == second.idempotency_key]
    assert intent["status"] == "succeeded" and intent["amount"] == 15000
