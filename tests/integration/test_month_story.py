"""A month of one agency through `simulate`: every notice and every attempt on its exact date, delivered
once over a real SMTP server (NOT-1..7, DUN-1, RET-1..3, COL-1..4, CYC-4, CYC-5).

Real PostgreSQL, the sandbox processor, the notice task run eagerly (the same task code a worker runs) and
aiosmtpd. The agency bills on the 1st; Fri 2027-01-01 is the billing date, so the retries fall on
Fri 2027-01-08 and Fri 2027-01-15 (RET-2). Settings: statement 10 days before with follow-ups 3 and 2
days later, grace 10 days, overdue follow-ups 5 and 5 days later.
"""

from __future__ import annotations

import io
from collections import Counter
from datetime import date

import pytest
from django.core.management import call_command
from django_tenants.utils import schema_context

from accounts.models import Role
from agencybilling import seed
from billing.models import AgencyDayStep, BillingSettings, Charge, ChargeAttempt, DayStep
from billing.payment_methods import payment_method_attach
from billing.statuses import ChargeStatus
from billing.support import agency_invoiced_set
from clients.models import Client
from notifications.models import Notice, OutboxStatus
from tests.billing_helpers import ONBOARDED_ON, client_create, with_plan
from tests.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True)

D = date
AGENCY_EMAIL = "billing@alpha.test"


def _simulate(start: str, end: str) -> str:
    out = io.StringIO()
    call_command("simulate", "--start", start, "--end", end, "--agency", "alpha", "--quiet", stdout=out)
    return out.getvalue()


@pytest.fixture
def story(agency_a, smtp_server, eager_tasks):
    agency = with_plan(agency_a)
    agency.email = AGENCY_EMAIL
    agency.save(update_fields=["email"])
    seed.payouts_ready(agency, today=ONBOARDED_ON)
    seed.agency_payment_method(agency, method="pm_card_visa:story-agency")  # its own invoice is paid (PAY-3)
    support = make_user(None, "support@platform.test", Role.BILLING_SUPPORT)
    with schema_context(agency.schema_name):
        BillingSettings.objects.update_or_create(
            singleton=True,
            defaults={
                "statement_days_before": 10,
                "statement_second_after_days": 3,
                "statement_third_after_days": 2,
                "grace_period_days": 10,
                "overdue_threshold_minor": 5000,
                "overdue_second_after_days": 5,
                "overdue_third_after_days": 5,
            },
        )
        clients = {}
        for name, token, extra in [
            ("payer", "pm_card_visa", {}),
            ("replaced", "pm_card_visa_chargeDeclined", {}),
            ("never", "pm_card_visa_chargeDeclinedInsufficientFunds", {}),
            ("bank", "ach:110000000:000123456789", {}),
            ("invoiced", "pm_card_amex", {}),
            ("twice", "pm_card_mastercard", {"autopay_days": [5, 28]}),
        ]:
            client = client_create(
                name=name.title(),
                email=f"{name}@client.test",
                activated_on=D(2026, 12, 1),
                license_price_minor=10000,
                **extra,
            )
            payment_method_attach(client=client, token=token)
            clients[name] = client
        agency_invoiced_set(
            client=clients["invoiced"], user=support, reason="Pays by wire to the agency", today=D(2026, 12, 15)
        )
    return agency, clients, smtp_server


def _notices(agency, to_email):
    with schema_context(agency.schema_name):
        return [
            (kind, number, day)
            for kind, number, day in Notice.objects.filter(to_email=to_email)
            .order_by("business_date", "id")
            .values_list("kind", "number", "business_date")
        ]


def _attempts(agency, client):
    with schema_context(agency.schema_name):
        return list(
            ChargeAttempt.objects.filter(charge__client=client)
            .order_by("attempted_on", "id")
            .values_list("attempted_on", "outcome")
        )


