"""Collection over real PostgreSQL with the sandbox processor: COL-1..6, RET-1..5, PAY-1..3."""

from __future__ import annotations

import re
from datetime import date

import pytest
from django_tenants.utils import schema_context, tenant_context

from accounts.models import AuditEntry, Role
from billing.attempts import AttemptUnresolved, charge_attempt
from billing.charges import IllegalTransition
from billing.collection import collect_due
from billing.invoicing import billing_run
from billing.models import Charge, ChargeAttempt, SupportRequest
from billing.payment_methods import PaymentMethodInUse, agency_payment_method_attach, payment_method_attach
from billing.platform.models import AgencyCharge, SandboxPaymentIntent
from billing.providers.base import ChargeResult, Outcome
from billing.providers.sandbox import SandboxProvider
from billing.selectors import billing_settings, client_balance
from billing.settlement import provider_event_dispatch
from billing.statuses import AttemptOutcome, ChargeStatus
from billing.support import agency_invoiced_request, agency_invoiced_set, retry_request, retry_run
from core.errors import ApplicationError, PermissionDenied
from tests.billing_helpers import client_create, ready_to_collect
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def agency(agency_a):
    return ready_to_collect(agency_a)


def _client(agency, name="Acme", token="pm_card_visa", **kwargs):
    with schema_context(agency.schema_name):
        client = client_create(
            name=name,
            email=f"{name.lower()}@example.com",
            activated_on=date(2026, 12, 1),
            license_price_minor=kwargs.pop("price", 10000),
            **kwargs,
        )
        if token:
            payment_method_attach(client=client, token=token)
        return client


def run_day(agency, today):
    """The billing and collection steps of a day, then the processor's own day (settlement, payouts)."""
    billing_run(agency=agency, today=today)
    with tenant_context(agency):
        summary = collect_due(today=today)
    for event in SandboxProvider().advance(today=today):
        provider_event_dispatch(event)
    return summary


def _charge(agency, client):
    with schema_context(agency.schema_name):
        return Charge.objects.get(client=client)


def _attempts(agency, client):
    with schema_context(agency.schema_name):
        return list(
            ChargeAttempt.objects.filter(charge__client=client)
            .order_by("number")
            .values_list("number", "attempted_on", "outcome", "kind")
        )


def test_COL_2_autopay_card_success_is_paid_and_ledger_settled(agency):
    client = _client(agency)
    summary = run_day(agency, date(2027, 1, 1))
    charge = _charge(agency, client)
    assert charge.status == ChargeStatus.PAID and charge.paid_on == date(2027, 1, 1)
    assert summary.paid == 1
    with schema_context(agency.schema_name):
        assert client_balance(client) == 0
        attempt = ChargeAttempt.objects.get(charge=charge)
    assert attempt.gateway_reference.startswith("pi_sbx_")


def test_PAY_1_client_charge_is_a_destination_charge_to_the_agency(agency):
    client = _client(agency)
    run_day(agency, date(2027, 1, 1))
    intent = SandboxPaymentIntent.objects.get()
    assert intent.destination == agency.connected_account_id != ""
    assert intent.amount_minor == _charge(agency, client).amount_minor


def test_COL_3_bank_debit_pending_then_paid_on_settlement(agency):
    client = _client(agency, token="sepa:DE89370400440532013000")
    run_day(agency, date(2027, 1, 1))
    assert _charge(agency, client).status == ChargeStatus.PENDING
    run_day(agency, date(2027, 1, 4))  # Fri 1 → 2 business days → Tue 5
    assert _charge(agency, client).status == ChargeStatus.PENDING
    run_day(agency, date(2027, 1, 5))
    assert _charge(agency, client).status == ChargeStatus.PAID


