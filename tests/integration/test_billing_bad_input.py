"""Bad input gets a clear error naming the field, and changes nothing (MON-1, MON-2, CYC-1, PLAN-1..3)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from django_tenants.utils import schema_context

from billing.models import UsageRecord
from billing.usage import UsageInput, usage_record_bulk
from clients.models import AgencyServiceLine, Client, TaxRate
from clients.services import client_configure, client_create, service_line_add, tax_rate_create
from core.errors import ApplicationError, Conflict
from tenants.models import Agency, PartnerPlan
from tenants.services import agency_create, partner_plan_create
from tests.billing_helpers import with_plan

pytestmark = pytest.mark.django_db

WHEN = datetime(2027, 1, 10, 12, tzinfo=UTC)


def _refused(fn, field: str) -> ApplicationError:
    with pytest.raises(ApplicationError) as excinfo:
        fn()
    assert field in excinfo.value.fields, excinfo.value.fields
    assert excinfo.value.fields[field][0]
    return excinfo.value


def test_PLAN_2_negative_license_price_is_refused(agency_a):
    with schema_context(agency_a.schema_name):
        _refused(
            lambda: client_create(
                name="X", email="x@example.com", activated_on=date(2027, 1, 1), license_price_minor=-1
            ),
            "license_price_minor",
        )
        assert not Client.objects.exists()
        client = client_create(name="Y", email="y@example.com", activated_on=date(2027, 1, 1), license_price_minor=500)
        _refused(
            lambda: client_configure(client=client, license_price_minor=-100, billing_day=3), "license_price_minor"
        )
        client.refresh_from_db()
        assert (client.license_price_minor, client.billing_day) == (500, None)
        _refused(lambda: service_line_add(client=client, description="Ads", amount_minor=-5), "amount_minor")
        assert not AgencyServiceLine.objects.exists()


@pytest.mark.parametrize("value", [1.5, "100", True, None])
def test_MON_1_amounts_must_be_integer_minor_units(agency_a, value):
    with schema_context(agency_a.schema_name):
        _refused(
            lambda: client_create(
                name="X", email="x@example.com", activated_on=date(2027, 1, 1), license_price_minor=value
            ),
            "license_price_minor",
        )
        assert not Client.objects.exists()


def test_MON_1_unknown_currency_is_refused():
    _refused(
        lambda: partner_plan_create(name="P", currency="XYZ", package_minimum_minor=0, license_fee_minor=0), "currency"
    )
    _refused(lambda: agency_create(slug="zeta", name="Zeta", currency="EURO"), "currency")
    assert not PartnerPlan.objects.exists() and not Agency.objects.filter(schema_name="zeta").exists()


@pytest.mark.parametrize("rate", ["100.01", "-1", "999.9999", "8.87501", "4.71251", 8.875])
def test_MON_2_tax_rate_over_100_percent_or_with_5_decimals_is_refused(agency_a, rate):
    with schema_context(agency_a.schema_name):
        _refused(lambda: tax_rate_create(name="Too much", rate_percent=rate), "rate_percent")
        assert not TaxRate.objects.exists()
    _refused(
        lambda: partner_plan_create(
            name="P",
            currency="USD",
            package_minimum_minor=0,
            license_fee_minor=0,
            taxes=[{"name": "T", "rate_percent": rate}],
        ),
        "taxes[0].rate_percent",
    )
    _refused(
        lambda: partner_plan_create(
            name="P",
            currency="USD",
            package_minimum_minor=0,
            license_fee_minor=0,
            taxes=[{"name": "T", "rate_bp": 10001}],
        ),
        "taxes[0].rate_bp",
    )
    assert not PartnerPlan.objects.exists()


@pytest.mark.parametrize("day", [0, 29, -3, 31])
def test_CYC_1_billing_day_outside_1_to_28_is_refused(agency_a, day):
    with schema_context(agency_a.schema_name):
        _refused(
            lambda: client_create(name="X", email="x@example.com", activated_on=date(2027, 1, 1), billing_day=day),
            "billing_day",
        )
        _refused(
            lambda: client_create(
                name="X", email="x@example.com", activated_on=date(2027, 1, 1), autopay_days=[5, day]
            ),
            "autopay_days",
        )
        assert not Client.objects.exists()
    _refused(lambda: agency_create(slug="zeta", name="Zeta", billing_day=day), "billing_day")


def test_PLAN_1_negative_plan_prices_are_refused():
    _refused(
        lambda: partner_plan_create(name="P", currency="USD", package_minimum_minor=-1, license_fee_minor=0),
        "package_minimum_minor",
    )
    _refused(
        lambda: partner_plan_create(
            name="P",
            currency="USD",
            package_minimum_minor=0,
            license_fee_minor=0,
            products=[{"code": "a", "unit_price_minor": -5}],
        ),
        "products[0].unit_price_minor",
    )
    for price in ("-0.5", "0.0000000000001", "1e30", 0.0875):  # MON-2: at most 12 decimals of the minor unit
        _refused(
            lambda price=price: partner_plan_create(
                name="P",
                currency="USD",
                package_minimum_minor=0,
                license_fee_minor=0,
                products=[{"code": "a", "overage_unit_price_decimal": price}],
            ),
            "products[0].overage_unit_price_decimal",
        )
    assert not PartnerPlan.objects.exists()


def test_PLAN_3_usage_for_an_unknown_product_is_refused(agency_a):
    agency = with_plan(agency_a)
    with schema_context(agency.schema_name):
        _refused(
            lambda: usage_record_bulk(agency=agency, now=WHEN, items=[UsageInput("telepathy", 3, WHEN, "k1")]),
            "product_code",
        )
        _refused(
            lambda: usage_record_bulk(agency=agency, now=WHEN, items=[UsageInput("listings", 0, WHEN, "k1")]),
            "quantity",
        )
        _refused(
            lambda: usage_record_bulk(
                agency=agency, now=WHEN, items=[UsageInput("listings", 1, datetime(2027, 1, 1, 12), "k1")]
            ),
            "occurred_at",
        )
        # In a batch, one bad record refuses the whole batch.
        _refused(
            lambda: usage_record_bulk(
                agency=agency,
                now=WHEN,
                items=[UsageInput("listings", 1, WHEN, "ok"), UsageInput("nope", 1, WHEN, "bad")],
            ),
            "records[1].product_code",
        )
        assert not UsageRecord.objects.exists()


def test_PLAN_3_same_idempotency_key_same_payload_is_stored_once(agency_a):
    agency = with_plan(agency_a)
    with schema_context(agency.schema_name):
        item = UsageInput("listings", 5, WHEN, "same")
        assert usage_record_bulk(agency=agency, now=WHEN, items=[item]) == (1, 0)
        assert usage_record_bulk(agency=agency, now=WHEN, items=[item]) == (0, 1)
        assert UsageRecord.objects.count() == 1


def test_PLAN_3_same_idempotency_key_other_payload_is_a_conflict_and_changes_nothing(agency_a):
    agency = with_plan(agency_a)
    with schema_context(agency.schema_name):
        usage_record_bulk(agency=agency, now=WHEN, items=[UsageInput("listings", 5, WHEN, "k")])
        with pytest.raises(Conflict) as excinfo:
            usage_record_bulk(
                agency=agency,
                now=WHEN,
                items=[UsageInput("listings", 6, WHEN, "new"), UsageInput("listings", 9, WHEN, "k")],
            )
        assert excinfo.value.code == "idempotency_conflict"
        assert list(UsageRecord.objects.values_list("idempotency_key", "quantity")) == [("k", 5)]