def _statement_and_payment_notices(feb_too=True):
    """What every collectible client on the 1st gets before each billing date (NOT-1, NOT-3, NOT-5)."""
    notices = [
        ("UPCOMING_STATEMENT", 1, D(2026, 12, 22)),
        ("UPCOMING_STATEMENT", 2, D(2026, 12, 25)),
        ("UPCOMING_STATEMENT", 3, D(2026, 12, 27)),
        ("UPCOMING_PAYMENT", 1, D(2026, 12, 30)),
    ]
    if feb_too:
        notices += [
            ("UPCOMING_STATEMENT", 1, D(2027, 1, 22)),
            ("UPCOMING_STATEMENT", 2, D(2027, 1, 25)),
            ("UPCOMING_STATEMENT", 3, D(2027, 1, 27)),
            ("UPCOMING_PAYMENT", 1, D(2027, 1, 30)),
        ]
    return notices


def _in_order(notices):
    return sorted(notices, key=lambda n: n[2])


def test_NOT_1_to_7_DUN_1_a_month_of_notices_and_attempts_on_their_exact_dates(story):
    agency, clients, smtp = story
    _simulate("2026-12-20", "2027-01-04")
    # The replaced card: a new one before the retry on the 5th weekday.
    with schema_context(agency.schema_name):
        payment_method_attach(client=clients["replaced"], token="pm_card_visa:replacement")
    summary = _simulate("2027-01-05", "2027-01-31")
    assert "2027-01-15 alpha:" in summary

    before = _statement_and_payment_notices()
    # Pays on the billing date (COL-2).
    assert _notices(agency, "payer@client.test") == _in_order(before + [("PAYMENT_RECEIVED", 1, D(2027, 1, 1))])
    assert _attempts(agency, clients["payer"]) == [(D(2027, 1, 1), "SUCCEEDED")]

    # Declined on the 1st, card replaced, paid by the retry on the 5th weekday (RET-1, RET-2).
    assert _notices(agency, "replaced@client.test") == _in_order(
        before + [("PAYMENT_FAILED", 1, D(2027, 1, 1)), ("PAYMENT_RECEIVED", 2, D(2027, 1, 8))]
    )
    assert _attempts(agency, clients["replaced"]) == [(D(2027, 1, 1), "DECLINED"), (D(2027, 1, 8), "SUCCEEDED")]

    # Never pays: retries on the 5th and 10th weekdays, Uncollectable after the third failure (RET-3);
    # overdue once the 10-day grace has passed (flagged the 12th), follow-ups 5 and 5 days later (DUN-1, NOT-5).
    assert _notices(agency, "never@client.test") == _in_order(
        before
        + [
            ("PAYMENT_FAILED", 1, D(2027, 1, 1)),
            ("PAYMENT_FAILED", 2, D(2027, 1, 8)),
            ("ACCOUNT_OVERDUE", 1, D(2027, 1, 12)),
            ("PAYMENT_FAILED", 3, D(2027, 1, 15)),
            ("ACCOUNT_OVERDUE", 2, D(2027, 1, 17)),
            ("ACCOUNT_OVERDUE", 3, D(2027, 1, 22)),
        ]
    )
    assert _attempts(agency, clients["never"]) == [
        (D(2027, 1, 1), "DECLINED"),
        (D(2027, 1, 8), "DECLINED"),
        (D(2027, 1, 15), "DECLINED"),
    ]

    # Bank debit: Pending on the 1st, settled two business days later (COL-3).
    assert _notices(agency, "bank@client.test") == _in_order(before + [("PAYMENT_RECEIVED", 1, D(2027, 1, 5))])
    assert _attempts(agency, clients["bank"]) == [(D(2027, 1, 1), "SUCCEEDED")]

    # Agency Invoiced: never charged, no email at all (COL-1).
    assert _notices(agency, "invoiced@client.test") == []
    assert _attempts(agency, clients["invoiced"]) == []

    # Two autopay days, 5 and 28 (NOT-2, CYC-4): the statement goes the day after the previous 28th, the
    # invoice is built on the 5th and half is charged on each autopay date; Upcoming Payment two days
    # before the billing date (the 28th). February's statement again the day after the 28th.
    assert _notices(agency, "twice@client.test") == [
        ("UPCOMING_STATEMENT", 1, D(2026, 12, 29)),
        ("UPCOMING_STATEMENT", 2, D(2027, 1, 1)),
        ("UPCOMING_STATEMENT", 3, D(2027, 1, 3)),
        ("PAYMENT_RECEIVED", 1, D(2027, 1, 5)),
        ("UPCOMING_PAYMENT", 1, D(2027, 1, 26)),
        ("PAYMENT_RECEIVED", 1, D(2027, 1, 28)),
        ("UPCOMING_STATEMENT", 1, D(2027, 1, 29)),
    ]
    assert _attempts(agency, clients["twice"]) == [(D(2027, 1, 5), "SUCCEEDED"), (D(2027, 1, 28), "SUCCEEDED")]

    # The agency hears of each failure and of the Uncollectable (NOT-6), and of its own invoice's payment.
    assert _notices(agency, AGENCY_EMAIL) == [
        ("AGENCY_CHARGE_FAILED", 1, D(2027, 1, 1)),
        ("AGENCY_CHARGE_FAILED", 1, D(2027, 1, 1)),
        ("PLATFORM_PAYMENT_RECEIVED", 1, D(2027, 1, 1)),  # the agency's own invoice, from its card (PAY-3)
        ("AGENCY_CHARGE_FAILED", 2, D(2027, 1, 8)),
        ("AGENCY_CHARGE_FAILED", 3, D(2027, 1, 15)),
        ("AGENCY_CHARGE_UNCOLLECTABLE", 3, D(2027, 1, 15)),
    ]

    with schema_context(agency.schema_name):
        statuses = {c.client.name: c.status for c in Charge.objects.select_related("client")}
        assert statuses["Never"] == ChargeStatus.UNCOLLECTABLE and statuses["Invoiced"] == ChargeStatus.AGENCY_INVOICED
        assert Client.objects.get(pk=clients["never"].pk).overdue_since == D(2027, 1, 12)
        assert Client.objects.filter(overdue_since__isnull=False).count() == 1
        # Every step of every day was recorded as done.
        assert AgencyDayStep.objects.exclude(status="DONE").count() == 0
        assert AgencyDayStep.objects.count() == 43 * len(DayStep.values)
        rows = list(Notice.objects.values_list("account", "kind", "period", "number", "status"))
    # Every notice went out over SMTP, exactly once (NOT-7).
    assert all(status == OutboxStatus.SENT for *_, status in rows)
    keys = Counter(str(message["X-Notice-Key"]).strip() for message in smtp.messages)
    assert len(smtp.messages) == len(rows) and max(keys.values()) == 1
    assert keys == Counter(f"{a}/{k}/{p}/{n}" for a, k, p, n, _ in rows)

    # Rerunning the whole month sends nothing and charges no one again.
    sent = len(smtp.messages)
    with schema_context(agency.schema_name):
        attempts_before = ChargeAttempt.objects.count()
    assert "done before" in _simulate("2026-12-20", "2027-01-31")
    with schema_context(agency.schema_name):
        assert ChargeAttempt.objects.count() == attempts_before
    assert len(smtp.messages) == sent


