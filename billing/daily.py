"""One agency's billing day: build invoices, collect what is due, then let the processor's day pass
(bank-debit settlement, payouts). The billing clock (beat) and `simulate` call this."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django_tenants.utils import tenant_context

from billing.collection import CollectionSummary, collect_due
from billing.events import provider_event_dispatch
from billing.providers import get_provider
from billing.services import BillingRunResult, billing_run
from tenants.models import Agency


@dataclass
class DayResult:
    billing: BillingRunResult
    collection: CollectionSummary
    provider_events: int


def agency_day_run(*, agency: Agency, today: date) -> DayResult:
    billing = billing_run(agency=agency, today=today)
    with tenant_context(agency):
        collection = collect_due(today=today)
    events = get_provider().advance(today=today)
    for event in events:
        provider_event_dispatch(event)
    return DayResult(billing, collection, len(events))
