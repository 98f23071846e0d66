"""Platform reconciliation (PAY-1, PAY-2, ONB-2): a simulated month of two agencies — one paid out to its connected
account, one with no payout account yet (its money is held) — with card, ACH, SEPA and declining clients, through
the real day pipeline. Every day of the month, through the platform API only:

    collected - refunded - lost disputes = paid out + held + in transit, to the cent,

each figure equal to the sum of the charges listed under it, and, at the end, each figure against the processor's
own books (the sandbox's payment intents and payouts): what was collected, paid out, is still on its way, is held.
The console page and its CSV show the same numbers.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest
from django_tenants.utils import tenant_context

from accounts.models import Role
from agencybilling import seed
from billing.platform.models import SandboxDispute, SandboxPaymentIntent, SandboxPayout, SandboxRefund
from tests.api.conftest import api, token_for
from tests.billing_helpers import with_plan
from tests.conftest import ensure_agency, login_client, make_user, module_transaction

pytestmark = pytest.mark.django_db

START, END = date(2026, 12, 1), date(2026, 12, 31)
KINDS = {
    "card": seed.Outcome.PAYING,
    "ach": seed.Outcome.ACH_DEBIT,
    "sepa": seed.Outcome.BANK_DEBIT,
    "ach-failing": seed.Outcome.ACH_FAILING,
    "declining": seed.Outcome.DECLINING,
    "twice": seed.Outcome.PAYING,
    "disputed": "pm_card_createDispute",  # paid, then disputed; unanswered, the dispute is lost 7 days later (COR-2)
}
REFUNDED_ON, REFUND = date(2026, 12, 10), 1700
FIGURES = ("collected", "refunded", "disputed", "disputes_lost", "paid_out", "in_transit", "held")


def _agency(slug: str, *, paid_out: bool) -> object:
    agency = with_plan(ensure_agency(slug))
    if paid_out:
        seed.payouts_ready(agency, today=START)  # payouts enabled from the first day (ONB-2)
    with tenant_context(agency):
        for n, (kind, outcome) in enumerate(KINDS.items()):
            seed.client(
                name=f"Recon {slug} {kind}",
                email=f"{kind}@{slug}.recon.example",
                activated_on=START,
                license_price_minor=9900 + 1000 * n,
                outcome=outcome,
                method_tag=f"recon-{slug}-{kind}",
                services=[("Ads management", 3300 + n)],
                **({"autopay_days": [1, 16]} if kind == "twice" else {}),
            )
    return agency


def _refund(agency, day: date) -> None:
    """A credit note refunded to the card client's card: after its charge was paid out for the agency paid out."""
    from accounts.models import User
    from billing.corrections import credit_note_issue
    from billing.models import Invoice

    with tenant_context(agency):
        admin = User.objects.create_user(
            f"refunds@{agency.schema_name}.test", "pw-correct-horse-9", role="ADMINISTRATOR"
        )
        credit_note_issue(
            invoice=Invoice.objects.get(client__name=f"Recon {agency.schema_name} card"),
            user=admin,
            reason="Overbilled",
            outcome="REFUND",
            today=day,
            amount_minor=REFUND,
        )


def _identity(figures: dict) -> bool:
    left = figures["collected_minor"] - figures["refunded_minor"] - figures["disputes_lost_minor"]
    return left == figures["paid_out_minor"] + figures["held_minor"] + figures["in_transit_minor"]


@pytest.fixture(scope="module")
def month(django_db_setup, django_db_blocker) -> Iterator[dict]:
    """Both agencies through December, day by day; each day's figures read through the platform API."""
    with module_transaction(django_db_blocker):
        with django_db_blocker.unblock():
            paid_out = _agency("alpha", paid_out=True)
            held = _agency("beta", paid_out=False)
            support = api(None, token_for(None, "recon-support@platform.test", Role.BILLING_SUPPORT))
            daily = defaultdict(list)
            for day in seed.days(START, END):
                for agency in (paid_out, held):
                    seed.run_days(agency, [day])
                    if day == REFUNDED_ON:
                        _refund(agency, day)
                    response = support.get(
                        f"/api/v1/agencies/{agency.schema_name}/reconciliation/?date_from={START}&date_to={day}"
                    )
                    assert response.status_code == 200, response.content
                    daily[agency.schema_name].append((day, response.json()))
        yield {"paid_out": paid_out, "held": held, "support": support, "daily": daily}