def test_DUN_1_paying_clears_the_overdue_flag_and_stops_the_follow_ups(story):
    agency, clients, smtp = story
    _simulate("2026-12-31", "2027-01-13")
    with schema_context(agency.schema_name):
        assert Client.objects.get(pk=clients["never"].pk).overdue_since == D(2027, 1, 12)
        payment_method_attach(client=clients["never"], token="pm_card_visa:rescue")
    _simulate("2027-01-14", "2027-01-24")  # the retry on the 15th succeeds
    with schema_context(agency.schema_name):
        assert Client.objects.get(pk=clients["never"].pk).overdue_since is None
    assert [n for n in _notices(agency, "never@client.test") if n[0] == "ACCOUNT_OVERDUE"] == [
        ("ACCOUNT_OVERDUE", 1, D(2027, 1, 12))
    ]


def test_DUN_1_below_the_threshold_is_not_overdue(story):
    agency, clients, smtp = story
    with schema_context(agency.schema_name):
        BillingSettings.objects.update(overdue_threshold_minor=10001)  # the unpaid invoice is 100.00
    _simulate("2026-12-31", "2027-01-20")
    with schema_context(agency.schema_name):
        assert Client.objects.filter(overdue_since__isnull=False).count() == 0
        assert not Notice.objects.filter(kind="ACCOUNT_OVERDUE").exists()
