"""Credit notes and refunds over real PostgreSQL with the sandbox processor (COR-1, MON-3, MON-4, COL-6)."""

from __future__ import annotations

from datetime import date

import pytest
from django.db import DatabaseError, transaction
from django_tenants.utils import schema_context, tenant_context

from accounts.models import AuditEntry, Role
from agencybilling import seed
from billing.base_models import EntryType
from billing.collection import collect_due
from billing.corrections import CreditAboveRemaining, NothingToRefund, credit_note_issue
from billing.invoicing import billing_run
from billing.models import Charge, ChargeEvent, CreditNote, CreditNoteLine, Invoice, LedgerEntry, Refund
from billing.payment_methods import payment_method_attach
from billing.platform.models import SandboxRefund
from billing.providers.sandbox import SandboxProvider
from billing.selectors import client_balance
from billing.settlement import provider_event_dispatch
from billing.statuses import ChargeStatus, CreditOutcome, RefundStatus
from core.errors import PermissionDenied
from notifications.catalog import NoticeKind
from notifications.models import Notice
from tests.billing_helpers import ONBOARDED_ON, client_create, with_plan
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

JAN1, FEB1 = date(2027, 1, 1), date(2027, 2, 1)


@pytest.fixture
def agency(agency_a):
    agency = with_plan(agency_a)
    agency.email = "billing@alpha.example"
    agency.save(update_fields=["email"])
    seed.payouts_ready(agency, today=ONBOARDED_ON)
    return agency


@pytest.fixture
def admin(agency):
    return make_user(agency, "admin@alpha.example", Role.ADMINISTRATOR)


def _client(agency, name="Acme", token="pm_card_visa", price=10_000):
    with schema_context(agency.schema_name):
        client = client_create(
            name=name, email=f"{name.lower()}@example.com", activated_on=date(2026, 12, 1), license_price_minor=price
        )
        if token:
            payment_method_attach(client=client, token=token)
        return client


def run_day(agency, today):
    billing_run(agency=agency, today=today)
    with tenant_context(agency):
        collect_due(today=today)
    for event in SandboxProvider().advance(today=today):
        provider_event_dispatch(event)


def _invoice(client, period_start=JAN1):
    return Invoice.objects.get(client=client, period_start=period_start)


def _issue(agency, admin, client, today, **kwargs):
    with tenant_context(agency):
        return credit_note_issue(
            invoice=_invoice(client, kwargs.pop("period_start", JAN1)),
            user=admin,
            reason=kwargs.pop("reason", "Overbilled: the license started later"),
            today=today,
            **kwargs,
        )


def _entries(client):
    return list(LedgerEntry.objects.filter(client=client).order_by("id").values_list("entry_type", "amount_minor"))


def test_COR_1_partial_refund_of_a_paid_charge_goes_back_through_the_processor(agency, admin):
    client = _client(agency)
    run_day(agency, JAN1)
    note = _issue(agency, admin, client, date(2027, 1, 4), amount_minor=2_500, outcome=CreditOutcome.REFUND)
    with tenant_context(agency):
        assert note.number == "CN-ALPHA-000001" and note.amount_minor == 2_500
        [refund] = Refund.objects.filter(credit_note=note)
        assert refund.status == RefundStatus.SUCCEEDED and refund.reference.startswith("re_sbx_")
        charge = Charge.objects.get(client=client)
        assert charge.status == ChargeStatus.PAID and charge.amount_minor == 10_000  # the charge is not rewritten
        assert _entries(client)[-2:] == [(EntryType.CREDIT, -2_500), (EntryType.REFUND, 2_500)]
        assert client_balance(client) == 0
        [line] = CreditNoteLine.objects.filter(credit_note=note)
        assert (line.category, line.amount_minor) == ("LICENSE", 2_500)
        audit = AuditEntry.objects.get(action="credit_note.issue")
        assert audit.actor == admin.email and audit.reason == "Overbilled: the license started later"
        kinds = sorted(Notice.objects.filter(period__endswith=note.number).values_list("kind", "to_email"))
    assert kinds == [
        (NoticeKind.AGENCY_CREDIT_NOTE_ISSUED, "billing@alpha.example"),
        (NoticeKind.CREDIT_NOTE_ISSUED, "acme@example.com"),
    ]
    [sandbox] = SandboxRefund.objects.all()
    # A destination charge: the agency returns its share (reverse_transfer), so the next payout is net of it.
    assert sandbox.amount_minor == 2_500 and sandbox.reverse_transfer and sandbox.status == "succeeded"


