"""Shared set-up for billing tests: a partner plan on an agency, clients, usage."""

from __future__ import annotations

from datetime import UTC, date, datetime

from billing.usage import UsageInput, usage_record_bulk
from clients.services import client_create, service_line_add, tax_rate_create
from tenants.models import Agency, PartnerPlan
from tenants.services import partner_plan_create, plan_assign


def standard_plan(name: str = "Standard") -> PartnerPlan:
    existing = PartnerPlan.objects.filter(name=name).first()
    if existing:
        return existing
    return partner_plan_create(
        name=name,
        currency="USD",
        package_minimum_minor=20000,
        license_fee_minor=2500,
        products=[
            {
                "code": "listings",
                "name": "Listings",
                "unit_price_minor": 10,
                "included_quantity": 100,
                "overage_unit_price_minor": 7,
            },
            {
                "code": "reviews",
                "name": "Reviews",
                "unit_price_minor": 0,
                "included_quantity": 50,
                "overage_unit_price_minor": 25,
            },
        ],
        taxes=[{"name": "Platform tax", "rate_bp": 500}],
        fees=[{"name": "Processing fee", "amount_minor": 999}],
    )


def with_plan(agency: Agency, plan: PartnerPlan | None = None) -> Agency:
    return plan_assign(agency=agency, plan=plan or standard_plan())


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def usage(agency: Agency, client, code: str, quantity: int, when: datetime, key: str) -> None:
    usage_record_bulk(agency=agency, items=[UsageInput(code, quantity, when, key, client)])


__all__ = ["at", "client_create", "service_line_add", "standard_plan", "tax_rate_create", "usage", "with_plan"]
