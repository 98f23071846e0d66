"""R8 — amounts out of bounds (MON-1, CYC-3, NOT-7): one client's amounts never stop an agency's billing.

Each input amount is bounded (2^53 − 1), their sums were not: a client with a 2^53 − 1 license, 50 taxes at 100 %
and 24 service lines of 2^53 − 1, or 7 usage records of 2^53 − 1 units, overflowed bigint in the batch COPY, failed
the whole batch and, through the clock, every later day of the agency.

Here two agencies get the same book of ordinary clients (agencybilling/seed.py); one of them also gets that
poisoned client. First through the API, as an integrator would try it: every poisoned configuration and the usage
burst are refused with 400 and change no row. Then the same client written straight into the database (what a
configuration made before the bounds, or a lowered ceiling, leaves behind), and a month of the real day pipeline
(`billing.day` through `seed.run_days`) on both agencies: the ordinary clients of the poisoned agency are invoiced,
charged, retried and notified exactly as the clean agency's, on the same days; the poisoned client and the
poisoned agency invoice are held with their reason, checked again every day, and never charged.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django_tenants.utils import schema_context, tenant_context
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.models import Role
from agencybilling import seed
from billing.invoicing import billing_run
from billing.models import AgencyDayStep, Charge, ChargeAttempt, DayStep, Invoice, InvoiceHold, StepStatus, UsageRecord
from billing.platform.models import AgencyInvoice, SandboxPaymentIntent
from billing.selectors import needs_attention
from clients.models import AgencyServiceLine, Client, TaxRate
from core.money import DEFAULT_CHARGE_CEILING_MINOR
from notifications.models import Notice
from tests.api.bodies import table_digests
from tests.api.conftest import authed
from tests.billing_helpers import with_plan
from tests.reliability.harness import record_figures, size

pytestmark = pytest.mark.django_db(transaction=True)
FIGURES: Counter = Counter()

D = date
MAX = 2**53 - 1
ORDINARY = size(ci=10, full=120)
FIRST, LAST = D(2026, 12, 20), D(2027, 1, 20)
BILLING_DATE = D(2027, 1, 1)
OUTCOMES = [
    seed.Outcome.PAYING,
    seed.Outcome.DECLINING,
    seed.Outcome.PAYING,
    seed.Outcome.INSUFFICIENT_FUNDS,
    seed.Outcome.BANK_DEBIT,
    seed.Outcome.NO_METHOD,
]


def _book(agency, *, count: int) -> None:
    """The agency's ordinary clients, the same in both agencies (names, amounts, taxes, payment outcomes)."""
    with_plan(agency)
    with tenant_context(agency):
        state = TaxRate.objects.create(name="State tax", rate_percent=Decimal("8.25"))
        for n in range(count):
            seed.client(
                name=f"Client {n:03d}",
                email=f"c{n:03d}@client.test",
                activated_on=D(2026, 12, 1),
                license_price_minor=9900 + 100 * n,
                outcome=OUTCOMES[n % len(OUTCOMES)],
                method_tag=f"{agency.schema_name}-{n}",
                services=[("SEO retainer", 25000)] if n % 2 else [],
                taxes=[state],
            )


def _poison(agency) -> Client:
    """The poisoned client of the review, written as a configuration made before the bounds leaves it."""
    with tenant_context(agency):
        bomb = Client.objects.create(
            name="Gamma Bomb", email="bomb@client.test", activated_on=D(2026, 12, 1), license_price_minor=MAX
        )
        bomb.taxes.set(
            TaxRate.objects.bulk_create([TaxRate(name=f"Tax {n}", rate_percent=Decimal(100)) for n in range(50)])
        )
        AgencyServiceLine.objects.bulk_create(
            [AgencyServiceLine(client=bomb, description=f"Service {n}", amount_minor=MAX) for n in range(24)]
        )
        UsageRecord.objects.bulk_create(
            [
                UsageRecord(
                    client=bomb,
                    product_code="reviews",
                    quantity=MAX,
                    occurred_at=datetime(2026, 12, 15, 12, tzinfo=UTC),
                    idempotency_key=f"bomb-{n}",
                )
                for n in range(7)
            ]
        )
        from billing.payment_methods import payment_method_attach

        payment_method_attach(client=bomb, token="pm_card_visa:bomb")
    return bomb


