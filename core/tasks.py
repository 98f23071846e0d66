"""Celery task base for work that belongs to one agency.

Every tenant task takes `schema_name` as a keyword argument and runs inside that schema. A task
sent without one, or naming the public schema, fails loudly instead of falling back to public.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import connection
from django_tenants.utils import get_public_schema_name, get_tenant_model, tenant_context
from tenant_schemas_celery.task import TenantTask


class MissingTenantError(RuntimeError):
    """A tenant task was sent without the agency schema it must run in."""


class AgencyTask(TenantTask):
    abstract = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        schema_name = kwargs.get("schema_name")
        if not schema_name or schema_name == get_public_schema_name():
            raise MissingTenantError(
                f"task {self.name} needs schema_name=<agency schema>; got {schema_name!r}. "
                "Tenant tasks never run in the public schema."
            )
        sent_from = getattr(connection, "schema_name", None)
        if sent_from not in (schema_name, get_public_schema_name()):
            raise MissingTenantError(f"task {self.name} was sent from schema {sent_from!r} for schema {schema_name!r}")
        tenant = get_tenant_model().objects.get(schema_name=schema_name)
        with tenant_context(tenant):
            return super().__call__(*args, **kwargs)


def agency_task(*args: Any, **options: Any) -> Any:
    """Decorator: `@agency_task(name=...)` for a task that runs in one agency's schema."""
    options.setdefault("base", AgencyTask)
    return shared_task(*args, **options)
