"""From a new agency to Paid Out (ONB-1, ONB-2, PAY-1, PAY-2, PAY-4), end to end, once over real HTTP against the
Stripe-compatible test server (Connect Express, Account Links, `account.updated`, balance transactions, payouts on
its test clock, webhooks delivered to the live server) and once through the sandbox processor:

the platform API creates the agency → the invitation email, read from the SMTP server, sets the Administrator's
password → the Administrator finishes payout onboarding on the processor's hosted page → card, ACH and SEPA clients
are charged by the agency's days → every collected charge is Paid Out 3–5 business days after its collection, and
the payouts list exactly those charges (their amounts add up to the payout's).

Stripe takes ACH in USD and SEPA in EUR only, so over Stripe two agencies are onboarded: a USD one (card, ACH) and a
EUR one (card, SEPA). The sandbox takes all three in one agency.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.test import Client as HttpClient
from django_tenants.utils import schema_context

from accounts.models import Role
from agencybilling import seed
from billing.models import Charge
from billing.payment_methods import payment_method_attach
from billing.platform.models import PayoutAccount, PayoutAccountState
from billing.statuses import ChargeStatus
from clients.services import client_create
from tenants.models import Agency
from tests.api.conftest import api, token_for
from tests.harness.stripe_server import StripeTestServer
from tests.onboarding_helpers import drop_agency, invitation_path, mailed_links
from tests.payout_helpers import hosted_onboarding, path_of, stripe_product

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

BILLING_DATE = date(2027, 3, 1)  # a Monday: the agencies' billing day is the 1st
DAYS = [BILLING_DATE + timedelta(days=n) for n in range(12)]
SLUGS = ("e2eusd", "e2eeur", "e2esbx")
PASSWORD = "lantern-orchard-58"


@pytest.fixture(autouse=True)
def _new_agencies(settings):
    settings.SITE_URL = "http://localhost:8123"
    for slug in SLUGS:
        drop_agency(slug)
    yield
    for slug in SLUGS:
        drop_agency(slug)


def _weekdays_between(start: date, end: date) -> int:
    return sum(1 for n in range(1, (end - start).days + 1) if (start + timedelta(days=n)).weekday() < 5)


def _agency_created_and_administrator_signed_in(slug: str, currency: str, smtp_server) -> tuple[Agency, HttpClient]:
    """ONB-1 over the platform API; the Administrator's link comes from the SMTP server and sets the password."""
    plan = seed.partner_plan("standard", currency=currency)
    support = api(None, token_for(None, "ops@platform.test", Role.BILLING_SUPPORT))
    created = support.post(
        "/api/v1/agencies/",
        {
            "slug": slug,
            "name": f"{slug.upper()} Marketing",
            "plan": plan.pk,
            "currency": currency,
            "time_zone": "UTC",
            "billing_day": 1,
            "administrator": {"email": f"owner@{slug}.example", "first_name": "Ada"},
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    [message] = [m for m in smtp_server.messages if m["To"] == f"owner@{slug}.example"]
    [link] = [url for url in mailed_links(message) if "/invitations/" in url]
    assert link.startswith(f"http://{slug}.localhost:8123/invitations/")
    agency = Agency.objects.get(schema_name=slug)
    browser = HttpClient(HTTP_HOST=f"{slug}.localhost")
    chosen = browser.post(invitation_path(link), {"password": PASSWORD, "password_again": PASSWORD})
    assert chosen.status_code == 302
    assert browser.get("/setup/").status_code == 200  # signed in, as an Administrator
    return agency, browser


def _clients(agency: Agency, methods: dict[str, str]) -> None:
    """One client per payment method (name → processor token), each billed 100.00 + its index."""
    with schema_context(agency.schema_name):
        for index, (name, token) in enumerate(methods.items()):
            client = client_create(
                name=name,
                email=f"{name.lower().replace(' ', '-')}@{agency.schema_name}.example",
                activated_on=BILLING_DATE - timedelta(days=45),
                license_price_minor=10000 + index * 111,
            )
            payment_method_attach(client=client, token=token)


def _every_collected_charge_paid_out_in_a_payout_listing_exactly_it(agency: Agency, expected: int) -> dict:
    """The agency's payouts as its API lists them, against its charges: every charge collected is Paid Out 3–5
    business days after collection, each in exactly one paid payout, whose amount is the sum of its charges."""
    reader = api(agency, token_for(agency, f"reader@{agency.schema_name}.test", Role.MARKETING_MANAGER))
    with schema_context(agency.schema_name):
        collected = list(Charge.objects.filter(status__in=(ChargeStatus.PAID, ChargeStatus.PAID_OUT)))
        assert len(collected) == expected, [(c.status, c.amount_minor) for c in Charge.objects.all()]
        delays = {}
        for charge in collected:
            assert charge.status == ChargeStatus.PAID_OUT, (charge.status, charge.paid_on)
            delays[str(charge.public_id)] = _weekdays_between(charge.billing_date, charge.paid_out_on)
        assert all(3 <= d <= 5 for d in delays.values()), delays
    payouts = reader.get("/api/v1/payouts/").json()["results"]
    carried: dict[str, str] = {}
    for listed in payouts:
        detail = reader.get(f"/api/v1/payouts/{listed['id']}/").json()
        if detail["status"] != "paid":
            continue
        assert detail["amount_minor"] == sum(c["amount_minor"] for c in detail["charges"]), detail
        for charge in detail["charges"]:
            assert charge["id"] not in carried, "a charge in two paid payouts"
            carried[charge["id"]] = listed["reference"]
            assert charge["status"] == "PAID_OUT" and charge["paid_out_on"] == detail["arrival_on"]
    assert set(carried) == set(delays), "the payouts list exactly the collected charges"
    funds = reader.get("/api/v1/funds/").json()
    assert funds["paid_out_minor"] == funds["collected_minor"] and funds["held_minor"] == 0
    return delays


def test_ONB_1_ONB_2_PAY_2_PAY_4_new_agency_to_paid_out_over_real_http_with_the_stripe_test_server(
    live_server, settings, smtp_server, eager_tasks
):
    with (
        StripeTestServer(
            max_lifetime=900,
            connect_onboarding=True,
            payout_schedule={"interval": "daily", "delay_days": 2},  # Stripe's standard US schedule
            payout_transit_days=1,
        ) as server,
        stripe_product(settings, server),
    ):
        server.set_clock(datetime(2027, 2, 22, 12, tzinfo=UTC))
        server.add_webhook(f"{live_server.url}/webhooks/stripe", settings.STRIPE_WEBHOOK_SECRET)
        stripe = server.client()
        agencies = {}
        for slug, currency in (("e2eusd", "USD"), ("e2eeur", "EUR")):
            agency, admin = _agency_created_and_administrator_signed_in(slug, currency, smtp_server)
            started = admin.post("/setup/payouts/start")
            assert started["Location"].startswith(f"{server.url}/_test/connect/onboarding/")
            back = hosted_onboarding(started["Location"], "complete", bank_account="000123456789")
            assert back == f"http://{slug}.localhost/setup/payouts/return/"
            admin.get(path_of(back))
            assert PayoutAccount.objects.get(agency=agency).state == PayoutAccountState.PAYOUTS_ENABLED
            assert "Payouts enabled" in admin.get("/setup/").content.decode()
            agencies[slug] = agency
        ach = stripe.v1.payment_methods.create(
            params={
                "type": "us_bank_account",
                "billing_details": {"name": "Ach Payer"},
                "us_bank_account": {
                    "routing_number": "110000000",
                    "account_number": "000123456789",
                    "account_holder_type": "company",
                },
            }
        )
        sepa = stripe.v1.payment_methods.create(
            params={
                "type": "sepa_debit",
                "billing_details": {"name": "Sepa Payer", "email": "sepa@example.com"},
                "sepa_debit": {"iban": "DE89370400440532013000"},
            }
        )
        _clients(agencies["e2eusd"], {"Card Client": "pm_card_visa", "Ach Client": ach.id})
        _clients(agencies["e2eeur"], {"Card Kunde": "pm_card_mastercard", "Sepa Kunde": sepa.id})

        for day in DAYS:
            server.set_clock(datetime(day.year, day.month, day.day, 12, tzinfo=UTC))  # payouts run at midnight
            if day == BILLING_DATE + timedelta(days=2):
                server.settle()  # the bank debits settle two business days after they were made (COL-3)
            assert server.wait_for_webhooks(timeout=30)
            for agency in agencies.values():
                seed.run_days(agency, [day])
            assert server.wait_for_webhooks(timeout=30)

        for agency in agencies.values():
            delays = _every_collected_charge_paid_out_in_a_payout_listing_exactly_it(agency, expected=2)
            assert sorted(delays.values()) == [3, 5]  # the card in 3 business days, the bank debit in 5
            [account] = PayoutAccount.objects.filter(agency=agency).values_list("account_id", flat=True)
            assert server.balances()[account] == {agency.currency.lower(): 0}  # all of it paid out, nothing kept


def test_ONB_1_ONB_2_PAY_2_PAY_4_new_agency_to_paid_out_through_the_sandbox(
    live_server, settings, smtp_server, eager_tasks
):
    agency, admin = _agency_created_and_administrator_signed_in("e2esbx", "USD", smtp_server)
    started = admin.post("/setup/payouts/start")
    hosted = path_of(started["Location"])
    assert "Complete onboarding" in admin.get(hosted).content.decode()
    back = admin.post(hosted, {"action": "complete", "bank_account": "000123456789"})
    admin.get(path_of(back["Location"]))
    assert PayoutAccount.objects.get(agency=agency).state == PayoutAccountState.PAYOUTS_ENABLED
    _clients(
        agency,
        {
            "Card Client": "pm_card_visa:e2esbx",
            "Ach Client": "ach:110000000:000123456789:e2esbx",
            "Sepa Client": "sepa:DE89370400440532013000:e2esbx",
        },
    )
    seed.run_days(agency, DAYS)
    delays = _every_collected_charge_paid_out_in_a_payout_listing_exactly_it(agency, expected=3)
    assert sorted(delays.values()) == [3, 5, 5]
    page = admin.get("/payouts/").content.decode()
    assert "Paid" in page and "No payouts yet" not in page
