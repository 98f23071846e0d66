"""The client portal over real PostgreSQL (POR-1): balance due, invoice history, each charge in plain words, Pay now
as an attempt with RET-4's bookkeeping and exactly once (a double click, a concurrent automatic retry), the offer to
pay after replacing the payment method, and 404 for anyone else's charge (TEN-2)."""

from __future__ import annotations

import html as html_lib
import re
import threading
from datetime import date

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from accounts.models import AuditEntry, Role
from billing.attempts import charge_attempt
from billing.corrections import credit_note_issue
from billing.models import Charge
from billing.pay_now import charge_pay_now
from billing.payment_methods import payment_method_attach
from billing.statuses import AttemptKind, AttemptOutcome, ChargeStatus
from clients.models import Client, ClientUser
from notifications.catalog import NoticeKind
from notifications.models import Notice
from tenants.models import Agency
from tests.conftest import login_client, make_user
from tests.ui_helpers import billed_agency

FEB = date(2027, 2, 1)


def _client_user(agency, client, email):
    user = make_user(agency, email, Role.CLIENT)
    with schema_context(agency.schema_name):
        ClientUser.objects.create(user=user, client=Client.objects.get(pk=client.pk))
    return user


def _feb_charge(client) -> Charge:
    return Charge.objects.select_related("invoice").get(client=client, due_on=FEB)


def _pay_key(html: str) -> str:
    return re.search(r'name="request_key" value="([0-9a-f]{32})"', html).group(1)


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ", html)))


@pytest.fixture
def scenario(agency_a):
    scenario = billed_agency(agency_a)
    Agency.objects.filter(pk=agency_a.pk).update(clock_date=FEB)  # the pages' business day
    _client_user(agency_a, scenario.declining, "owner@declining.example")
    _client_user(agency_a, scenario.paying, "owner@paying.example")
    return scenario


@pytest.mark.django_db
def test_POR_1_declined_client_reads_plain_words_balance_and_history(scenario):
    http = login_client(scenario.agency, "owner@declining.example")
    html = http.get("/portal/").content.decode()
    text = _text(html)
    # Two failed charges: February's is retried on the 5th weekday after its billing date (RET-2); January's, whose
    # second attempt was caught up on 1 Feb after both its retry dates had passed, on the next weekday.
    assert "Unpaid Payment failed — we'll try again on 8 Feb." in text
    assert "Unpaid Payment failed — we'll try again on 2 Feb." in text
    assert "Your card was declined." in text and "card_declined" not in html
    with schema_context("alpha"):
        open_total = sum(c.amount_minor for c in Charge.objects.filter(client=scenario.declining))
        invoices = list(scenario.declining.invoices.order_by("-period_start").values_list("number", flat=True))
    assert open_total == 2 * 9900
    assert re.search(r'data-testid="balance-due">198\.00 USD<', html)
    assert "Needs your attention" in text and text.count("Pay now 99.00 USD") == 2
    history = re.findall(r'data-testid="history-row">\s*<td><a href="\?month=[0-9-]+">([^<]+)</a>', html)
    assert history == invoices


@pytest.mark.django_db
def test_POR_1_paid_out_reads_as_paid_with_the_card(scenario):
    with schema_context("alpha"):
        charge = _feb_charge(scenario.paying)
        Charge.objects.filter(pk=charge.pk).update(status=ChargeStatus.PAID_OUT)
    html = login_client(scenario.agency, "owner@paying.example").get("/portal/?month=2027-02").content.decode()
    text = _text(html)
    assert "Paid Out" not in text and "Paid out" not in text
    assert "Paid on 1 Feb with Visa ···· 4242." in text
    assert "Needs your attention" not in text and "Nothing to pay." in text


@pytest.mark.django_db
def test_POR_1_pay_now_after_replacing_the_card_pays_with_full_bookkeeping(scenario):
    http = login_client(scenario.agency, "owner@declining.example")
    with schema_context("alpha"):
        jan = Charge.objects.get(client=scenario.declining, due_on=date(2027, 1, 1))
    # Replacing the declined card while a charge is open offers to pay it at once.
    saved = http.post("/portal/payment-method/", {"method": "pm_card_visa"})
    assert saved.status_code == 302 and saved["Location"] == f"/portal/charges/{jan.public_id}/pay/"
    page = http.get(saved["Location"])
    text = _text(page.content.decode())
    assert "you can pay it now" in text and "Visa ···· 4242" in text and "Pay now 99.00 USD" in text
    paid = http.post(saved["Location"], {"request_key": _pay_key(page.content.decode())})
    assert paid.status_code == 302 and paid["Location"] == "/portal/?month=2027-01"
    assert "Thank you — 99.00 USD paid" in _text(http.get(paid["Location"]).content.decode())
    with schema_context("alpha"):
        jan.refresh_from_db()
        assert jan.status == ChargeStatus.PAID and jan.paid_on == FEB
        attempts = list(jan.attempts.order_by("number").values_list("number", "kind", "outcome"))
        assert attempts == [
            (1, AttemptKind.AUTOMATIC, AttemptOutcome.DECLINED),
            (2, AttemptKind.AUTOMATIC, AttemptOutcome.DECLINED),
            (3, AttemptKind.CLIENT, AttemptOutcome.SUCCEEDED),
        ]
        event = jan.events.order_by("-id").first()
        assert (event.to_status, event.actor) == (ChargeStatus.PAID, "owner@declining.example")
        assert Notice.objects.filter(
            kind=NoticeKind.PAYMENT_RECEIVED, account=str(scenario.declining.public_id), number=3
        ).exists()
        assert AuditEntry.objects.filter(action="charge.pay_now", object_id=str(jan.public_id)).count() == 1
        assert scenario.declining.ledger_entries.filter(entry_type="PAYMENT").count() == 1


