"""Reads on agencies."""

from __future__ import annotations

from datetime import date

from django.conf import settings
from django.db import connection

from core.calendar import local_date
from tenants.models import Agency


def agency_domain(slug: str) -> str:
    """The host name of the agency with this slug: `<slug>.<BASE_DOMAIN>`."""
    return f"{slug}.{settings.BASE_DOMAIN}"


def current_agency() -> Agency | None:
    """The agency whose schema the connection is in: the tenant object under tenant_context(), looked up by
    schema name under schema_context(); None in the public schema."""
    tenant = getattr(connection, "tenant", None)
    if isinstance(tenant, Agency):
        return tenant
    return Agency.objects.filter(schema_name=connection.schema_name).first()  # type: ignore[attr-defined]


def agency_business_date(agency: Agency, now) -> date:
    """The agency's own calendar day at `now` (CYC-5); when the billing clock has been run ahead of the wall
    clock (a simulation), its last finished day, so pages and the API show what the clock has done."""
    today = local_date(now, agency.time_zone)
    if agency.clock_date and agency.clock_date > today:
        return agency.clock_date
    return today
