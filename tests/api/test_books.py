"""The books through the API (MON-4, COL-6, DUN-1, ROLE-1, PAY-3): a month and a half of clients of every kind —
card, ACH, SEPA, declining, a card replaced after failing, two autopay days, no payment method, Agency Invoiced, a
card whose payments are disputed and lost (COR-2) — with a credit note refunded and one kept as credit (COR-1),
through the real day pipeline (`agencybilling.seed`), then every number read back only through the API.

What is checked against what: each client's balance against its invoices (invoices API), its payments as the
processor saw them (the charges API's successful attempts), and its credits and refunds (ledger API); its ledger
replayed in the order it was written, each payment's allocations against COL-6 (the agency's billing-category order,
oldest first); its overdue state against DUN-1 recomputed from the ledger.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime, timedelta

import pytest
from django_tenants.utils import schema_context, tenant_context

from accounts.models import Role, User
from agencybilling import seed
from billing.corrections import credit_note_issue
from billing.models import BillingSettings, Invoice
from billing.payment_methods import payment_method_attach
from billing.support import agency_invoiced_set
from clients.services import tax_rate_create
from tests.api.conftest import api, token_for
from tests.billing_helpers import at, usage, with_plan
from tests.conftest import ensure_agency, make_user, module_transaction

pytestmark = pytest.mark.django_db

START, REPLACED_ON, CORRECTED_ON, END = date(2026, 12, 1), date(2026, 12, 10), date(2026, 12, 21), date(2027, 2, 12)
# Not the default order, so following it is not an accident (COL-6).
CATEGORY_ORDER = ["TAXES_FEES", "AGENCY_SERVICES", "LICENSE", "OVERAGE", "PRODUCTS", "OTHER"]
GRACE, THRESHOLD = 7, 3000
KINDS = ("card", "ach", "sepa", "declining", "replaced", "twice", "no-method", "invoiced", "disputed")


def _month(agency) -> dict[str, object]:
    """The clients (by kind) after the simulated days; the agency bills on the 1st (America/New_York)."""
    agency = with_plan(agency)
    seed.payouts_ready(agency, today=START)  # the agency's payout account, onboarded: destination charges (PAY-1)
    support = make_user(None, "support-books@platform.test", Role.BILLING_SUPPORT)
    outcomes = {
        "card": seed.Outcome.PAYING,
        "ach": seed.Outcome.ACH_DEBIT,
        "sepa": seed.Outcome.BANK_DEBIT,
        "declining": seed.Outcome.DECLINING,
        "replaced": seed.Outcome.INSUFFICIENT_FUNDS,
        "twice": seed.Outcome.PAYING,
        "no-method": seed.Outcome.NO_METHOD,
        "invoiced": seed.Outcome.PAYING,
        "disputed": "pm_card_createDispute",  # Stripe's test card: paid, then disputed; unanswered, the dispute is lost
    }
    clients = {}
    with tenant_context(agency):
        BillingSettings.objects.filter(singleton=True).update(
            category_order=CATEGORY_ORDER, grace_period_days=GRACE, overdue_threshold_minor=THRESHOLD
        )
        rate = tax_rate_create(name="Sales tax", rate_percent="8.25")
        for n, kind in enumerate(KINDS):
            clients[kind] = seed.client(
                name=f"Books {kind}",
                email=f"{kind}@books.example",
                activated_on=START,
                license_price_minor=10000 + 1000 * n,
                outcome=outcomes[kind],
                method_tag=f"books-{kind}",
                services=[("SEO retainer", 4500), ("Set-up", 20000, True)] if n % 2 else [("Reporting", 2500)],
                taxes=[rate],
                **({"autopay_days": [5, 20]} if kind == "twice" else {}),
            )
        usage(agency, clients["card"], "listings", 180, at(date(2026, 12, 10)), "books-u1")
        usage(agency, clients["twice"], "reviews", 75, at(date(2027, 1, 12)), "books-u2")
        agency_invoiced_set(client=clients["invoiced"], user=support, reason="Pays the agency by wire", today=START)
    seed.run_days(agency, seed.days(START, REPLACED_ON - timedelta(days=1)))
    with tenant_context(agency):
        payment_method_attach(client=clients["replaced"], token="pm_card_mastercard:books-replaced")
    seed.run_days(agency, seed.days(REPLACED_ON, CORRECTED_ON - timedelta(days=1)))
    with tenant_context(agency):
        admin = User.objects.create_user("corrector@books.test", "pw-correct-horse-9", role=Role.ADMINISTRATOR)
        for kind, outcome, amount in (("card", "REFUND", 1500), ("ach", "CREDIT", 2000)):
            credit_note_issue(
                invoice=Invoice.objects.get(client=clients[kind], period_start=START),
                user=admin,
                reason=f"Goodwill for {kind}",
                outcome=outcome,
                today=CORRECTED_ON,
                amount_minor=amount,
            )
    seed.run_days(agency, seed.days(CORRECTED_ON, END))
    # Where `manage.py simulate` leaves the clock: the API's "today" is the agency's last day run, not the wall clock.
    type(agency).objects.filter(pk=agency.pk).update(clock_date=END)
    return clients


@pytest.fixture(scope="module")
def month(django_db_setup, django_db_blocker) -> Iterator[dict]:
    with module_transaction(django_db_blocker):
        with django_db_blocker.unblock():
            agency = ensure_agency("alpha")
            clients = _month(agency)
            secret = token_for(agency, "admin@books.test", Role.ADMINISTRATOR)
        yield {"agency": agency, "clients": clients, "secret": secret}


def _pages(http, path: str) -> list[dict]:
    """Every row of a list, following `next` until it is null."""
    rows, url = [], path
    while url:
        response = http.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        rows += body["results"]
        url = body["next"]
    return rows


def _replay_allocations(ledger: list[dict], category_order: list[str] = CATEGORY_ORDER) -> dict[str, int]:
    """Replay a ledger in the order things happened; check that each payment was applied as COL-6 says: to what is
    owed (charges, refunds, chargebacks) in the agency's category order, oldest first within a category, until it
    is used up. A credit is applied when there is something to apply it to (a credit kept on the account, to the
    next invoice; a refunded one, to its refund): each of its allocations happens when the later of its two entries
    was written. Returns what is open of each owed entry at the end."""
    rank = {category: index for index, category in enumerate(category_order)}
    written = {entry["id"]: datetime.fromisoformat(entry["created_at"]) for entry in ledger}
    events = []
    for position, entry in enumerate(ledger):
        if entry["amount_minor"] > 0:
            events.append((written[entry["id"]], 0, position, entry, None))
        elif entry["entry_type"] == "PAYMENT":
            events.append((written[entry["id"]], 1, position, entry, None))
        else:
            for applied in entry["allocations"]:
                when = max(written[entry["id"]], written[applied["entry"]])
                events.append((when, 1, position, entry, applied))
    open_: dict[str, int] = {}
    order: dict[str, tuple] = {}
    for _, _, position, entry, applied in sorted(events, key=lambda event: event[:3]):
        if entry["amount_minor"] > 0:
            open_[entry["id"]] = entry["amount_minor"]
            order[entry["id"]] = (rank[entry["category"]], entry["occurred_on"], position)
        elif applied is not None:
            assert 0 < applied["amount_minor"] <= open_[applied["entry"]]
            open_[applied["entry"]] -= applied["amount_minor"]
        else:
            left, expected = -entry["amount_minor"], []
            for owed in sorted((c for c, amount in open_.items() if amount > 0), key=order.__getitem__):
                if left == 0:
                    break
                take = min(open_[owed], left)
                expected.append((owed, take))
                left -= take
            got = [(a["entry"], a["amount_minor"]) for a in entry["allocations"]]
            assert got == expected, f"payment {entry['reference']} on {entry['occurred_on']}: {got} != {expected}"
            assert entry["open_minor"] == left
            for owed, amount in got:
                open_[owed] -= amount
    for entry in ledger:
        if entry["amount_minor"] > 0:
            assert entry["open_minor"] == open_[entry["id"]]
            assert sum(a["amount_minor"] for a in entry["allocations"]) == entry["amount_minor"] - open_[entry["id"]]
        else:
            assert entry["open_minor"] == -entry["amount_minor"] - sum(a["amount_minor"] for a in entry["allocations"])
    return open_


def test_MON_4_COL_6_DUN_1_every_client_s_books_add_up_through_the_api(month):
    """Every client's API balance = invoices - payments - credits + refunds, payments as the processor saw them,
    allocations in category order (COL-6), overdue as DUN-1 says — read only through the API."""
    http = api(month["agency"], month["secret"])
    clients = {row["name"]: row for row in _pages(http, "/api/v1/clients/?limit=3")}
    assert {f"Books {kind}" for kind in KINDS} <= set(clients)
    summary, corrections = {}, {}
    for kind in KINDS:
        client_id = clients[f"Books {kind}"]["id"]
        invoices = _pages(http, f"/api/v1/invoices/?client={client_id}")
        charges = _pages(http, f"/api/v1/charges/?client={client_id}")
        ledger = _pages(http, f"/api/v1/clients/{client_id}/ledger/?ordering=created_at&limit=4")
        balance = http.get(f"/api/v1/clients/{client_id}/balance/").json()
        by_type: dict[str, int] = defaultdict(int)
        for entry in ledger:
            by_type[entry["entry_type"]] += entry["amount_minor"]
        invoiced = sum(invoice["total_minor"] for invoice in invoices)
        collected = sum(
            attempt["amount_minor"]
            for charge in charges
            for attempt in charge["attempts"]
            if attempt["outcome"] == "SUCCEEDED"
        )
        payments, credits, refunds = -by_type["PAYMENT"], -by_type["CREDIT"], by_type["REFUND"]
        charged_back = by_type["CHARGEBACK"]
        assert by_type["CHARGE"] == invoiced == balance["charged_minor"], kind
        assert payments == collected == balance["paid_minor"], kind
        assert (credits, refunds, charged_back) == (
            balance["credited_minor"],
            balance["refunded_minor"],
            balance["charged_back_minor"],
        )
        expected = invoiced - payments - credits + refunds + charged_back
        assert balance["balance_minor"] == expected == sum(by_type.values()), kind
        uncollected = sum(c["amount_minor"] for c in charges if c["status"] not in ("PAID", "PAID_OUT"))
        assert balance["balance_minor"] == uncollected, kind

        open_ = _replay_allocations(ledger)
        by_category: dict[str, int] = defaultdict(int)
        for entry in ledger:
            if entry["amount_minor"] > 0 and open_[entry["id"]]:
                by_category[entry["category"]] += open_[entry["id"]]
        assert balance["open_by_category"] == dict(by_category), kind
        assert list(balance["open_by_category"]) == [c for c in CATEGORY_ORDER if c in by_category]
        assert balance["open_minor"] - balance["unapplied_minor"] == balance["balance_minor"]

        # DUN-1 from the ledger: what is open of charges, and of chargebacks (a lost dispute, owed again from the day it
        # was lost, COR-2), dated before today minus the grace period.
        overdue = balance["overdue"]
        today = date.fromisoformat(overdue["today"])
        assert today == END
        cutoff = (today - timedelta(days=GRACE)).isoformat()
        past_due = sum(
            open_[e["id"]] for e in ledger if e["entry_type"] in ("CHARGE", "CHARGEBACK") and e["occurred_on"] < cutoff
        )
        if kind == "invoiced":
            past_due = 0  # pays the agency directly: never past due here (COL-1)
        assert overdue["past_due_minor"] == past_due, kind
        assert overdue["overdue"] == overdue["reached"] == (past_due >= THRESHOLD), kind
        assert (overdue["threshold_minor"], overdue["grace_period_days"]) == (THRESHOLD, GRACE)

        # The balance at the end of a day is the ledger up to that day.
        as_of = "2027-01-15"
        earlier = http.get(f"/api/v1/clients/{client_id}/balance/?as_of={as_of}").json()
        assert earlier["as_of"] == as_of
        assert earlier["balance_minor"] == sum(e["amount_minor"] for e in ledger if e["occurred_on"] <= as_of)
        dated = _pages(http, f"/api/v1/clients/{client_id}/ledger/?date_to={as_of}&date_from=2027-01-01")
        assert all("2027-01-01" <= e["occurred_on"] <= as_of for e in dated)
        assert len(dated) == sum(1 for e in ledger if "2027-01-01" <= e["occurred_on"] <= as_of)
        summary[kind] = (invoiced, payments, balance["balance_minor"], overdue["overdue"])
        corrections[kind] = (credits, refunds, charged_back)

    # The month did what each kind does.
    assert summary["card"][2] == summary["ach"][2] == summary["sepa"][2] == 0, summary
    assert 0 < summary["twice"][2] < summary["twice"][1], summary  # February's second installment falls due on the 20th
    assert summary["declining"][1] == 0 and summary["declining"][3], summary
    assert summary["no-method"][1] == 0 and summary["no-method"][3], summary
    assert summary["replaced"][1] > 0 and summary["replaced"][2] == 0 and not summary["replaced"][3], summary
    assert summary["invoiced"][1] == 0 and summary["invoiced"][2] == summary["invoiced"][0] > 0, summary
    # The credit notes: refunded to the card (credited, then the credit paid back), kept on the ACH account (COR-1).
    assert corrections["card"] == (1500, 1500, 0) and corrections["ach"] == (2000, 0, 0), corrections
    assert corrections["disputed"][:2] == (0, 0) and corrections["disputed"][2] == summary["disputed"][1]
    # Every payment of the disputed card went back to the card holder: all of it is owed again (COR-2).
    assert summary["disputed"][1] > 0 and summary["disputed"][2] == summary["disputed"][0] > 0, summary

    # Every client's balance in one list, the same numbers; the overdue filter.
    rows = {row["client"]["name"]: row for row in _pages(http, "/api/v1/balances/?limit=2")}
    for kind in KINDS:
        assert rows[f"Books {kind}"]["balance_minor"] == summary[kind][2]
        assert rows[f"Books {kind}"]["overdue"] == summary[kind][3]
    overdue_names = {row["client"]["name"] for row in _pages(http, "/api/v1/balances/?overdue=true")}
    assert overdue_names == {f"Books {kind}" for kind in KINDS if summary[kind][3]}


def test_ROLE_1_books_hide_amounts_from_status_only_roles_and_other_salespeople_s_clients(month):
    agency, clients = month["agency"], month["clients"]
    with schema_context(agency.schema_name):
        junior = make_user(agency, "junior@books.test", Role.JR_SALESPERSON)
        seller = make_user(agency, "seller@books.test", Role.SALESPERSON)
        type(clients["declining"]).objects.filter(pk=clients["declining"].pk).update(salesperson=junior)
        type(clients["card"]).objects.filter(pk=clients["card"].pk).update(salesperson=seller)
    jr = api(agency, token_for(agency, junior.email, Role.JR_SALESPERSON))
    own = clients["declining"].public_id
    balance = jr.get(f"/api/v1/clients/{own}/balance/").json()
    assert balance["balance_minor"] is None and balance["open_by_category"] is None
    assert balance["overdue"]["overdue"] is True and balance["overdue"]["past_due_minor"] is None
    ledger = jr.get(f"/api/v1/clients/{own}/ledger/").json()["results"]
    assert ledger and all(e["amount_minor"] is None and e["open_minor"] is None for e in ledger)
    assert all(a["amount_minor"] is None for e in ledger for a in e["allocations"])
    assert [row["balance_minor"] for row in jr.get("/api/v1/balances/").json()["results"]] == [None]
    sp = api(agency, token_for(agency, seller.email, Role.SALESPERSON))
    for path in ("ledger", "balance"):
        assert sp.get(f"/api/v1/clients/{own}/{path}/").status_code == 404
        assert jr.get(f"/api/v1/clients/{clients['card'].public_id}/{path}/").status_code == 404
    assert sp.get(f"/api/v1/clients/{clients['card'].public_id}/balance/").json()["balance_minor"] == 0
    # The agency's own books are not a client's: for the roles that see every client (403 for salespeople).
    for path in ("platform-invoices/", "platform-ledger/", "platform-balance/"):
        assert sp.get(f"/api/v1/{path}").status_code == 403
        assert jr.get(f"/api/v1/{path}").status_code == 403


def test_bad_filters_are_400_with_the_field(month):
    http = api(month["agency"], month["secret"])
    client_id = month["clients"]["card"].public_id
    for path, field in [
        (f"/api/v1/clients/{client_id}/ledger/?date_from=2027-02-01&date_to=2027-01-01", "date_to"),
        (f"/api/v1/clients/{client_id}/ledger/?date_from=yesterday", "date_from"),
        (f"/api/v1/clients/{client_id}/ledger/?entry_type=GIFT", "entry_type"),
        (f"/api/v1/clients/{client_id}/balance/?as_of=2027-13-01", "as_of"),
        ("/api/v1/platform-invoices/?month=2027-1", "month"),
    ]:
        response = http.get(path)
        assert response.status_code == 400, path
        assert response.json()["code"] == "invalid" and field in response.json()["fields"], response.json()


def test_PAY_3_the_agency_s_own_invoices_charges_and_payments(month):
    """The agency's platform invoices (in arrears) with their charges and the payments applied to them; its
    platform balance is what they add up to."""
    from billing.attempts import charge_attempt
    from billing.payment_methods import agency_payment_method_attach
    from billing.platform.models import AgencyCharge

    agency = month["agency"]
    agency_payment_method_attach(agency=agency, token="pm_card_visa:books-agency")
    january = AgencyCharge.objects.get(agency=agency, billing_date=date(2027, 1, 1))
    charge_attempt(january, today=date(2027, 1, 4))
    http = api(agency, month["secret"])
    invoices = _pages(http, "/api/v1/platform-invoices/?limit=1")
    assert [i["due_on"] for i in invoices] == ["2027-02-01", "2027-01-01", "2026-12-01"]
    paid = next(i for i in invoices if i["due_on"] == "2027-01-01")
    assert paid["status"] == "PAID" and paid["charges"][0]["attempts"][0]["outcome"] == "SUCCEEDED"
    assert all(i["status"] != "PAID" for i in invoices if i is not paid)
    # The payment went to the open charges in category order, oldest first (COL-6), whichever invoice they are on.
    payments = [p for i in invoices for p in i["payments"]]
    assert {p["entry"] for p in payments} == {payments[0]["entry"]}
    assert sum(p["amount_minor"] for p in payments) == sum(i["paid_minor"] for i in invoices) == paid["total_minor"]
    assert sum(1 for i in invoices if i["payments"]) > 1
    for invoice in invoices:
        assert invoice["open_minor"] == invoice["total_minor"] - invoice["paid_minor"]
    detail = http.get(f"/api/v1/platform-invoices/{paid['id']}/").json()
    assert sum(line["amount_minor"] for line in detail["lines"]) == detail["total_minor"]
    assert http.get(f"/api/v1/platform-invoices/{paid['id']}/pdf/")["Content-Type"] == "application/pdf"
    balance = http.get("/api/v1/platform-balance/").json()
    total = sum(i["total_minor"] for i in invoices)
    # The disputed client's lost disputes were recovered from the agency: each a chargeback on its ledger paid at
    # once by its transfer reversal (COR-2), beside the invoices.
    assert balance["charged_minor"] == total and balance["charged_back_minor"] > 0
    assert balance["paid_minor"] == paid["total_minor"] + balance["charged_back_minor"]
    assert balance["balance_minor"] == sum(i["open_minor"] for i in invoices) == total - paid["total_minor"]
    ledger = _pages(http, "/api/v1/platform-ledger/?ordering=created_at")
    assert sum(e["amount_minor"] for e in ledger) == balance["balance_minor"]
    chargebacks = {e["id"] for e in ledger if e["entry_type"] == "CHARGEBACK"}
    reversals = [e for e in ledger if {a["entry"] for a in e["allocations"]} & chargebacks and e["amount_minor"] < 0]
    assert sum(e["amount_minor"] for e in reversals) == -balance["charged_back_minor"]
    assert all(e["open_minor"] == 0 for e in ledger if e["id"] in chargebacks)
    books = [e for e in ledger if e["id"] not in chargebacks and e not in reversals]
    open_ = _replay_allocations(books, ["LICENSE", "AGENCY_SERVICES", "PRODUCTS", "OVERAGE", "TAXES_FEES", "OTHER"])
    by_category: dict[str, int] = defaultdict(int)
    for entry in books:
        if entry["amount_minor"] > 0 and open_[entry["id"]]:
            by_category[entry["category"]] += open_[entry["id"]]
    assert balance["open_by_category"] == dict(by_category)
    payment = next(e for e in books if e["entry_type"] == "PAYMENT")
    assert sum(a["amount_minor"] for a in payment["allocations"]) == paid["total_minor"]
    december = http.get("/api/v1/platform-balance/?as_of=2026-12-31").json()
    assert december["balance_minor"] == invoices[-1]["total_minor"]
    assert december["paid_minor"] == december["charged_back_minor"]  # only December's recovered dispute

    # The Billing Overview shows the month's platform invoice with its charges and payments, and the balance; the
    # platform invoices page every invoice (INV-2).
    from core.money import format_minor
    from tests.conftest import login_client

    make_user(agency, "overview-admin@books.test", Role.ADMINISTRATOR)
    pages = login_client(agency, "overview-admin@books.test")
    overview = pages.get("/billing/?month=2027-01").content.decode()
    assert paid["number"] in overview and f"{format_minor(paid['paid_minor'], 'USD')}</td>" in overview
    assert f"You owe the platform <strong>{format_minor(balance['balance_minor'], 'USD')} USD</strong>" in overview
    # P3: the platform invoice's charges, attempts and payments cost the Billing Overview a constant number of queries.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = []
    for month_shown in ("2027-01", "2026-12", "2027-02"):
        connection.set_schema_to_public()
        with CaptureQueriesContext(connection) as queries:
            assert pages.get(f"/billing/?month={month_shown}").status_code == 200
        counts.append(len(queries.captured_queries))
    assert len(set(counts)) == 1 and counts[0] <= 15, counts
    listing = pages.get("/billing/platform-invoices/").content.decode()
    for invoice in invoices:
        assert invoice["number"] in listing and f"{format_minor(invoice['open_minor'], 'USD')}</td>" in listing


def test_MON_4_DUN_1_client_configuration_page_shows_the_api_s_numbers(month):
    """The Client Configuration page's Balance and Ledger sections are the API's numbers; a Jr. Salesperson's page
    shows the overdue state, not the amounts (ROLE-1)."""
    from core.money import format_minor
    from tests.conftest import login_client

    agency, client = month["agency"], month["clients"]["declining"]
    balance = api(agency, month["secret"]).get(f"/api/v1/clients/{client.public_id}/balance/").json()
    make_user(agency, "page-admin@books.test", Role.ADMINISTRATOR)
    page = login_client(agency, "page-admin@books.test").get(f"/clients/{client.public_id}/").content.decode()
    assert f"<strong>{format_minor(balance['balance_minor'], 'USD')}</strong>" in page
    assert f"Overdue since {balance['overdue']['since']}" in page
    assert format_minor(balance["overdue"]["past_due_minor"], "USD") in page
    for amount in balance["open_by_category"].values():
        assert f'<td class="num">{format_minor(amount, "USD")}</td>' in page
    assert (
        'data-testid="ledger"' in page and "Payment" not in page.split('data-testid="ledger"')[1].split("</table>")[0]
    )
    # The client's portal shows the same balance due (POR-1).
    from clients.models import ClientUser

    portal_user = make_user(agency, "portal@books.test", Role.CLIENT)
    with schema_context(agency.schema_name):
        ClientUser.objects.create(user=portal_user, client=client)
    portal = login_client(agency, "portal@books.test").get("/portal/").content.decode()
    assert f'data-testid="balance-due">{format_minor(balance["balance_minor"], "USD")} USD<' in portal
    junior = make_user(agency, "page-junior@books.test", Role.JR_SALESPERSON)
    with schema_context(agency.schema_name):
        type(client).objects.filter(pk=client.pk).update(salesperson=junior)
    page = login_client(agency, "page-junior@books.test").get(f"/clients/{client.public_id}/").content.decode()
    assert f"Overdue since {balance['overdue']['since']}" in page
    assert format_minor(balance["balance_minor"], "USD") not in page and 'data-testid="balance-due"' not in page