def test_COL_3_failed_settlement_counts_as_a_failed_attempt(agency):
    client = _client(agency, token="ach:110000000:000111111113")
    run_day(agency, date(2027, 1, 1))
    run_day(agency, date(2027, 1, 5))
    charge = _charge(agency, client)
    assert charge.status == ChargeStatus.RETRYING and charge.next_retry_on == date(2027, 1, 8)
    assert _attempts(agency, client) == [(1, date(2027, 1, 1), AttemptOutcome.SETTLEMENT_FAILED, "AUTOMATIC")]


def test_COL_4_no_payment_method_is_uncollectable_at_once(agency):
    client = _client(agency, token=None)
    run_day(agency, date(2027, 1, 1))
    charge = _charge(agency, client)
    assert charge.status == ChargeStatus.UNCOLLECTABLE and charge.next_retry_on is None
    assert _attempts(agency, client) == []
    run_day(agency, date(2027, 1, 8))  # no automatic retry
    assert _attempts(agency, client) == []


def test_COL_5_same_card_cannot_be_on_two_accounts_in_any_agency(agency, agency_b):
    first = _client(agency, "First")
    with schema_context(agency.schema_name):
        other = client_create(name="Other", email="o@example.com", activated_on=date(2026, 12, 1))
        with pytest.raises(PaymentMethodInUse) as excinfo:
            payment_method_attach(client=other, token="pm_card_visa")
        assert "already used" in excinfo.value.message
        assert not other.payment_methods.exists()
    with schema_context(agency_b.schema_name):
        elsewhere = client_create(name="Elsewhere", email="e@example.com", activated_on=date(2026, 12, 1))
        with pytest.raises(PaymentMethodInUse):
            payment_method_attach(client=elsewhere, token="pm_card_visa")
        payment_method_attach(client=elsewhere, token="pm_card_mastercard")  # a different card is fine
    with schema_context(agency.schema_name):
        payment_method_attach(client=first, token="pm_card_visa")  # re-saving its own card is fine


def test_COL_5_unknown_payment_method_token_is_refused(agency):
    with schema_context(agency.schema_name):
        client = client_create(name="X", email="x@example.com", activated_on=date(2026, 12, 1))
        with pytest.raises(ApplicationError) as excinfo:
            payment_method_attach(client=client, token="pm_card_madeup")
        assert excinfo.value.fields["token"]
        assert not client.payment_methods.exists()


def test_RET_1_RET_2_RET_3_declines_retry_on_5th_and_10th_weekday_then_uncollectable(agency):
    client = _client(agency, token="pm_card_visa_chargeDeclined")
    for day in range(1, 20):
        run_day(agency, date(2027, 1, day))
    # Billing date Fri 2027-01-01 → retries Fri 2027-01-08 and Fri 2027-01-15 (RET-2's own example).
    assert _attempts(agency, client) == [
        (1, date(2027, 1, 1), AttemptOutcome.DECLINED, "AUTOMATIC"),
        (2, date(2027, 1, 8), AttemptOutcome.DECLINED, "AUTOMATIC"),
        (3, date(2027, 1, 15), AttemptOutcome.DECLINED, "AUTOMATIC"),
    ]
    charge = _charge(agency, client)
    assert charge.status == ChargeStatus.UNCOLLECTABLE and charge.next_retry_on is None
    with schema_context(agency.schema_name):
        statuses = list(charge.events.values_list("to_status", flat=True))
    assert statuses == ["RETRYING", "RETRYING", "UNCOLLECTABLE"]


def test_RET_2_retry_dates_across_a_month_end_and_weekends(agency):
    client = _client(agency, token="pm_card_visa_chargeDeclinedInsufficientFunds", billing_day=28)
    day = date(2027, 1, 28)  # Thursday
    while day <= date(2027, 2, 15):
        run_day(agency, day)
        day = date.fromordinal(day.toordinal() + 1)
    assert [a[1] for a in _attempts(agency, client)] == [date(2027, 1, 28), date(2027, 2, 4), date(2027, 2, 11)]


