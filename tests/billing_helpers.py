"""Shared set-up for billing tests: a partner plan on an agency, clients, usage (seed data: agencybilling/seed.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from agencybilling.seed import partner_plan
from billing.usage import UsageInput, usage_record_bulk
from clients.services import client_create, service_line_add, tax_rate_create
from tenants.models import Agency, PartnerPlan
from tenants.services import plan_assign

# The day the tests' agencies finished payout onboarding (ONB-2): before any billing date the tests use.
ONBOARDED_ON = date(2026, 11, 2)


def standard_plan() -> PartnerPlan:
    """The tests' partner plan (`agencybilling.seed.PLANS["standard"]`: assertions are written against it)."""
    return partner_plan("standard")


def with_plan(agency: Agency, plan: PartnerPlan | None = None) -> Agency:
    return plan_assign(agency=agency, plan=plan or standard_plan())


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def usage(agency: Agency, client, code: str, quantity: int, when: datetime, key: str) -> None:
    usage_record_bulk(agency=agency, items=[UsageInput(code, quantity, when, key, client)], now=when)


__all__ = ["at", "client_create", "service_line_add", "standard_plan", "tax_rate_create", "usage", "with_plan"]
