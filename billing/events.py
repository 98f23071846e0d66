"""Route provider events (webhooks, sandbox settlement and payouts) to the schema they belong to."""

from __future__ import annotations

import logging

from django_tenants.utils import schema_context, tenant_context

from billing.collection import provider_event_apply
from billing.providers.base import ProviderEvent
from tenants.models import Agency

logger = logging.getLogger(__name__)


def provider_event_dispatch(event: ProviderEvent) -> str:
    """A charge event names its schema in its metadata; a payout event names the connected account."""
    if event.kind.startswith("charge."):
        schema = event.metadata.get("schema", "")
        if schema == "public" or event.metadata.get("kind") == "agency":
            with schema_context("public"):
                return provider_event_apply(event)
        agency = Agency.objects.filter(schema_name=schema).first()
        if agency is None:
            return "unknown schema"
        with tenant_context(agency):
            return provider_event_apply(event)
    if event.kind.startswith("payout."):
        agency = Agency.objects.filter(connected_account_id=event.account).first() if event.account else None
        if agency is None:
            return "unknown account"
        with tenant_context(agency):
            return provider_event_apply(event)
    return "ignored"