def _api_refusals(agency) -> dict:
    """Every poisoned configuration tried through the API: 400, the error shape, no row changed."""
    http = authed(agency, f"admin@{agency.schema_name}.test", Role.ADMINISTRATOR)
    with schema_context(agency.schema_name):
        victim = Client.objects.get(name="Client 001")
    taxes = [
        http.post("/api/v1/tax-rates/", {"name": f"Full {n}", "rate_percent": "100"}, format="json") for n in range(50)
    ]
    assert {r.status_code for r in taxes} == {201}, "a tax at 100 % is a legal configuration on its own"
    tax_ids = [r.json()["id"] for r in taxes]
    tries = [
        ("POST", "/api/v1/clients/", {"name": "Bomb", "email": "b@x.test", "license_price_minor": MAX}),
        (
            "POST",
            "/api/v1/clients/",
            {"name": "Bomb", "email": "b@x.test", "license_price_minor": 2_000_000, "taxes": tax_ids},
        ),
        ("PATCH", f"/api/v1/clients/{victim.public_id}/", {"license_price_minor": MAX}),
        ("PATCH", f"/api/v1/clients/{victim.public_id}/", {"license_price_minor": 50_000_000, "taxes": tax_ids[:1]}),
        ("PATCH", f"/api/v1/clients/{victim.public_id}/", {"license_price_minor": 2_000_000, "taxes": tax_ids}),
        ("POST", f"/api/v1/clients/{victim.public_id}/service-lines/", {"description": "Big", "amount_minor": MAX}),
        (
            "POST",
            "/api/v1/usage-records/",
            {
                "records": [
                    {
                        "client": str(victim.public_id),
                        "product_code": "reviews",
                        "quantity": MAX,
                        "occurred_at": "2026-12-02T12:00:00Z",
                        "idempotency_key": f"burst-{n}",
                    }
                    for n in range(7)
                ]
            },
        ),
        (
            "POST",
            "/api/v1/usage-records/",
            {
                "records": [
                    {
                        "product_code": "reviews",
                        "quantity": 1_000_000_000,
                        "occurred_at": "2026-12-02T12:00:00Z",
                        "idempotency_key": "agency-burst",
                    }
                ]
            },
        ),
    ]
    statuses = []
    for method, path, body in tries:
        before = table_digests("public", agency.schema_name)
        response = getattr(http, method.lower())(path, body, format="json")
        statuses.append(response.status_code)
        assert response.status_code == 400, (path, body, response.content)
        error = response.json()
        assert set(error) == {"code", "message", "fields"} and error["fields"], error
        assert "one charge may carry" in str(error["fields"]), error
        assert table_digests("public", agency.schema_name) == before, f"{method} {path} changed rows"
    return {"api_refusals": len(tries), "api_statuses": sorted(set(statuses))}


def _history(agency) -> dict:
    """Every ordinary client's invoices, charges, attempts and notices, by client name (comparable across agencies)."""
    with schema_context(agency.schema_name):
        clients = Client.objects.exclude(name="Gamma Bomb")
        return {
            c.name: {
                "invoices": list(
                    Invoice.objects.filter(client=c).order_by("period_start").values_list("period_start", "total_minor")
                ),
                "charges": list(
                    Charge.objects.filter(client=c)
                    .order_by("due_on", "installment")
                    .values_list("due_on", "amount_minor", "status", "next_retry_on")
                ),
                "attempts": list(
                    ChargeAttempt.objects.filter(charge__client=c)
                    .order_by("attempted_on", "number")
                    .values_list("attempted_on", "outcome", "amount_minor")
                ),
                "notices": list(
                    Notice.objects.filter(to_email=c.email)
                    .order_by("business_date", "kind", "number")
                    .values_list("kind", "number", "business_date", "status")
                ),
            }
            for c in clients
        }