def _charges(support, slug: str, query: str) -> list[dict]:
    rows, url = [], f"/api/v1/agencies/{slug}/reconciliation/charges/?{query}&limit=5"
    while url:
        body = support.get(url).json()
        rows += body["results"]
        url = body["next"]
    return rows


def test_PAY_2_ONB_2_the_identity_holds_every_day_of_a_simulated_month(month):
    """collected - refunded - lost disputes = paid out + held + in transit, to the cent, on every day of the month,
    for the agency that is paid out and for the one whose money is held."""
    for slug, days in month["daily"].items():
        assert len(days) == 31
        for day, figures in days:
            assert figures["balanced"] and _identity(figures), (slug, day, figures)
    alpha, beta = month["daily"]["alpha"][-1][1], month["daily"]["beta"][-1][1]
    # A month of collection: money in every position it can be in, on some day.
    assert alpha["collected_minor"] > 0 and alpha["paid_out_minor"] > 0
    assert any(figures["in_transit_minor"] for _, figures in month["daily"]["alpha"])
    assert alpha["held_minor"] == 0 and alpha["payouts_enabled"]
    for figures in (alpha, beta):
        assert figures["refunded_minor"] == REFUND and figures["disputes_lost_minor"] > 0
        assert figures["disputed_minor"] == figures["disputes_lost_minor"]
    left = beta["collected_minor"] - REFUND - beta["disputes_lost_minor"]
    assert beta["collected_minor"] > 0 and beta["held_minor"] == left and not beta["payouts_enabled"]
    assert beta["paid_out_minor"] == beta["in_transit_minor"] == 0
    # Collected only grows through the month; paid out follows it 3 business days behind (PAY-2).
    collected = [figures["collected_minor"] for _, figures in month["daily"]["alpha"]]
    assert collected == sorted(collected) and collected[0] > 0
    first_payout = next(day for day, figures in month["daily"]["alpha"] if figures["paid_out_minor"])
    assert first_payout == date(2026, 12, 4)  # cards collected Tue 1 Dec, paid out 3 business days later


