"""RET-3/RET-4/COL-4: a manual retry (or a client's Pay now, POR-1) of an Uncollectable charge that fails leaves it
Uncollectable, with the attempt recorded — it never goes back to Retrying with automatic retries scheduled. Whatever
made it Uncollectable (no payment method, retries off, three failures) and whatever the payment method (a card
declined at once, a bank debit whose settlement fails later)."""

from __future__ import annotations

from datetime import date

import pytest
from django_tenants.utils import schema_context, tenant_context

from accounts.models import Role
from billing.collection import agency_charges_collect, collect_due
from billing.invoicing import billing_run
from billing.models import BillingSettings, Charge, ChargeAttempt
from billing.pay_now import charge_pay_now
from billing.payment_methods import agency_payment_method_attach, payment_method_attach
from billing.platform.models import AgencyCharge, AgencyChargeAttempt
from billing.providers.sandbox import SandboxProvider
from billing.settlement import provider_event_dispatch
from billing.statuses import AttemptOutcome, ChargeStatus
from billing.support import agency_charge_retry_run, retry_run
from notifications.catalog import NoticeKind
from notifications.models import Notice
from tenants.models import Agency
from tests.api.conftest import authed
from tests.billing_helpers import client_create, ready_to_collect
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

BILLED = date(2027, 1, 1)  # Friday: the retry dates would be Fri 8 and Fri 15 (RET-2)
RETRIED = date(2027, 1, 4)


@pytest.fixture
def agency(agency_a):
    return ready_to_collect(agency_a)


@pytest.fixture
def support():
    return make_user(None, "support@platform.test", Role.BILLING_SUPPORT)


def _billed_and_collected(agency, name: str, token: str | None = None):
    """A client billed on BILLED and its charge collected that day, with `token` as its payment method, if any."""
    with schema_context(agency.schema_name):
        client = client_create(
            name=name, email=f"{name.lower()}@example.com", activated_on=date(2026, 12, 1), license_price_minor=10000
        )
        if token is not None:
            payment_method_attach(client=client, token=token)
    billing_run(agency=agency, today=BILLED)
    with tenant_context(agency):
        collect_due(today=BILLED)
    return client


def _uncollectable_without_a_payment_method(agency):
    """COL-4: no payment method on the billing date → Uncollectable at once, no attempt."""
    client = _billed_and_collected(agency, "Bare")
    assert _charge(agency, client).status == ChargeStatus.UNCOLLECTABLE
    return client


def _charge(agency, client) -> Charge:
    with schema_context(agency.schema_name):
        return Charge.objects.select_related("invoice").get(client=client)


def _attempts(agency, client) -> list[tuple[int, str, str]]:
    with schema_context(agency.schema_name):
        return list(
            ChargeAttempt.objects.filter(charge__client=client)
            .order_by("number")
            .values_list("number", "kind", "outcome")
        )


def _no_automatic_attempt_follows(agency, client) -> None:
    before = _attempts(agency, client)
    with tenant_context(agency):
        for day in (date(2027, 1, 8), date(2027, 1, 15), date(2027, 1, 18)):
            collect_due(today=day)
    assert _attempts(agency, client) == before


def test_RET_4_COL_4_a_failed_manual_retry_of_an_uncollectable_charge_leaves_it_uncollectable(agency, support):
    client = _uncollectable_without_a_payment_method(agency)
    with schema_context(agency.schema_name):
        payment_method_attach(client=client, token="pm_card_visa_chargeDeclined")
        attempt = retry_run(charge=_charge(agency, client), user=support, today=RETRIED)
    assert attempt.outcome == AttemptOutcome.DECLINED
    charge = _charge(agency, client)
    assert charge.status == ChargeStatus.UNCOLLECTABLE and charge.next_retry_on is None
    assert _attempts(agency, client) == [(1, "MANUAL", AttemptOutcome.DECLINED)]
    with schema_context(agency.schema_name):
        moves = list(charge.events.values_list("from_status", "to_status"))
        assert moves[-1] == (ChargeStatus.UNCOLLECTABLE, ChargeStatus.UNCOLLECTABLE)
        # The client hears the retry failed (NOT-4); the agency was told it was Uncollectable already (NOT-6).
        kinds = sorted(Notice.objects.filter(business_date=RETRIED).values_list("kind", flat=True))
    assert kinds == [NoticeKind.PAYMENT_FAILED]
    _no_automatic_attempt_follows(agency, client)


def test_RET_4_RET_5_a_failed_manual_retry_after_retries_were_switched_back_on_stays_uncollectable(agency, support):
    """Uncollectable after one failure with retries off (RET-5); retries switched on again; a manual retry fails."""
    with schema_context(agency.schema_name):
        BillingSettings.objects.update(retries_enabled=False)
    client = _billed_and_collected(agency, "Off", token="pm_card_visa_chargeDeclined")
    assert _charge(agency, client).status == ChargeStatus.UNCOLLECTABLE
    with schema_context(agency.schema_name):
        BillingSettings.objects.update(retries_enabled=True)
        retry_run(charge=_charge(agency, client), user=support, today=RETRIED)
    charge = _charge(agency, client)
    assert charge.status == ChargeStatus.UNCOLLECTABLE and charge.next_retry_on is None
    assert [outcome for _, _, outcome in _attempts(agency, client)] == [AttemptOutcome.DECLINED] * 2
    _no_automatic_attempt_follows(agency, client)