def test_R8_MON_1_one_poisoned_client_never_stops_the_agency_through_a_month(
    agency_a, agency_b, smtp_server, eager_tasks, caplog
):
    poisoned, clean = agency_a, agency_b
    for agency in (poisoned, clean):
        agency.email = f"billing@{agency.schema_name}.test"
        agency.save(update_fields=["email"])
        _book(agency, count=ORDINARY)
    figures = _api_refusals(poisoned)
    with schema_context(poisoned.schema_name):
        TaxRate.objects.filter(name__startswith="Full ").delete()
    bomb = _poison(poisoned)

    caplog.set_level(logging.ERROR, logger="billing.holds")
    for day in seed.days(FIRST, LAST):
        for agency in (poisoned, clean):
            seed.run_days(agency, [day])

    # Every step of every day of both agencies done: nothing failed, nothing stopped.
    for agency in (poisoned, clean):
        with schema_context(agency.schema_name):
            steps = AgencyDayStep.objects.values_list("status", flat=True)
            assert set(steps) == {StepStatus.DONE} and len(steps) == len(DayStep) * len(seed.days(FIRST, LAST))

    # The ordinary clients of the poisoned agency: exactly what the clean agency's got, on the same days.
    history = _history(poisoned)
    assert history == _history(clean)
    assert len(history) == ORDINARY
    billed = sum(1 for h in history.values() if h["invoices"])
    assert billed == ORDINARY
    paid = sum(1 for h in history.values() for c in h["charges"] if c[2] == "PAID")
    assert paid >= ORDINARY // 3
    sent = sum(1 for h in history.values() for n in h["notices"] if n[3] == "SENT")
    assert sent >= 4 * ORDINARY  # statements, payment notices, payment outcomes
    received = [m["To"] for m in smtp_server.messages]
    for name, h in history.items():
        email = f"c{name[-3:]}@client.test"
        assert received.count(email) == 2 * len(h["notices"]), name  # one mail per agency, same notices

    # The poisoned client: held with its reason, checked every later day, never invoiced, never charged.
    with schema_context(poisoned.schema_name):
        hold = InvoiceHold.objects.get(client=bomb)
        assert hold.billing_date == BILLING_DATE and hold.released_on is None
        assert "one charge may carry" in hold.reason
        assert hold.checks == (LAST - BILLING_DATE).days + 1
        assert not Invoice.objects.filter(client=bomb).exists()
        agency_hold = InvoiceHold.objects.get(client__isnull=True)
        assert agency_hold.billing_date == BILLING_DATE and "can carry" in agency_hold.reason
        attention = needs_attention()
        assert {item["kind"] for item in attention} == {"Invoice held"} and len(attention) == 2
    assert not SandboxPaymentIntent.objects.filter(amount_minor__gt=DEFAULT_CHARGE_CEILING_MINOR).exists()
    assert not AgencyInvoice.objects.filter(agency=poisoned).exists()
    assert AgencyInvoice.objects.filter(agency=clean, period_start=D(2026, 12, 1)).count() == 1
    assert any("invoice held" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)

    # Fixed by the agency: the next billing run builds the held invoice, its number the next one in sequence.
    with tenant_context(poisoned):
        AgencyServiceLine.objects.filter(client=bomb).delete()
        bomb.taxes.clear()
        Client.objects.filter(pk=bomb.pk).update(license_price_minor=19900)
        UsageRecord.objects.filter(client=bomb).delete()
    next_day = D(2027, 1, 21)
    result = billing_run(agency=poisoned, today=next_day)
    assert result.holds_released == 2 and result.invoices_held == 0
    with schema_context(poisoned.schema_name):
        invoice = Invoice.objects.get(client=bomb)
        assert invoice.period_start == BILLING_DATE and invoice.total_minor == 19900
        assert invoice.number == f"{poisoned.invoice_prefix}-{ORDINARY + 1:06d}"
        assert InvoiceHold.objects.get(client=bomb).invoice_number == invoice.number
    record_figures(
        "R8",
        {
            **figures,
            "ordinary_clients_per_agency": ORDINARY,
            "days": len(seed.days(FIRST, LAST)),
            "agency_days_run": 2 * len(seed.days(FIRST, LAST)),
            "day_steps_failed": 0,
            "agencies_blocked": 0,
            "ordinary_clients_differing_from_clean_agency": 0,
            "ordinary_invoices": billed,
            "ordinary_charges_paid": paid,
            "notices_sent_per_agency": sent,
            "holds": 2,
            "hold_checks": hold.checks,
            "payment_intents_above_ceiling": 0,
        },
    )


