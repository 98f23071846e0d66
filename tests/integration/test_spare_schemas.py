"""Spare agency schemas (tenants/spares.py): agency_create renames an up-to-date spare instead of migrating,
skips a spare missing a migration, and migrates as before when the pool is empty (TEN-1)."""

from __future__ import annotations

import pytest
from django.db import connection
from django_tenants.utils import schema_exists, tenant_context

from tenants.models import Agency
from tenants.services import agency_create
from tenants.spares import spare_schema_drop, spare_schemas, spare_schemas_refill


@pytest.fixture
def clean_spares():
    def drop_all():
        for name in spare_schemas():
            spare_schema_drop(name)
        for agency in Agency.objects.filter(schema_name__in=["sparea", "spareb", "sparec"]):
            agency.delete(force_drop=True)

    drop_all()
    yield
    connection.set_schema_to_public()
    drop_all()


@pytest.mark.django_db(transaction=True)
def test_TEN_1_agency_create_takes_a_migrated_spare_schema(settings, clean_spares):
    settings.TENANT_SPARE_SCHEMAS = 1
    assert spare_schemas_refill() == {"ready": 1, "created": 1, "dropped": 0}
    [spare] = spare_schemas()
    agency = agency_create(slug="sparea", name="Spare A")
    assert not schema_exists(spare) and schema_exists("sparea")
    with tenant_context(agency):
        from clients.models import Client

        Client.objects.create(name="First client", email="first@example.com")
        assert Client.objects.count() == 1
        with connection.cursor() as cursor:  # the immutability triggers came along with the schema
            cursor.execute(
                "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'sparea' "
                "AND NOT t.tgisinternal"
            )
            assert cursor.fetchone()[0] >= 4


@pytest.mark.django_db(transaction=True)
def test_TEN_1_a_spare_missing_a_migration_is_not_used_and_is_replaced(settings, clean_spares):
    settings.TENANT_SPARE_SCHEMAS = 1
    spare_schemas_refill()
    [spare] = spare_schemas()
    with connection.cursor() as cursor:
        cursor.execute(
            f'DELETE FROM "{spare}".django_migrations WHERE app = %s AND name = %s',
            ["billing", "0006_support_request_open_once"],
        )
    agency_create(slug="spareb", name="Spare B")  # migrated as before
    assert schema_exists("spareb") and spare_schemas() == [spare]
    result = spare_schemas_refill()
    assert result == {"ready": 1, "created": 1, "dropped": 1}
    assert spare not in spare_schemas()


@pytest.mark.django_db(transaction=True)
def test_TEN_1_without_spares_the_schema_is_migrated(settings, clean_spares):
    settings.TENANT_SPARE_SCHEMAS = 0
    agency = agency_create(slug="sparec", name="Spare C")
    assert schema_exists("sparec") and spare_schemas() == []
    with tenant_context(agency):
        from clients.models import Client

        assert Client.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_TEN_1_the_refill_task_runs_one_at_a_time(settings, clean_spares):
    from django.core.cache import cache

    from tenants.tasks import spare_schemas_refill as task

    settings.TENANT_SPARE_SCHEMAS = 1
    cache.add("tenants.spare_schemas_refill", 1, timeout=60)
    try:
        assert task() == {"skipped": "another refill is running"}
    finally:
        cache.delete("tenants.spare_schemas_refill")
    assert task() == {"ready": 1, "created": 1, "dropped": 0}
    assert len(spare_schemas()) == 1