def test_COR_1_full_refund_of_a_paid_out_charge(agency, admin):
    client = _client(agency)
    for day in (JAN1, date(2027, 1, 4), date(2027, 1, 5), date(2027, 1, 6)):
        run_day(agency, day)
    with tenant_context(agency):
        assert Charge.objects.get(client=client).status == ChargeStatus.PAID_OUT
        positions = list(_invoice(client).lines.values_list("position", flat=True))
    note = _issue(agency, admin, client, date(2027, 1, 7), line_positions=positions, outcome=CreditOutcome.REFUND)
    with tenant_context(agency):
        assert note.amount_minor == 10_000
        assert Refund.objects.get(credit_note=note).status == RefundStatus.SUCCEEDED
        assert Charge.objects.get(client=client).status == ChargeStatus.PAID_OUT
        assert client_balance(client) == 0
        # Nothing is left to credit nor to refund: the next attempt is refused and changes nothing.
        with pytest.raises(CreditAboveRemaining):
            credit_note_issue(
                invoice=_invoice(client),
                user=admin,
                reason="again",
                today=date(2027, 1, 7),
                amount_minor=1,
                outcome=CreditOutcome.CREDIT,
            )
        assert CreditNote.objects.count() == 1
    assert SandboxRefund.objects.get().amount_minor == 10_000


def test_COR_1_repeated_partial_credits_are_capped_at_what_was_invoiced(agency, admin):
    client = _client(agency)
    run_day(agency, JAN1)
    first = _issue(agency, admin, client, date(2027, 1, 4), amount_minor=4_000, outcome=CreditOutcome.CREDIT)
    second = _issue(agency, admin, client, date(2027, 1, 5), amount_minor=4_000, outcome=CreditOutcome.REFUND)
    with tenant_context(agency):
        entries_before = _entries(client)
        with pytest.raises(CreditAboveRemaining) as refused:
            credit_note_issue(
                invoice=_invoice(client),
                user=admin,
                reason="a third",
                today=date(2027, 1, 6),
                amount_minor=2_001,
                outcome=CreditOutcome.CREDIT,
            )
        assert refused.value.fields == {"amount_minor": ["More than remains to credit: at most 20.00 USD."]}
        assert _entries(client) == entries_before and CreditNote.objects.count() == 2  # nothing changed
        # The refund may return only what was paid and not yet refunded: 10,000 − 4,000 refunded.
        last = credit_note_issue(
            invoice=_invoice(client),
            user=admin,
            reason="the rest",
            today=date(2027, 1, 6),
            amount_minor=2_000,
            outcome=CreditOutcome.REFUND,
        )
        # Gap-free numbers of the agency's own sequence.
        assert [first.number, second.number, last.number] == ["CN-ALPHA-000001", "CN-ALPHA-000002", "CN-ALPHA-000003"]
        # The database refuses more than the line billed, whatever the code path (a trigger).
        line = _invoice(client).lines.get(position=1)
        with pytest.raises(DatabaseError), transaction.atomic():
            CreditNoteLine.objects.create(
                credit_note=last, position=9, invoice_line=line, category="LICENSE", description="x", amount_minor=1
            )


def test_COR_1_a_refund_of_an_unpaid_charge_is_refused_and_changes_nothing(agency, admin):
    client = _client(agency, token="pm_card_visa_chargeDeclined")
    run_day(agency, JAN1)
    with tenant_context(agency):
        assert Charge.objects.get(client=client).status == ChargeStatus.RETRYING
        before = _entries(client)
        with pytest.raises(NothingToRefund) as refused:
            credit_note_issue(
                invoice=_invoice(client),
                user=admin,
                reason="refund please",
                today=date(2027, 1, 4),
                amount_minor=1_000,
                outcome=CreditOutcome.REFUND,
            )
        assert refused.value.fields == {
            "outcome": ["Nothing paid on this invoice is left to refund: keep it as credit instead."]
        }
        assert _entries(client) == before
        assert not CreditNote.objects.exists() and not Refund.objects.exists()
        assert not AuditEntry.objects.filter(action="credit_note.issue").exists()


def test_COR_1_credit_on_an_unpaid_invoice_reduces_what_its_charge_collects(agency, admin):
    client = _client(agency, token="pm_card_visa_chargeDeclined")
    run_day(agency, JAN1)
    _issue(agency, admin, client, date(2027, 1, 4), amount_minor=2_500, outcome=CreditOutcome.CREDIT)
    with tenant_context(agency):
        charge = Charge.objects.get(client=client)
        assert charge.status == ChargeStatus.RETRYING and charge.amount_minor == 7_500
        event = ChargeEvent.objects.filter(charge=charge).latest("id")
        assert event.reason == "Credit note CN-ALPHA-000001: 100.00 → 75.00 to collect"
        assert client_balance(client) == 7_500