def test_RET_4_COL_3_a_manual_retry_by_bank_debit_whose_settlement_fails_stays_uncollectable(agency, support):
    """Uncollectable → Pending while the debit settles → its settlement fails (COL-3): Uncollectable again."""
    client = _uncollectable_without_a_payment_method(agency)
    with schema_context(agency.schema_name):
        payment_method_attach(client=client, token="ach:110000000:000111111113")
        retry_run(charge=_charge(agency, client), user=support, today=RETRIED)
    assert _charge(agency, client).status == ChargeStatus.PENDING
    events = SandboxProvider().advance(today=date(2027, 1, 6))
    assert events, "the debit's failed settlement is reported"
    for event in events:
        provider_event_dispatch(event)
    charge = _charge(agency, client)
    assert charge.status == ChargeStatus.UNCOLLECTABLE and charge.next_retry_on is None
    assert _attempts(agency, client) == [(1, "MANUAL", AttemptOutcome.SETTLEMENT_FAILED)]
    _no_automatic_attempt_follows(agency, client)


def test_POR_1_a_failed_pay_now_of_an_uncollectable_charge_stays_uncollectable(agency):
    client = _uncollectable_without_a_payment_method(agency)
    user = make_user(agency, "owner@bare.example", Role.CLIENT)
    with schema_context(agency.schema_name):
        payment_method_attach(client=client, token="pm_card_visa_chargeDeclined")
        charge_pay_now(charge=_charge(agency, client), user=user, request_key="a" * 32, today=RETRIED)
    charge = _charge(agency, client)
    assert charge.status == ChargeStatus.UNCOLLECTABLE and charge.next_retry_on is None
    assert _attempts(agency, client) == [(1, "CLIENT", AttemptOutcome.DECLINED)]


def test_RET_4_a_failed_manual_retry_of_a_retrying_charge_still_counts_and_keeps_retrying(agency, support):
    """The other side of the rule: a Retrying charge's failed manual retry counts toward RET-3 and it keeps its
    automatic retries."""
    client = _billed_and_collected(agency, "Dec", token="pm_card_visa_chargeDeclined")
    with schema_context(agency.schema_name):
        retry_run(charge=_charge(agency, client), user=support, today=RETRIED)
    charge = _charge(agency, client)
    assert charge.status == ChargeStatus.RETRYING and charge.next_retry_on == date(2027, 1, 15)


def test_PAY_3_RET_4_a_failed_manual_retry_of_the_agencys_uncollectable_charge_stays_uncollectable(agency, support):
    with schema_context(agency.schema_name):
        client_create(name="Any", email="any@example.com", activated_on=date(2026, 12, 1), license_price_minor=10000)
    billing_run(agency=agency, today=BILLED)
    agency_charges_collect(agency=agency, today=BILLED)  # no payment method: Uncollectable at once (COL-4)
    charge = AgencyCharge.objects.get(agency=agency)
    assert charge.status == ChargeStatus.UNCOLLECTABLE
    agency_payment_method_attach(agency=agency, token="pm_card_visa_chargeDeclined")
    agency_charge_retry_run(charge=charge, user=support, today=RETRIED)
    charge.refresh_from_db()
    assert charge.status == ChargeStatus.UNCOLLECTABLE and charge.next_retry_on is None
    assert list(AgencyChargeAttempt.objects.filter(charge=charge).values_list("kind", "outcome")) == [
        ("MANUAL", AttemptOutcome.DECLINED)
    ]
    agency_charges_collect(agency=agency, today=date(2027, 1, 8))
    assert AgencyChargeAttempt.objects.filter(charge=charge).count() == 1


def test_RET_4_the_platform_api_answers_a_failed_retry_of_an_uncollectable_charge_with_its_outcome(agency):
    """Over the platform API, as billing support runs it: 200 with the declined attempt and the charge Uncollectable
    (before: 409 "cannot go from Uncollectable to Retrying", and the attempt left unresolved, blocking the charge)."""
    client = _uncollectable_without_a_payment_method(agency)
    Agency.objects.filter(pk=agency.pk).update(clock_date=RETRIED)  # the API's business day
    with schema_context(agency.schema_name):
        payment_method_attach(client=client, token="pm_card_visa_chargeDeclined")
    charge = _charge(agency, client)
    support = authed(None, "api-support@platform.test", Role.BILLING_SUPPORT)
    response = support.post(f"/api/v1/agencies/alpha/charges/{charge.public_id}/retry/", {}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "charge": str(charge.public_id),
        "status": ChargeStatus.UNCOLLECTABLE,
        "attempt_number": 1,
        "outcome": AttemptOutcome.DECLINED,
    }
    assert _attempts(agency, client) == [(1, "MANUAL", AttemptOutcome.DECLINED)]
