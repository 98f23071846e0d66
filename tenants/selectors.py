"""Reads on agencies."""

from __future__ import annotations

from django.db import connection

from tenants.models import Agency


def current_agency() -> Agency | None:
    """The agency whose schema the connection is in: the tenant object under tenant_context(), looked up by
    schema name under schema_context(); None in the public schema."""
    tenant = getattr(connection, "tenant", None)
    if isinstance(tenant, Agency):
        return tenant
    return Agency.objects.filter(schema_name=connection.schema_name).first()  # type: ignore[attr-defined]