def test_R8_MON_1_a_batch_that_fails_to_be_written_is_billed_account_by_account(agency_a, caplog):
    """With a ceiling set far too high (a misconfiguration), the drafting bound lets the poisoned invoice through and
    PostgreSQL's bigint refuses it in the batch COPY: the batch is written again one account per transaction, the
    account that still fails is held with the database's error, every other account is billed."""
    _book(agency_a, count=ORDINARY)
    bomb = _poison(agency_a)
    with schema_context(agency_a.schema_name):
        UsageRecord.objects.filter(client=bomb).delete()  # its quantities are bounded whatever the ceiling
    with override_settings(CHARGE_CEILING_MINOR=10**30):
        result = billing_run(agency=agency_a, today=BILLING_DATE)
    assert result.batches_split == 1
    assert result.invoices_built == ORDINARY and result.invoices_held == 1
    with schema_context(agency_a.schema_name):
        hold = InvoiceHold.objects.get(client=bomb)
        assert "out of range for type bigint" in hold.reason
        numbers = sorted(Invoice.objects.values_list("number", flat=True))
        assert numbers == [f"{agency_a.invoice_prefix}-{n:06d}" for n in range(1, ORDINARY + 1)]  # gap-free (INV-1)
    assert connection.schema_name == "public"


def test_R8_CYC_5_a_day_step_that_keeps_failing_is_given_up_and_the_clock_goes_on(agency_a, eager_tasks, caplog):
    """A fault of the data, not of the services (here a constraint that refuses every attempt of 2027-01-01, as a
    corrupted row or a bug would): the collection step of that day fails on three ticks of the clock and is then
    given up — FAILED with its error, logged as an error, listed for billing support — and the day's other steps
    and the next days run. The next day's collection takes the charges the failed step left; once the fault is
    gone, `run_day` runs the failed step again."""
    from django.core.management import call_command

    from billing.clock import agency_days_run
    from tenants.models import Agency

    _book(agency_a, count=ORDINARY)
    Agency.objects.filter(pk=agency_a.pk).update(clock_date=D(2026, 12, 31))
    agency_a.refresh_from_db()
    table = f'"{agency_a.schema_name}"."{ChargeAttempt._meta.db_table}"'
    with connection.cursor() as cursor:
        cursor.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT r8_fault CHECK (attempted_on <> DATE '2027-01-01') NOT VALID"
        )
    try:  # the injected fault must not outlive this test, whatever fails: the schema is shared by later tests
        caplog.set_level(logging.WARNING, logger="billing.day")
        until = D(2027, 1, 3)
        for tick in (1, 2):
            with pytest.raises(Exception, match="r8_fault"):
                agency_days_run(agency=agency_a, until=until)
            agency_a.refresh_from_db()
            assert agency_a.clock_date == D(2026, 12, 31), f"tick {tick}: the day is run again, not skipped yet"
        assert agency_days_run(agency=agency_a, until=until) == [D(2027, 1, 1), D(2027, 1, 2), D(2027, 1, 3)]
        agency_a.refresh_from_db()
        assert agency_a.clock_date == until
        with schema_context(agency_a.schema_name):
            steps = {(s.day.day, s.step): s for s in AgencyDayStep.objects.select_related("day")}
            failed = steps[(D(2027, 1, 1), DayStep.COLLECTION)]
            assert failed.status == StepStatus.FAILED and failed.failures == 3 and "r8_fault" in failed.error
            others = [s for key, s in steps.items() if key != (D(2027, 1, 1), DayStep.COLLECTION)]
            assert {s.status for s in others} == {StepStatus.DONE} and len(others) == 3 * len(DayStep) - 1
            # The next day's collection took what the failed step left: every collectible charge was attempted.
            assert not Charge.objects.filter(status="SCHEDULED", due_on__lte=until).exists()
            assert ChargeAttempt.objects.filter(attempted_on=D(2027, 1, 2)).count() > 0
            attention = [item for item in needs_attention() if item["kind"] == "Day step failed"]
            assert len(attention) == 1 and "failed 3 times" in attention[0]["what"]
        assert any("given up" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS r8_fault")
    call_command("run_day", "--date", "2027-01-01", "--agency", agency_a.schema_name, stdout=io.StringIO())
    with schema_context(agency_a.schema_name):
        assert AgencyDayStep.objects.get(day__day=D(2027, 1, 1), step=DayStep.COLLECTION).status == StepStatus.DONE
        assert not [item for item in needs_attention() if item["kind"] == "Day step failed"]


def test_R8_MON_1_a_charge_above_the_ceiling_is_held_never_sent(agency_a):
    """Invoices built under a ceiling set too high (or before the bound existed), then the ceiling back at the
    processor's: the charge above it is never sent to the processor — held as Uncollectable with the reason, for
    billing support — and the sandbox itself refuses such an amount, as Stripe does (`amount_too_large`)."""
    from billing.collection import collect_due
    from billing.models import ChargeEvent
    from billing.providers import get_provider
    from billing.providers.base import ChargeRequest, Outcome

    with_plan(agency_a)
    with tenant_context(agency_a), override_settings(CHARGE_CEILING_MINOR=10**12):
        big = seed.client(
            name="Big Account",
            email="big@client.test",
            activated_on=D(2026, 12, 1),
            license_price_minor=150_000_000,
            outcome=seed.Outcome.PAYING,
            method_tag="r8-big",
        )
        small = seed.client(
            name="Small Account",
            email="small@client.test",
            activated_on=D(2026, 12, 1),
            license_price_minor=9900,
            outcome=seed.Outcome.PAYING,
            method_tag="r8-small",
        )
    with override_settings(CHARGE_CEILING_MINOR=10**12):
        billing_run(agency=agency_a, today=BILLING_DATE)
    with tenant_context(agency_a):
        summary = collect_due(today=BILLING_DATE)
        held = Charge.objects.get(client=big)
        assert held.status == "UNCOLLECTABLE" and held.amount_minor == 150_000_000
        assert not ChargeAttempt.objects.filter(charge=held).exists()
        event = ChargeEvent.objects.filter(charge=held).latest("id")
        assert "one charge may carry" in event.reason and "not sent to the processor" in event.reason
        assert Charge.objects.get(client=small).status == "PAID"
        assert summary.attempted == 1
    assert not SandboxPaymentIntent.objects.filter(amount_minor__gt=DEFAULT_CHARGE_CEILING_MINOR).exists()
    refused = get_provider().charge_create(
        ChargeRequest(
            amount_minor=100_000_000,
            currency="USD",
            customer="cus_x",
            payment_method="pm_x",
            idempotency_key="r8-direct",
            business_date=BILLING_DATE,
        )
    )
    assert refused.outcome == Outcome.DECLINED and refused.decline_code == "amount_too_large"


# --- fuzz: the configuration bound and the invoice agree, and the API never answers 5xx --------------------------

_amounts = st.one_of(st.integers(0, 10**6), st.integers(0, 10**9), st.integers(0, MAX), st.sampled_from([0, MAX]))
_rates = st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False)