def test_RET_5_retries_off_means_one_attempt_only(agency):
    client = _client(agency, token="pm_card_visa_chargeDeclined")
    with schema_context(agency.schema_name):
        settings = billing_settings()
        settings.retries_enabled = False
        settings.save()
    for day in range(1, 16):
        run_day(agency, date(2027, 1, day))
    assert len(_attempts(agency, client)) == 1
    assert _charge(agency, client).status == ChargeStatus.UNCOLLECTABLE


def test_RET_4_card_replaced_before_the_5th_weekday_then_paid(agency):
    client = _client(agency, token="pm_card_visa_chargeDeclined")
    run_day(agency, date(2027, 1, 1))
    with schema_context(agency.schema_name):
        payment_method_attach(client=client, token="pm_card_mastercard")
    for day in range(2, 9):
        run_day(agency, date(2027, 1, day))
    assert [a[2] for a in _attempts(agency, client)] == [AttemptOutcome.DECLINED, AttemptOutcome.SUCCEEDED]
    assert _charge(agency, client).status == ChargeStatus.PAID


def test_RET_4_manual_retry_requested_by_agency_run_by_support(agency):
    client = _client(agency, token="pm_card_visa_chargeDeclined")
    run_day(agency, date(2027, 1, 1))
    admin = make_user(agency, "admin@alpha.test", Role.ADMINISTRATOR)
    seller = make_user(agency, "seller@alpha.test", Role.SALESPERSON)
    support = make_user(None, "support@platform.test", Role.BILLING_SUPPORT)
    with schema_context(agency.schema_name):
        charge = Charge.objects.get(client=client)
        with pytest.raises(PermissionDenied):
            retry_request(charge=charge, user=seller)
        retry_request(charge=charge, user=admin, reason="card updated")
        with pytest.raises(PermissionDenied):
            retry_run(charge=charge, user=admin, today=date(2027, 1, 3))
        payment_method_attach(client=client, token="pm_card_mastercard")
        attempt = retry_run(charge=charge, user=support, today=date(2027, 1, 3))
        assert attempt.kind == "MANUAL" and attempt.outcome == AttemptOutcome.SUCCEEDED
        assert Charge.objects.get(pk=charge.pk).status == ChargeStatus.PAID
        assert SupportRequest.objects.get().status == "DONE"
        assert AuditEntry.objects.filter(action="charge.retry", actor="support@platform.test").exists()
        with pytest.raises(IllegalTransition):  # a Paid charge cannot be retried
            retry_run(charge=Charge.objects.get(pk=charge.pk), user=support, today=date(2027, 1, 4))
        assert ChargeAttempt.objects.filter(charge=charge).count() == 2


def test_COL_1_agency_invoiced_is_never_charged_and_set_only_by_support(agency):
    client = _client(agency, token="pm_card_visa")
    admin = make_user(agency, "admin@alpha.test", Role.ADMINISTRATOR)
    support = make_user(None, "support@platform.test", Role.BILLING_SUPPORT)
    with schema_context(agency.schema_name):
        agency_invoiced_request(client=client, user=admin, reason="pays by cheque")
        with pytest.raises(PermissionDenied):
            agency_invoiced_set(client=client, user=admin, reason="self-service", today=date(2026, 12, 20))
        with pytest.raises(ApplicationError):
            agency_invoiced_set(client=client, user=support, reason="  ", today=date(2026, 12, 20))
        agency_invoiced_set(client=client, user=support, reason="pays by cheque", today=date(2026, 12, 20))
        entry = AuditEntry.objects.get(action="client.agency_invoiced.set")
        assert (entry.actor, entry.reason) == ("support@platform.test", "pays by cheque")
    run_day(agency, date(2027, 1, 1))
    assert _charge(agency, client).status == ChargeStatus.AGENCY_INVOICED
    assert _attempts(agency, client) == [] and not SandboxPaymentIntent.objects.exists()