@pytest.mark.django_db
def test_POR_1_the_same_pay_now_form_sent_twice_makes_one_attempt(scenario):
    http = login_client(scenario.agency, "owner@declining.example")
    with schema_context("alpha"):
        charge = _feb_charge(scenario.declining)
    url = f"/portal/charges/{charge.public_id}/pay/"
    key = _pay_key(http.get(url).content.decode())
    first = http.post(url, {"request_key": key})
    second = http.post(url, {"request_key": key})
    assert first.status_code == second.status_code == 302
    with schema_context("alpha"):
        assert charge.attempts.count() == 2  # the autopay attempt and one Pay now
        assert charge.attempts.filter(kind=AttemptKind.CLIENT).count() == 1
    # The second answer repeats the first's outcome (the card still declines) and made nothing new.
    assert "Payment failed: Your card was declined." in _text(http.get(second["Location"]).content.decode())
    # A fresh form is a new request: a new attempt.
    assert http.post(url, {"request_key": _pay_key(http.get(url).content.decode())}).status_code == 302
    with schema_context("alpha"):
        assert charge.attempts.filter(kind=AttemptKind.CLIENT).count() == 2


@pytest.mark.django_db
def test_TEN_2_POR_1_another_clients_charge_is_404(scenario, agency_b):
    with schema_context("alpha"):
        theirs = _feb_charge(scenario.declining)
    other = login_client(scenario.agency, "owner@paying.example")
    url = f"/portal/charges/{theirs.public_id}/pay/"
    assert other.get(url).status_code == 404
    assert other.post(url, {"request_key": "a" * 32}).status_code == 404
    with schema_context("alpha"):
        assert theirs.attempts.count() == 1
    make_user(agency_b, "owner@declining.example", Role.CLIENT)  # the same address on agency B
    assert login_client(agency_b, "owner@declining.example").get(url).status_code == 404


@pytest.mark.django_db
def test_POR_1_bad_input_changes_nothing(scenario):
    http = login_client(scenario.agency, "owner@declining.example")
    with schema_context("alpha"):
        charge = _feb_charge(scenario.declining)
        paid = _feb_charge(scenario.paying)
    url = f"/portal/charges/{charge.public_id}/pay/"
    refused = http.post(url, {"request_key": "<script>"}, follow=True)
    assert "The form has expired; reload the page and try again." in refused.content.decode()
    with schema_context("alpha"):
        assert charge.attempts.count() == 1
        # A paid charge cannot be paid again (the service refuses; the page offers no button).
        with pytest.raises(Exception, match="already paid"):
            charge_pay_now(charge=paid, user=scenario.admin, request_key="b" * 32, today=FEB)
        assert paid.attempts.count() == 1


@pytest.mark.django_db(transaction=True)
def test_POR_1_pay_now_and_an_automatic_retry_at_once_make_one_payment(agency_a):
    """Two double-clicked requests and an automatic retry of the same charge, in three threads at once: the
    charge's row lock and the attempt's unique idempotency key let exactly one payment through."""
    scenario = billed_agency(agency_a, months=(FEB,))
    user = _client_user(agency_a, scenario.declining, "owner@declining.example")
    with schema_context("alpha"):
        payment_method_attach(client=scenario.declining, token="pm_card_visa:race")
        charge = _feb_charge(scenario.declining)
    barrier = threading.Barrier(3)
    errors: list[Exception] = []

    def run(work) -> None:
        try:
            with schema_context("alpha"):
                barrier.wait()
                work()
        except Exception as exc:  # noqa: BLE001 - the losers' refusals are collected and checked
            errors.append(exc)
        finally:
            connection.close()

    key = "c" * 32
    threads = [
        threading.Thread(
            target=run, args=(lambda: charge_pay_now(charge=charge, user=user, request_key=key, today=FEB),)
        ),
        threading.Thread(
            target=run, args=(lambda: charge_pay_now(charge=charge, user=user, request_key=key, today=FEB),)
        ),
        threading.Thread(target=run, args=(lambda: charge_attempt(charge, today=date(2027, 2, 8)),)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    with schema_context("alpha"):
        charge.refresh_from_db()
        succeeded = charge.attempts.filter(outcome=AttemptOutcome.SUCCEEDED).count()
        assert charge.status == ChargeStatus.PAID and succeeded == 1
        assert charge.attempts.count() == 2  # the declined autopay attempt and the one that paid
        assert scenario.declining.ledger_entries.filter(entry_type="PAYMENT").count() == 1
        received = Notice.objects.filter(kind=NoticeKind.PAYMENT_RECEIVED, account=str(scenario.declining.public_id))
        assert received.count() == 1
    refusals = ("cannot be collected", "still unknown", "already paid")
    assert all(any(words in str(e) for words in refusals) for e in errors), errors


@pytest.mark.django_db
def test_POR_1_COR_1_the_client_reads_credit_notes_on_the_invoice(scenario):
    with schema_context("alpha"):
        invoice = scenario.paying.invoices.get(period_start=FEB)
        note = credit_note_issue(
            invoice=invoice,
            user=scenario.admin,
            reason="Social media paused for a week",
            outcome="CREDIT",
            today=FEB,
            amount_minor=5000,
        )
    text = _text(login_client(scenario.agency, "owner@paying.example").get("/portal/?month=2027-02").content.decode())
    assert f"{note.number} · 2027-02-01 · 50.00 USD — kept as credit, used by your next invoice." in text
    assert "Social media paused for a week" in text
