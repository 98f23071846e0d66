"""Shared set-up for billing tests: a partner plan on an agency, clients, usage (seed data: agencybilling/seed.py),
and the Payment Received notice the outbox tests queue."""

from __future__ import annotations

from datetime import UTC, date, datetime

from agencybilling.seed import partner_plan, payouts_ready
from billing.usage import UsageInput, usage_record_bulk
from clients.services import client_create, service_line_add, tax_rate_create
from notifications.catalog import NoticeKind
from notifications.models import Notice
from notifications.services import notice_enqueue
from tenants.models import Agency, PartnerPlan
from tenants.services import plan_assign

# The day the tests' agencies finished payout onboarding (ONB-2): before any billing date the tests use.
ONBOARDED_ON = date(2026, 11, 2)


def standard_plan() -> PartnerPlan:
    """The tests' partner plan (`agencybilling.seed.PLANS["standard"]`: assertions are written against it)."""
    return partner_plan("standard")


def with_plan(agency: Agency, plan: PartnerPlan | None = None) -> Agency:
    return plan_assign(agency=agency, plan=plan or standard_plan())


def ready_to_collect(agency: Agency) -> Agency:
    """The standard plan, and payout onboarding finished on ONBOARDED_ON (ONB-2): its clients' charges can be
    collected."""
    agency = with_plan(agency)
    payouts_ready(agency, today=ONBOARDED_ON)
    return agency


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def usage(agency: Agency, client, code: str, quantity: int, when: datetime, key: str) -> None:
    usage_record_bulk(agency=agency, items=[UsageInput(code, quantity, when, key, client)], now=when)


# What a Payment Received notice's default template (NOT-4) needs, with the values the outbox tests assert against.
PAYMENT_RECEIVED_CONTEXT = {
    "agency_name": "Alpha Agency",
    "client_name": "Acme",
    "currency": "USD",
    "portal_url": "http://p/",
    "amount": "42.00",
    "invoice_number": "ALPHA-000001",
    "paid_on": "2027-01-01",
}


def payment_received_notice(*, account: str = "client-1", number: int = 1, period: str = "2027-01") -> Notice | None:
    """Queue one Payment Received notice for business date 2027-01-01 in the current schema (`notice_enqueue`:
    None when that account, period and number was already queued)."""
    return notice_enqueue(
        account=account,
        kind=NoticeKind.PAYMENT_RECEIVED,
        period=period,
        number=number,
        to_email="ap@acme.example",
        context=PAYMENT_RECEIVED_CONTEXT,
        business_date=date(2027, 1, 1),
    )


__all__ = [
    "PAYMENT_RECEIVED_CONTEXT",
    "at",
    "client_create",
    "payment_received_notice",
    "ready_to_collect",
    "service_line_add",
    "standard_plan",
    "tax_rate_create",
    "usage",
    "with_plan",
]