def test_COL_1_agency_invoiced_refused_for_an_unconfigured_client(agency):
    support = make_user(None, "support@platform.test", Role.BILLING_SUPPORT)
    admin = make_user(agency, "admin@alpha.test", Role.ADMINISTRATOR)
    with schema_context(agency.schema_name):
        bare = client_create(name="Bare", email="bare@example.com", activated_on=date(2026, 12, 1))
        with pytest.raises(ApplicationError) as excinfo:
            agency_invoiced_request(client=bare, user=admin, reason="x")
        assert excinfo.value.code == "client_not_configured"
        with pytest.raises(ApplicationError):
            agency_invoiced_set(client=bare, user=support, reason="x", today=date(2027, 1, 1))
        bare.refresh_from_db()
        assert not bare.agency_invoiced and not SupportRequest.objects.exists()


def test_PAY_2_collected_charge_is_paid_out_3_business_days_later(agency):
    client = _client(agency)
    for day in range(1, 7):
        run_day(agency, date(2027, 1, day))
        if day < 6:
            assert _charge(agency, client).status == ChargeStatus.PAID
    charge = _charge(agency, client)
    assert charge.status == ChargeStatus.PAID_OUT and charge.paid_out_on == date(2027, 1, 6)
    assert charge.payout_reference.startswith("po_sbx_")


def test_PAY_3_agency_invoice_charged_to_the_agency_payment_method(agency):
    agency_payment_method_attach(agency=agency, token="pm_card_amex")
    _client(agency)
    run_day(agency, date(2027, 1, 1))
    from billing.attempts import charge_attempt as attempt_fn

    charge = AgencyCharge.objects.get(agency=agency)
    attempt = attempt_fn(charge, today=date(2027, 1, 1))
    charge.refresh_from_db()
    assert attempt.outcome == AttemptOutcome.SUCCEEDED and charge.status == ChargeStatus.PAID
    assert SandboxPaymentIntent.objects.get(customer=agency.platform_customer_id).destination == ""


class TimesOutAfterCharging:
    """Fault injection around the real sandbox: the charge is made, then the caller sees a timeout."""

    name = "sandbox"

    def __init__(self):
        self.inner = SandboxProvider()
        self.calls = 0

    def __getattr__(self, item):
        return getattr(self.inner, item)

    def charge_create(self, request):
        self.calls += 1
        self.inner.charge_create(request)
        raise TimeoutError("read timed out")


class Unreachable(TimesOutAfterCharging):
    def charge_lookup(self, request):
        raise ConnectionError("connection reset")


def test_COL_2_timeout_after_the_charge_was_made_then_rerun_charges_once(agency):
    client = _client(agency)
    billing_run(agency=agency, today=date(2027, 1, 1))
    with tenant_context(agency):
        charge = Charge.objects.get(client=client)
        attempt = charge_attempt(charge, today=date(2027, 1, 1), provider=TimesOutAfterCharging())
        assert attempt.outcome == AttemptOutcome.UNKNOWN
        assert Charge.objects.get(pk=charge.pk).status == ChargeStatus.SCHEDULED
        # While the outcome is unknown and the provider cannot be asked, no new attempt is made.
        with pytest.raises(AttemptUnresolved):
            charge_attempt(charge, today=date(2027, 1, 1), provider=Unreachable())
        collect_due(today=date(2027, 1, 1))  # the rerun resolves by lookup: the money had moved
        charge.refresh_from_db()
        assert charge.status == ChargeStatus.PAID
        assert list(ChargeAttempt.objects.values_list("number", "outcome")) == [(1, AttemptOutcome.SUCCEEDED)]
    assert SandboxPaymentIntent.objects.count() == 1
    assert client_balance_of(agency, client) == 0


def client_balance_of(agency, client):
    with schema_context(agency.schema_name):
        return client_balance(client)