def test_COR_1_credit_kept_on_the_account_reduces_the_next_charge(agency, admin):
    client = _client(agency)
    run_day(agency, JAN1)
    _issue(agency, admin, client, date(2027, 1, 10), amount_minor=3_000, outcome=CreditOutcome.CREDIT)
    with tenant_context(agency):
        assert client_balance(client) == -3_000  # credit on the account
    run_day(agency, FEB1)
    with tenant_context(agency):
        february = _invoice(client, FEB1)
        assert (february.total_minor, february.credit_applied_minor) == (10_000, 3_000)  # the invoice is unchanged
        charge = Charge.objects.get(invoice=february)
        assert charge.amount_minor == 7_000 and charge.status == ChargeStatus.PAID
        assert client_balance(client) == 0
    # the processor was asked for 7,000 only
    from billing.platform.models import SandboxPaymentIntent

    assert sorted(SandboxPaymentIntent.objects.values_list("amount_minor", flat=True)) == [7_000, 10_000]


def test_COR_1_credit_larger_than_the_next_invoice_carries_over(agency, admin):
    client = _client(agency, price=2_000)
    run_day(agency, JAN1)
    _issue(agency, admin, client, date(2027, 1, 10), amount_minor=2_000, outcome=CreditOutcome.CREDIT)
    with tenant_context(agency):
        client.license_price_minor = 1_500
        client.save(update_fields=["license_price_minor"])
    run_day(agency, FEB1)
    with tenant_context(agency):
        february = _invoice(client, FEB1)
        assert february.credit_applied_minor == 1_500
        charge = Charge.objects.get(invoice=february)
        assert (charge.amount_minor, charge.status) == (0, ChargeStatus.PAID)
        assert client_balance(client) == -500


def test_COR_1_bank_debit_refund_is_pending_until_it_settles(agency, admin):
    client = _client(agency, token="sepa:DE89370400440532013000")
    for day in (JAN1, date(2027, 1, 4), date(2027, 1, 5)):
        run_day(agency, day)
    note = _issue(agency, admin, client, date(2027, 1, 5), amount_minor=4_000, outcome=CreditOutcome.REFUND)
    with tenant_context(agency):
        assert Refund.objects.get(credit_note=note).status == RefundStatus.PENDING
    run_day(agency, date(2027, 1, 6))
    with tenant_context(agency):
        assert Refund.objects.get(credit_note=note).status == RefundStatus.PENDING
    run_day(agency, date(2027, 1, 7))
    with tenant_context(agency):
        refund = Refund.objects.get(credit_note=note)
        assert refund.status == RefundStatus.SUCCEEDED and refund.settled_on == date(2027, 1, 7)
        assert client_balance(client) == 0


def test_COR_1_a_failed_refund_is_kept_as_credit_and_the_agency_told(agency, admin):
    client = _client(agency, token="pm_card_refundFail")
    run_day(agency, JAN1)
    note = _issue(agency, admin, client, date(2027, 1, 4), amount_minor=1_000, outcome=CreditOutcome.REFUND)
    run_day(agency, date(2027, 1, 5))
    run_day(agency, date(2027, 1, 6))
    with tenant_context(agency):
        refund = Refund.objects.get(credit_note=note)
        assert (refund.status, refund.failure_reason) == (RefundStatus.FAILED, "expired_or_canceled_card")
        assert client_balance(client) == -1_000
        told = Notice.objects.filter(kind=NoticeKind.AGENCY_REFUND_FAILED, to_email="billing@alpha.example")
        assert told.count() == 1
    run_day(agency, FEB1)
    with tenant_context(agency):
        assert Charge.objects.get(invoice=_invoice(client, FEB1)).amount_minor == 9_000


def test_COR_1_ROLE_1_only_roles_that_edit_client_configuration_issue_credit_notes(agency):
    client = _client(agency)
    run_day(agency, JAN1)
    marketing = make_user(agency, "mm@alpha.example", Role.MARKETING_MANAGER)
    manager = make_user(agency, "sm@alpha.example", Role.SALES_MANAGER)
    with pytest.raises(PermissionDenied):
        _issue(agency, marketing, client, date(2027, 1, 4), amount_minor=100, outcome=CreditOutcome.CREDIT)
    note = _issue(agency, manager, client, date(2027, 1, 4), amount_minor=100, outcome=CreditOutcome.CREDIT)
    assert note.issued_by == "sm@alpha.example"
