"""Payouts through the sandbox processor and the day pipeline (PAY-1, PAY-2, PAY-4, ONB-2): held funds of an agency
that has not finished onboarding, accounted for to the cent every day of a month and paid out once it finishes;
a failed payout shown, notified, its charges not Paid Out, and fixed by a later payout; the payouts pages and API."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.db.models import Sum
from django_tenants.utils import schema_context, tenant_context

from accounts.models import Role
from agencybilling import seed
from billing.models import Charge
from billing.payouts import funds_summary, payout_charges
from billing.platform.models import Payout, SandboxPaymentIntent
from billing.statuses import ChargeStatus
from core.calendar import add_weekdays
from notifications.models import Notice
from tests.api.conftest import api, token_for
from tests.billing_helpers import with_plan
from tests.conftest import login_client, make_user

pytestmark = pytest.mark.django_db

MONTH = date(2027, 3, 1)  # a Monday; the agency's billing day is the 1st


def _clients(agency) -> None:
    """A card that pays, an ACH debit that settles, a SEPA debit that settles, a card that declines."""
    with schema_context(agency.schema_name):
        for n, (outcome, price) in enumerate(
            [
                (seed.Outcome.PAYING, 12000),
                (seed.Outcome.ACH_DEBIT, 23456),
                (seed.Outcome.BANK_DEBIT, 34501),
                (seed.Outcome.DECLINING, 9900),
            ]
        ):
            seed.client(
                name=f"Payout client {n}",
                email=f"payout{n}@example.com",
                activated_on=MONTH - timedelta(days=40),
                license_price_minor=price,
                outcome=outcome,
                method_tag=f"{agency.schema_name}{n}",
            )


def _platform_books(agency) -> int:
    """What the processor holds on the platform's own account for this agency's clients (not transferred)."""
    held = SandboxPaymentIntent.objects.filter(
        status="succeeded", destination="", metadata__schema=agency.schema_name, metadata__kind="client"
    ).aggregate(total=Sum("amount_minor"))["total"]
    return held or 0


def test_ONB_2_PAY_2_an_agency_that_never_onboards_holds_every_cent_then_finishing_pays_it_out(agency_a):
    agency = with_plan(agency_a)
    _clients(agency)
    month = [MONTH + timedelta(days=n) for n in range(31)]
    figures = []
    for day in month:
        seed.run_days(agency, [day])
        with tenant_context(agency):
            funds = funds_summary(currency=agency.currency)
        # Collected = paid out + held, to the cent, every day; the processor's platform balance agrees.
        assert funds.collected == funds.paid_out + funds.held + funds.awaiting_payout, (day, funds)
        assert funds.paid_out == 0 and funds.awaiting_payout == 0, (day, funds)
        assert funds.held == _platform_books(agency), (day, funds)
        figures.append(funds.held)
    assert figures[-1] == 12000 + 23456 + 34501 + seed.PLANS["standard"]["license_fee_minor"] * 0  # 3 collected
    assert not Payout.objects.filter(agency=agency).exists()

    # Onboarding finished on April 1st: held funds are transferred and paid out, new charges are destination charges.
    finished = MONTH.replace(month=4)
    seed.payouts_ready(agency, today=finished)
    after = [finished + timedelta(days=n) for n in range(12)]
    seed.run_days(agency, after)
    with tenant_context(agency):
        funds = funds_summary(currency=agency.currency)
        assert funds.held == 0 and funds.collected == funds.paid_out + funds.awaiting_payout
        march = Charge.objects.filter(period_start=MONTH, status__in=(ChargeStatus.PAID, ChargeStatus.PAID_OUT))
        assert march.count() == 3 and all(c.status == ChargeStatus.PAID_OUT for c in march)
        for charge in march:  # paid out 3 business days after the transfer of the held funds
            assert charge.paid_out_on == add_weekdays(finished, 3)
            assert charge.funds_transfer.transferred_on == finished
        april = Charge.objects.filter(period_start=finished, status=ChargeStatus.PAID_OUT)
        assert april.count() == 3
        for charge in april:  # 3 business days after collection (cards), 5 for bank debits
            assert add_weekdays(charge.paid_on, 3) == charge.paid_out_on
            assert 3 <= _weekdays_between(charge.billing_date, charge.paid_out_on) <= 5
        carried = {c.public_id for p in Payout.objects.filter(agency=agency) for c in payout_charges(p)}
        assert carried == set(Charge.objects.filter(status=ChargeStatus.PAID_OUT).values_list("public_id", flat=True))
    assert _platform_books(agency) == 0


def _weekdays_between(start: date, end: date) -> int:
    return sum(1 for n in range(1, (end - start).days + 1) if (start + timedelta(days=n)).weekday() < 5)


def test_PAY_4_a_failed_payout_is_shown_notified_not_paid_out_and_a_later_payout_fixes_it(agency_a):
    agency = with_plan(agency_a)
    agency.email = "owner@alpha.example"
    agency.save(update_fields=["email"])
    # Onboarded with one of Stripe's test bank accounts whose payouts fail (no_account).
    seed.payouts_ready(agency, today=MONTH - timedelta(days=30), bank_account="000111111116")
    _clients(agency)
    seed.run_days(agency, [MONTH + timedelta(days=n) for n in range(8)])
    failed = Payout.objects.get(agency=agency)
    assert failed.status == "failed" and failed.failure_code == "no_account"
    with tenant_context(agency):
        charges = list(payout_charges(failed))
        assert len(charges) >= 1 and all(c.status == ChargeStatus.PAID for c in charges)
        [notice] = Notice.objects.filter(kind="PAYOUT_FAILED")
        assert notice.to_email == "owner@alpha.example" and failed.reference in notice.body
    make_user(agency, "admin@alpha.test", Role.ADMINISTRATOR)
    http = login_client(agency, "admin@alpha.test")
    listing = http.get("/payouts/").content.decode()
    assert "Failed" in listing and "bank account details on file do not match" in listing
    detail = http.get(f"/payouts/{failed.public_id}/").content.decode()
    assert "This payout failed" in detail and "Payout client 0" in detail
    setup = http.get("/setup/").content.decode()
    assert "Bank account for payouts" in setup  # the processor asks for a new bank account

    # The agency gives a working bank account: the money goes out again in a new payout.
    fixed_on = MONTH + timedelta(days=8)
    seed.payouts_ready(agency, today=fixed_on, bank_account="000123456789")
    seed.run_days(agency, [fixed_on + timedelta(days=n) for n in range(1, 6)])
    paid = Payout.objects.filter(agency=agency, status="paid")
    assert paid.exists()
    with tenant_context(agency):
        for charge in charges:
            charge.refresh_from_db()
            assert charge.status == ChargeStatus.PAID_OUT and charge.payout_reference in {p.reference for p in paid}
        assert Notice.objects.filter(kind="PAYOUT_FAILED").count() == 1

    # The API lists the same payouts with their charges.
    reader = api(agency, token_for(agency, "reader@alpha.test", Role.MARKETING_MANAGER))
    listed = reader.get("/api/v1/payouts/").json()["results"]
    assert {p["status"] for p in listed} == {"failed", "paid"}
    one = reader.get(f"/api/v1/payouts/{failed.public_id}/").json()
    assert one["failure_code"] == "no_account" and {c["id"] for c in one["charges"]} == {
        str(c.public_id) for c in charges
    }
    seller = api(agency, token_for(agency, "seller@alpha.test", Role.SALESPERSON))
    assert seller.get("/api/v1/payouts/").status_code == 403
    funds = reader.get("/api/v1/funds/").json()
    assert funds["collected_minor"] == funds["paid_out_minor"] + funds["awaiting_payout_minor"] + funds["held_minor"]
