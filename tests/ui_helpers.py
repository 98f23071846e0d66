"""Shared set-up for page, PDF and browser tests: an agency with billed, collected and failing clients, from the
seed-data builder (agencybilling/seed.py) and the real day pipeline."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date

from django_tenants.utils import schema_context

from accounts.models import Role
from agencybilling import seed
from clients.models import Client
from tests.billing_helpers import ONBOARDED_ON, tax_rate_create, with_plan


def run_day(agency, today: date) -> None:
    """The agency's whole day through the real pipeline (`billing.day.agency_day_run`)."""
    seed.run_days(agency, [today])


def pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    assert data[:5] == b"%PDF-", "not a PDF"
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


@dataclass
class Scenario:
    agency: object
    admin: object
    junior: object
    seller: object
    paying: Client  # card that pays: Paid
    declining: Client  # card that declines: Retrying
    junior_client: Client  # assigned to the Jr. Salesperson, no payment method: Uncollectable
    months: list[date]


def billed_agency(
    agency, *, months: tuple[date, ...] = (date(2027, 1, 1), date(2027, 2, 1)), password: str = "pw-correct-horse-9"
) -> Scenario:
    """Three clients billed and collected on each of `months` (billing day 1), through the day pipeline."""
    agency = with_plan(agency)
    if not agency.connected_account_id:
        seed.payouts_ready(agency, today=ONBOARDED_ON)
    tag = agency.schema_name
    people = seed.staff(
        agency,
        [
            (f"admin@{tag}.test", Role.ADMINISTRATOR),
            (f"junior@{tag}.test", Role.JR_SALESPERSON),
            (f"seller@{tag}.test", Role.SALESPERSON),
        ],
        password=password,
    )
    admin, junior, seller = people.values()
    with schema_context(agency.schema_name):
        tax = tax_rate_create(name="State sales tax", rate_percent="8.25")
        activated_on = date(2026, 12, 1)
        paying = seed.client(
            name=f"Paying Plumbing {tag.title()}",
            email=f"pay@{tag}.example",
            license_price_minor=19900,
            taxes=[tax],
            salesperson=seller,
            services=[("Social media management", 25000)],
            outcome=seed.Outcome.PAYING,
            activated_on=activated_on,
            method_tag=f"{tag}-paying",
        )
        declining = seed.client(
            name=f"Declining Dental {tag.title()}",
            email=f"decline@{tag}.example",
            license_price_minor=9900,
            salesperson=seller,
            outcome=seed.Outcome.DECLINING,
            activated_on=activated_on,
            method_tag=f"{tag}-declining",
        )
        junior_client = seed.client(
            name=f"Junior Juice {tag.title()}",
            email=f"junior@{tag}.example",
            license_price_minor=4900,
            salesperson=junior,
            activated_on=activated_on,
        )
    seed.run_days(agency, months)
    return Scenario(agency, admin, junior, seller, paying, declining, junior_client, list(months))
