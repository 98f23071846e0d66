"""The agency's everyday forms over real PostgreSQL: clients added, edited and deactivated, tax rates managed, with
the same services and rules as the API (PLAN-2, CYC-4, NOT-1). Bad input gets a message next to its field, in the
product's words, and nothing is saved."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import pytest
from django_tenants.utils import schema_context

from accounts.models import AuditEntry
from billing.invoicing import billing_run
from billing.models import BillingSettings, Invoice, InvoiceSequence
from clients.models import Client, TaxRate
from tests.conftest import login_client
from tests.integration.test_pages import _field_error
from tests.ui_helpers import billed_agency
from web.forms import time_zone_choices

pytestmark = pytest.mark.django_db


@pytest.fixture
def scenario(agency_a):
    return billed_agency(agency_a)


def _config(client: Client, **changes) -> dict:
    data = {"license_price": "99.00", "billing_day": "", "autopay_days": "", "salesperson": "", "taxes": []}
    return {**data, **changes}


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("1e5", "Enter an amount such as 199.00."),
        ("1E3", "Enter an amount such as 199.00."),
        ("1,5", "Use a dot for decimals, such as 1.5."),
        ("١٢٣", "Enter an amount such as 199.00."),
        ("12.345", "Use at most 2 decimal places, such as 199.00."),
        ("-5", "The amount cannot be negative."),
        ("0x10", "Enter an amount such as 199.00."),
        ("1000000000.00", "Enter an amount of at most 999,999,999.99."),
    ],
)
def test_PLAN_2_license_price_takes_plain_decimal_amounts_only(scenario, typed, message):
    http = login_client(scenario.agency, scenario.admin.email)
    page = http.post(f"/clients/{scenario.declining.public_id}/", _config(scenario.declining, license_price=typed))
    assert page.status_code == 400
    assert _field_error(page.content.decode(), "id_license_price") == message
    with schema_context("alpha"):
        assert Client.objects.get(pk=scenario.declining.pk).license_price_minor == 9900


def test_PLAN_2_grouped_thousands_are_read_as_people_write_them(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    page = http.post(f"/clients/{scenario.declining.public_id}/", _config(scenario.declining, license_price="1,250.50"))
    assert page.status_code == 302
    with schema_context("alpha"):
        assert Client.objects.get(pk=scenario.declining.pk).license_price_minor == 125050


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("5,5", "Give each day once: 5 is given more than once."),
        ("5, 12, 5, 12", "Give each day once: 5, 12 is given more than once."),
        ("1,2,3,4,5", "Give at most 4 autopay days a month."),
        (",".join(str(d) for d in range(1, 29)), "Give at most 4 autopay days a month."),
        ("0", "Give days from 1 to 28, separated by commas."),
    ],
)
def test_CYC_4_autopay_days_unique_and_at_most_four(scenario, typed, message):
    http = login_client(scenario.agency, scenario.admin.email)
    page = http.post(f"/clients/{scenario.declining.public_id}/", _config(scenario.declining, autopay_days=typed))
    assert page.status_code == 400
    assert _field_error(page.content.decode(), "id_autopay_days") == message
    with schema_context("alpha"):
        client = Client.objects.get(pk=scenario.declining.pk)
        assert client.autopay_days == [] and client.license_price_minor == 9900


def _setup_data(**changes) -> dict:
    data = {
        "billing_day": "1",
        "time_zone": "UTC",
        "grace_period_days": "10",
        "overdue_threshold": "0.00",
        "statement_days_before": "10",
        "retries_enabled": "on",
        "brand_color": "#2f5bd3",
        "address": "",
        "email": "",
        **{f"category_{i}": c for i, c in enumerate(BillingSettings().category_order, start=1)},
    }
    return {**data, **changes}


def test_NOT_1_upcoming_statement_needs_at_least_one_day(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    page = http.post("/setup/", _setup_data(statement_days_before="0", grace_period_days="12"))
    assert page.status_code == 400
    assert _field_error(page.content.decode(), "id_statement_days_before") == "Give at least 1 day."
    with schema_context("alpha"):
        settings = BillingSettings.objects.get()
        assert (settings.statement_days_before, settings.grace_period_days) == (10, 10)


def test_overdue_threshold_refuses_exponents(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    page = http.post("/setup/", _setup_data(overdue_threshold="1e3"))
    assert _field_error(page.content.decode(), "id_overdue_threshold") == "Enter an amount such as 199.00."
    with schema_context("alpha"):
        assert BillingSettings.objects.get().overdue_threshold_minor == 0


def test_COL_6_duplicated_category_order_is_named_in_words_once(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    page = http.post("/setup/", _setup_data(category_2="LICENSE", grace_period_days="12"))
    html = page.content.decode()
    assert page.status_code == 400
    message = "Use each category once: License is chosen more than once; Agency services is missing."
    assert _field_error(html, "id_category_2") == message
    assert "LICENSE, AGENCY_SERVICES" not in html
    assert html.count("Please correct the highlighted fields.") == 1
    with schema_context("alpha"):
        settings = BillingSettings.objects.get()
        assert settings.category_order[1] == "AGENCY_SERVICES" and settings.grace_period_days == 10


def test_time_zone_picker_lists_common_zones_first_and_no_technical_entries():
    groups = time_zone_choices()
    assert groups[0][0] == "Common time zones"
    common = [zone for zone, _ in groups[0][1]]
    assert common[:2] == ["America/New_York", "America/Chicago"] and "UTC" in common
    every = {zone for _, zones in groups for zone, _ in zones}
    for technical in ("Factory", "localtime", "posixrules", "US/Eastern", "Etc/GMT+5", "EST5EDT"):
        assert technical not in every
    assert "Europe/Berlin" in every and "Asia/Kathmandu" in every
    labels = dict(z for _, zones in groups for z in zones)
    assert labels["America/New_York"] == "New York (America/New_York)"


def test_PLAN_2_client_added_in_the_ui_with_the_apis_rules(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    with schema_context("alpha"):
        tax = TaxRate.objects.get()
    bad = http.post(
        "/clients/new/",
        {"name": " ", "email": "not-an-email", "license_price": "1e5", "autopay_days": "5,5", "taxes": [tax.pk]},
    )
    html = bad.content.decode()
    assert bad.status_code == 400
    assert _field_error(html, "id_name") == "A name is required."
    assert _field_error(html, "id_license_price") == "Enter an amount such as 199.00."
    with schema_context("alpha"):
        assert Client.objects.count() == 3
    good = http.post(
        "/clients/new/",
        {
            "name": "Quokka Studio",
            "email": "AP@Quokka.example",
            "license_price": "199.00",
            "billing_day": "7",
            "autopay_days": "",
            "taxes": [tax.pk],
            "salesperson": "",
        },
    )
    assert good.status_code == 302
    with schema_context("alpha"):
        client = Client.objects.get(name="Quokka Studio")
        assert (client.email, client.license_price_minor, client.billing_day) == ("ap@quokka.example", 19900, 7)
        assert list(client.taxes.all()) == [tax]
        assert AuditEntry.objects.filter(action="client.create", object_id=str(client.public_id)).exists()
    assert good["Location"] == f"/clients/{client.public_id}/"


def test_client_name_and_email_edited_and_audited(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    url = f"/clients/{scenario.paying.public_id}/account"
    bad = http.post(url, {"name": "New name", "email": "nope"})
    assert bad.status_code == 400
    assert "Enter a valid email address" in _field_error(bad.content.decode(), "id_email")
    assert http.post(url, {"name": "Paying Plumbing & Sons", "email": "ap@paying.example"}).status_code == 302
    with schema_context("alpha"):
        client = Client.objects.get(pk=scenario.paying.pk)
        assert (client.name, client.email) == ("Paying Plumbing & Sons", "ap@paying.example")
        entry = AuditEntry.objects.get(action="client.update")
        assert entry.before["name"] == scenario.paying.name and entry.after["name"] == "Paying Plumbing & Sons"


def test_deactivate_asks_first_then_stops_invoicing(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    url = f"/clients/{scenario.paying.public_id}/active"
    asked = http.post(url, {"active": "0"})
    assert asked.status_code == 200 and "Deactivate client" in asked.content.decode()
    with schema_context("alpha"):
        assert Client.objects.get(pk=scenario.paying.pk).deactivated_on is None
    assert http.post(url, {"active": "0", "confirm": "yes"}).status_code == 302
    with schema_context("alpha"):
        assert Client.objects.get(pk=scenario.paying.pk).deactivated_on is not None
        assert AuditEntry.objects.filter(action="client.deactivate").count() == 1
    assert http.post(url, {"active": "1"}).status_code == 302
    with schema_context("alpha"):
        assert Client.objects.get(pk=scenario.paying.pk).deactivated_on is None


def test_PLAN_2_tax_rates_created_edited_and_removed_in_the_ui(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    for typed, message in [
        ("abc", "Give the rate as a percentage with at most 4 decimals, such as 8.875."),
        ("8.87501", "A tax rate has at most 4 decimal places, such as 8.875 or 4.7125."),  # MON-2: 5 decimals
        ("150", "A tax rate must be between 0 and 100 %."),
        ("1e1", "Give the rate as a percentage with at most 4 decimals, such as 8.875."),
    ]:
        page = http.post("/taxes/", {"name": "City tax", "rate": typed})
        assert page.status_code == 400 and _field_error(page.content.decode(), "id_rate") == message
    with schema_context("alpha"):
        assert TaxRate.objects.count() == 1
    assert http.post("/taxes/", {"name": "City tax", "rate": "1.5"}).status_code == 302
    with schema_context("alpha"):
        city = TaxRate.objects.get(name="City tax")
        assert city.rate_percent == Decimal("1.5")
    assert http.post(f"/taxes/{city.public_id}/", {"name": "City tax", "rate": "8.875 %"}).status_code == 302
    remove = f"/taxes/{city.public_id}/remove"
    assert "Remove tax rate" in http.post(remove).content.decode()
    with schema_context("alpha"):
        assert TaxRate.objects.get(pk=city.pk).rate_percent == Decimal("8.875")  # MON-2: 4 decimals, exactly
        in_use = TaxRate.objects.get(name="State sales tax")
    assert http.post(remove, {"confirm": "yes"}).status_code == 302
    http.post(f"/taxes/{in_use.public_id}/remove", {"confirm": "yes"})
    with schema_context("alpha"):
        assert not TaxRate.objects.filter(pk=city.pk).exists()
        assert TaxRate.objects.filter(pk=in_use.pk).exists()  # still ticked on a client
        actions = list(AuditEntry.objects.filter(action__startswith="tax_rate.").values_list("action", flat=True))
        assert sorted(actions) == ["tax_rate.create", "tax_rate.remove", "tax_rate.update"]


def test_ROLE_1_marketing_manager_reads_tax_rates_but_cannot_add_clients_or_taxes(scenario):
    from accounts.models import Role
    from tests.conftest import make_user

    make_user(scenario.agency, "mm@alpha.test", Role.MARKETING_MANAGER)
    http = login_client(scenario.agency, "mm@alpha.test")
    assert http.get("/taxes/").status_code == 200
    assert "Add tax rate" not in http.get("/taxes/").content.decode()
    assert http.post("/taxes/", {"name": "X", "rate": "1"}).status_code == 403
    assert http.get("/clients/new/").status_code == 403
    assert http.post("/clients/new/", {"name": "X", "email": "x@x.example"}).status_code == 403
    with schema_context("alpha"):
        assert TaxRate.objects.count() == 1 and Client.objects.count() == 3


def test_a_client_that_needs_setup_is_flagged_and_gets_no_invoice(scenario):
    """No price and no Agency Services line: flagged "Needs setup", no 0.00 invoice, no number used up."""
    http = login_client(scenario.agency, scenario.admin.email)
    http.post("/clients/new/", {"name": "Unpriced Co", "email": "u@unpriced.example", "license_price": ""})
    with schema_context("alpha"):
        client = Client.objects.get(name="Unpriced Co")
        Client.objects.filter(pk=client.pk).update(activated_on=date(2027, 1, 1))
        before = InvoiceSequence.objects.get().next_number
    listing = http.get("/clients/?show=setup").content.decode()
    assert "Unpriced Co" in listing and scenario.paying.name not in listing
    assert "Needs setup" in http.get(f"/clients/{client.public_id}/").content.decode()
    billing_run(agency=scenario.agency, today=date(2027, 3, 1))
    with schema_context("alpha"):
        assert not Invoice.objects.filter(client=client).exists()
        built = Invoice.objects.filter(period_start=date(2027, 3, 1)).count()
        assert built == 3 and InvoiceSequence.objects.get().next_number == before + 3
        numbers = sorted(int(re.sub(r"\D", "", n)) for n in Invoice.objects.values_list("number", flat=True))
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # gap-free (INV-1)