class _Rollback(Exception):
    pass


def test_R8_MON_1_fuzz_the_configuration_bound_is_the_invoice_the_run_would_build(agency_a):
    """Hypothesis: any configuration (license, service lines taxable or not, one-time or not, taxes of any rate)
    made under an unbounded ceiling; the total the configuration check computes (clients.services) equals the total
    of the invoice the billing run would draft for it (billing.drafting, through `invoice_preview`)."""
    from billing.invoicing import invoice_preview
    from clients.services import configured_invoice_totals, service_line_add

    with_plan(agency_a)

    @hypothesis_settings(
        max_examples=size(ci=60, full=1000),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        price=_amounts,
        services=st.lists(st.tuples(_amounts, st.booleans(), st.booleans()), max_size=5),
        rates=st.lists(_rates, max_size=6),
    )
    def check(price, services, rates):
        FIGURES["configurations"] += 1
        try:
            with override_settings(CHARGE_CEILING_MINOR=10**40), tenant_context(agency_a), transaction.atomic():
                taxes = [TaxRate.objects.create(name=f"T{n}", rate_percent=rate) for n, rate in enumerate(rates)]
                client = seed.client(
                    name="Fuzz",
                    email="f@client.test",
                    activated_on=D(2026, 12, 1),
                    license_price_minor=price,
                    taxes=taxes,
                )
                for amount, taxable, one_time in services:
                    service_line_add(
                        client=client, description="S", amount_minor=amount, one_time=one_time, taxable=taxable
                    )
                drafted = invoice_preview(agency=agency_a, client=client, billing_date=BILLING_DATE).total_minor
                assert configured_invoice_totals([client.pk]) == {client.pk: drafted}
                raise _Rollback
        except _Rollback:
            pass

    check()