def test_PAY_1_PAY_2_each_figure_is_its_charges_and_the_processor_s_books(month):
    """Each figure is the sum of the charges listed under it; and the processor's own books say the same: what it
    took from cards and bank accounts, what it paid out to the agency's account, what it still holds."""
    support = month["support"]
    for agency in (month["paid_out"], month["held"]):
        slug, query = agency.schema_name, f"date_from={START}&date_to={END}"
        figures = support.get(f"/api/v1/agencies/{slug}/reconciliation/?{query}").json()
        charges = _charges(support, slug, query)
        by_position: dict[str, int] = defaultdict(int)
        for charge in charges:
            by_position[charge["position"]] += charge["net_minor"]
            moved = charge["collected_minor"] - charge["refunded_minor"] - charge["disputes_lost_minor"]
            assert charge["net_minor"] == moved and charge["collected_minor"] == charge["amount_minor"]
            assert START.isoformat() <= charge["collected_on"] <= END.isoformat()
        assert sum(c["collected_minor"] for c in charges) == figures["collected_minor"]
        for position in ("PAID_OUT", "IN_TRANSIT", "HELD"):
            assert by_position[position] == figures[f"{position.lower()}_minor"], (slug, position)
            listed = _charges(support, slug, f"{query}&position={position}")
            assert sum(c["net_minor"] for c in listed) == figures[f"{position.lower()}_minor"]
            assert len(listed) == figures["counts"][position.lower()]
        # The processor's books (the sandbox's payment intents, refunds, disputes and payouts, in the public schema):
        # for each payment, what is left of it after refunds and lost disputes is in a paid payout, on its way, or
        # held — a payout paid the whole payment, and what was taken back afterwards was recovered from the agency.
        intents = [
            i
            for i in SandboxPaymentIntent.objects.filter(status="succeeded")
            if i.metadata.get("schema") == slug and i.metadata.get("kind") == "client"
        ]
        assert {i.reference for i in intents} == {c["gateway_reference"] for c in charges} - {""}
        assert sum(i.amount_minor for i in intents) == figures["collected_minor"]
        taken = defaultdict(int)
        for refund in SandboxRefund.objects.filter(payment_intent__in=[i.reference for i in intents]):
            taken[refund.payment_intent] += refund.amount_minor if refund.status != "failed" else 0
        lost = SandboxDispute.objects.filter(payment_intent__in=[i.reference for i in intents], status="lost")
        for dispute in lost:
            taken[dispute.payment_intent] += dispute.amount_minor
        assert sum(d.amount_minor for d in lost) == figures["disputes_lost_minor"]
        assert sum(taken.values()) == figures["refunded_minor"] + figures["disputes_lost_minor"]
        if agency.connected_account_id:
            payouts = SandboxPayout.objects.filter(destination=agency.connected_account_id, status="paid")
            assert sum(p.amount_minor for p in payouts) == sum(i.amount_minor for i in intents if i.payout)
            recovered = sum(taken[i.reference] for i in intents if i.payout)
            assert sum(i.amount_minor for i in intents if i.payout) - recovered == figures["paid_out_minor"]
            assert (
                sum(i.amount_minor - taken[i.reference] for i in intents if not i.payout) == figures["in_transit_minor"]
            )
        else:
            assert all(not i.destination and not i.payout for i in intents)
            assert sum(i.amount_minor - taken[i.reference] for i in intents) == figures["held_minor"]
    every = support.get(f"/api/v1/reconciliation/?date_from={START}&date_to={END}&limit=1").json()
    assert every["results"][0]["agency"] == "alpha" and every["next"]


def test_the_console_page_and_its_csv_show_the_api_s_figures(month):
    support_user = make_user(None, "recon-console@platform.test", Role.BILLING_SUPPORT)
    http = login_client(None, support_user.email)
    query = f"date_from={START}&date_to={END}"
    figures = month["support"].get(f"/api/v1/agencies/alpha/reconciliation/?{query}").json()
    page = http.get(f"/agencies/alpha/reconciliation/?{query}").content.decode()
    assert "Balances to the cent" in page
    listing = http.get(f"/reconciliation/?{query}").content.decode()
    assert "Alpha Agency" in listing and "Does not balance" not in listing
    response = http.get(f"/agencies/alpha/reconciliation/?{query}&format=csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode().lstrip("\ufeff"))))
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        totals["collected"] += Decimal(row["collected"])
        totals[row["position"]] += Decimal(row["net"])
    assert totals["collected"] * 100 == figures["collected_minor"]
    assert totals["Paid out"] * 100 == figures["paid_out_minor"]
    assert totals["In transit"] * 100 == figures["in_transit_minor"]
    summary = http.get(f"/reconciliation/?{query}&format=csv")
    lines = list(csv.reader(io.StringIO(b"".join(summary.streaming_content).decode().lstrip("\ufeff"))))
    assert lines[0][-1] == "balanced" and all(line[-1] == "yes" for line in lines[1:])


def test_bad_ranges_are_400_with_the_field(month):
    support = month["support"]
    for query, field in [
        ("date_from=2027-02-01&date_to=2027-01-01", "date_to"),
        ("date_from=2025-01-01&date_to=2027-01-01", "date_to"),
        ("date_from=first", "date_from"),
        ("date_from=2099-01-01", "date_from"),
        ("position=LOST", "position"),
    ]:
        for path in ("/api/v1/agencies/alpha/reconciliation/charges/", "/api/v1/reconciliation/"):
            if field == "position" and path == "/api/v1/reconciliation/":
                continue
            response = support.get(f"{path}?{query}")
            assert response.status_code == 400, (path, query)
            assert field in response.json()["fields"], response.json()
    assert support.get("/api/v1/agencies/nosuch/reconciliation/").status_code == 404
