"""api.compiled: page queries compiled by the ORM once per shape, then run with each request's values."""

from __future__ import annotations

from datetime import date

import pytest
from django.test import override_settings
from django_tenants.utils import tenant_context

import api.compiled
from api.compiled import compiled_rows
from clients.models import Client
from clients.services import client_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_templates():
    api.compiled._templates.clear()
    yield
    api.compiled._templates.clear()


def _clients(agency, count: int, *, activated_on: date = date(2026, 12, 1)) -> list[int]:
    with tenant_context(agency):
        return [
            client_create(
                name=f"{agency.schema_name} client {i}",
                email=f"c{i}@{agency.schema_name}.example",
                activated_on=activated_on,
                license_price_minor=1000,
            ).pk
            for i in range(count)
        ]


def _after(*, after_pk=None, clients=None):
    clients = (Client.objects.all() if clients is None else clients).values("pk", "name").order_by("pk")
    if after_pk is not None:
        clients = clients.filter(pk__gt=after_pk)
    return clients[:3]


def _templates_of(key) -> list:
    return [template for shape, template in api.compiled._templates.items() if shape[1] == key]


def test_one_template_serves_every_value_of_its_shape(agency_a):
    pks = _clients(agency_a, 7)
    with tenant_context(agency_a):
        for after in [None, *pks]:
            rows = compiled_rows(key=("after",), values={"after_pk": after}, build=_after)
            assert rows == list(_after(after_pk=after))
    # One shape without the boundary, one with it, whatever the boundary's value.
    templates = _templates_of(("after",))
    assert len(templates) == 2 and all(template is not None for template in templates)


def test_TEN_2_a_template_is_kept_per_schema_and_reads_only_that_schema(agency_a, agency_b):
    _clients(agency_a, 3)
    _clients(agency_b, 3)
    seen = {}
    for agency in (agency_a, agency_b, agency_a):
        with tenant_context(agency):
            seen[agency.schema_name] = compiled_rows(key=("after",), values={"after_pk": None}, build=_after)
            assert seen[agency.schema_name] == list(_after())
    assert {row["name"].split()[0] for row in seen["alpha"]} == {"alpha"}
    assert {row["name"].split()[0] for row in seen["beta"]} == {"beta"}
    assert len(_templates_of(("after",))) == 2


def test_a_key_that_misses_what_the_query_reads_fails_the_check(agency_a):
    """The test settings compare every reuse with a fresh compilation: a query depending on something its key
    does not name (here the name prefix) fails loudly instead of answering with the previous caller's rows."""
    _clients(agency_a, 3)
    prefix = "alpha"

    def named(*, after_pk=None):
        return _after(after_pk=after_pk, clients=Client.objects.filter(name__startswith=prefix))

    with tenant_context(agency_a):
        assert len(compiled_rows(key=("named",), values={"after_pk": None}, build=named)) == 3
        prefix = "nobody"
        with pytest.raises(AssertionError, match="differs from a fresh compilation"):
            compiled_rows(key=("named",), values={"after_pk": None}, build=named)
        with override_settings(API_COMPILED_QUERY_CHECK=False):
            # What the check prevents: the kept SQL still holds the first prefix.
            assert len(compiled_rows(key=("named",), values={"after_pk": None}, build=named)) == 3


def test_a_parameter_derived_from_a_value_is_compiled_for_every_call(agency_a):
    _clients(agency_a, 2, activated_on=date(2026, 12, 1))
    _clients(agency_a, 1, activated_on=date(2027, 3, 1))

    def activated_in_year_of(*, day):
        # The year lookup turns the date into a range of two other dates: no parameter equals the value.
        return Client.objects.filter(activated_on__year=day.year).values("pk").order_by("pk")

    with tenant_context(agency_a):
        for day, count in ((date(2026, 6, 1), 2), (date(2027, 6, 1), 1), (date(2025, 6, 1), 0)):
            assert len(compiled_rows(key=("year",), values={"day": day}, build=activated_in_year_of)) == count
    assert _templates_of(("year",)) == [None]


def test_values_without_a_stand_in_belong_in_the_key():
    with pytest.raises(TypeError, match="put it in the key"):
        api.compiled._stand_in(True)