def test_R8_MON_1_fuzz_configuration_through_the_api(agency_a):
    """Hypothesis over the API's configuration writes with amounts up to 2^53 − 1 and taxes up to 100 %: never a 5xx;
    a refusal is 400 with the error shape and changes no row; whatever is accepted leaves every client's invoice
    within the ceiling."""
    from clients.services import configured_invoice_totals
    from core.money import charge_ceiling_minor

    with_plan(agency_a)
    http = authed(agency_a, "fuzz-admin@alpha.test", Role.ADMINISTRATOR)
    taxes = [
        http.post("/api/v1/tax-rates/", {"name": f"Rate {n}", "rate_percent": rate}, format="json").json()["id"]
        for n, rate in enumerate(["0", "8.875", "25", "100"])
    ]
    made = http.post("/api/v1/clients/", {"name": "Fuzzed", "email": "fz@client.test"}, format="json")
    client_id = made.json()["id"]

    operation = st.one_of(
        st.builds(
            lambda a, t: ("PATCH", f"/api/v1/clients/{client_id}/", {"license_price_minor": a, "taxes": t}),
            _amounts,
            st.lists(st.sampled_from(taxes), unique=True),
        ),
        st.builds(
            lambda a, x: (
                "POST",
                f"/api/v1/clients/{client_id}/service-lines/",
                {"description": "S", "amount_minor": a, "taxable": x},
            ),
            _amounts,
            st.booleans(),
        ),
        st.builds(
            lambda a: (
                "POST",
                "/api/v1/clients/",
                {"name": "N", "email": "n@client.test", "license_price_minor": a, "taxes": taxes},
            ),
            _amounts,
        ),
    )

    @hypothesis_settings(
        max_examples=size(ci=80, full=2000),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(op=operation)
    def post(op):
        method, path, body = op
        FIGURES["api_requests"] += 1
        before = table_digests(agency_a.schema_name)
        response = getattr(http, method.lower())(path, body, format="json")
        assert response.status_code < 500, (op, response.content)
        if response.status_code >= 400:
            FIGURES["api_refused"] += 1
            assert set(response.json()) == {"code", "message", "fields"}
            assert table_digests(agency_a.schema_name) == before, op
        with schema_context(agency_a.schema_name):
            totals = configured_invoice_totals(list(Client.objects.values_list("pk", flat=True)))
        assert max(totals.values()) <= charge_ceiling_minor(), op

    post()
    record_figures(
        "R8-fuzz",
        {
            "configurations_compared_with_the_draft": FIGURES["configurations"],
            "api_requests": FIGURES["api_requests"],
            "api_refused_400": FIGURES["api_refused"],
            "responses_5xx": 0,
            "rows_changed_by_refused_input": 0,
            "clients_above_the_ceiling": 0,
        },
    )