def test_COL_2_crash_before_the_call_resends_the_same_attempt_once(agency):
    client = _client(agency)
    billing_run(agency=agency, today=date(2027, 1, 1))
    with tenant_context(agency):
        charge = Charge.objects.get(client=client)
        # A process died after writing the attempt row and before calling the processor.
        ChargeAttempt.objects.create(
            charge=charge,
            number=1,
            attempted_on=date(2027, 1, 1),
            amount_minor=charge.amount_minor,
            idempotency_key="cl-crashed-1",
            payment_method_reference=client.payment_methods.get().reference,
        )
        collect_due(today=date(2027, 1, 1))
        collect_due(today=date(2027, 1, 1))
        assert Charge.objects.get(pk=charge.pk).status == ChargeStatus.PAID
        assert ChargeAttempt.objects.count() == 1
    assert SandboxPaymentIntent.objects.count() == 1


def test_COL_6_payment_received_is_allocated_through_the_ledger(agency):
    client = _client(agency, price=5000)
    run_day(agency, date(2027, 1, 1))
    with schema_context(agency.schema_name):
        from billing.models import Allocation

        assert Allocation.objects.filter(charge__client=client).count() == 1
        assert client_balance(client) == 0


def test_duplicate_event_delivery_is_harmless(agency):
    client = _client(agency, token="sepa:DE89370400440532013000")
    run_day(agency, date(2027, 1, 1))
    events = SandboxProvider().advance(today=date(2027, 1, 5))
    assert [e.kind for e in events] == ["charge.succeeded"]
    for _ in range(5):
        provider_event_dispatch(events[0])
    with schema_context(agency.schema_name):
        assert client_balance(client) == 0
        from billing.models import LedgerEntry

        assert LedgerEntry.objects.filter(client=client, entry_type="PAYMENT").count() == 1
    assert _charge(agency, client).status == ChargeStatus.PAID


def test_provider_result_unknown_is_recorded_as_unknown(agency):
    class AlwaysUnknown(SandboxProvider):
        def charge_create(self, request):
            return ChargeResult(Outcome.UNKNOWN, message="gateway 502")

        def charge_lookup(self, request):
            return ChargeResult(Outcome.UNKNOWN)

    client = _client(agency)
    billing_run(agency=agency, today=date(2027, 1, 1))
    with tenant_context(agency):
        attempt = charge_attempt(Charge.objects.get(client=client), today=date(2027, 1, 1), provider=AlwaysUnknown())
        assert attempt.outcome == AttemptOutcome.UNKNOWN


def test_NOT_7_COL_2_a_batch_of_outcomes_is_recorded_with_a_few_statements_whatever_its_size(agency):
    """History rows, notices, webhook endpoints and notice templates: written and read once per batch of answers,
    not once per charge (docs/performance.md, P2); each notice still once per key (NOT-7)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from notifications.models import Notice

    def recorded_statements(count: int, today: date) -> dict[str, int]:
        for n in range(count):
            _client(agency, f"Batch{today.month}x{n}", token=f"pm_card_visa:{today.month}-{n}", price=1000 + n)
        billing_run(agency=agency, today=today)
        with tenant_context(agency), CaptureQueriesContext(connection) as queries:
            summary = collect_due(today=today, first_attempts=True, retries=False)
        assert summary.paid >= count
        tables = {
            "history": r"billing_chargeevent\b",
            "notices": r"notifications_notice\b",
            "templates": r"notifications_noticetemplate\b",
            "endpoints": r"integrations_webhookendpoint\b",
        }
        return {
            name: sum(1 for q in queries.captured_queries if re.search(table, q["sql"]))
            for name, table in tables.items()
        }

    few = recorded_statements(3, date(2027, 1, 1))
    many = recorded_statements(12, date(2027, 2, 1))
    assert few == many, (few, many)
    with schema_context(agency.schema_name):
        assert Notice.objects.filter(kind="PAYMENT_RECEIVED").count() == Charge.objects.filter(status="PAID").count()
