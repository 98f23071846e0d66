"""Pick the schema from the host name, with exactly one `SET search_path` per request."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponseNotFound
from django.urls import set_urlconf
from django_tenants.middleware.main import TenantMainMiddleware

from tenants.models import Agency, Domain


def agency_for_host(hostname: str) -> Agency | None:
    """Look the host up with schema-qualified SQL on the raw connection.

    Going through the ORM would first `SET search_path` to public and then again to the
    agency's schema; the raw cursor bypasses the search-path handling, so the only SET of the
    request is the agency's own.
    """
    fields = Agency._meta.concrete_fields
    columns = ", ".join(f'a."{f.column}"' for f in fields)
    sql = (
        f'SELECT {columns} FROM public."{Agency._meta.db_table}" a '
        f'JOIN public."{Domain._meta.db_table}" d ON d."tenant_id" = a."id" WHERE d."domain" = %s'
    )
    connection.ensure_connection()
    with connection.connection.cursor() as cursor:
        cursor.execute(sql, [hostname])
        row = cursor.fetchone()
    if row is None:
        return None
    return Agency.from_db(connection.alias, [f.attname for f in fields], row)


class AgencyTenantMiddleware(TenantMainMiddleware):
    """`BASE_DOMAIN` is the platform console (public schema); `<slug>.BASE_DOMAIN` an agency.

    Any other host answers 404 without revealing anything.
    """

    def process_request(self, request: HttpRequest):
        try:
            hostname = self.hostname_from_request(request)
        except DisallowedHost:
            return HttpResponseNotFound()
        if hostname == settings.BASE_DOMAIN:
            connection.set_schema_to_public()
            request.tenant = connection.tenant  # type: ignore[attr-defined]
            request.urlconf = settings.PUBLIC_SCHEMA_URLCONF
            set_urlconf(request.urlconf)
            return None
        agency = agency_for_host(hostname)
        if agency is None:
            connection.set_schema_to_public()
            raise Http404("Unknown host")
        agency.domain_url = hostname
        request.tenant = agency  # type: ignore[attr-defined]
        connection.set_tenant(agency)
        request.urlconf = settings.ROOT_URLCONF
        set_urlconf(request.urlconf)
        return None
