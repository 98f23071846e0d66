"""Shared set-up for page, PDF and browser tests: an agency with billed, collected and failing clients."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date

from django_tenants.utils import schema_context, tenant_context

from accounts.models import Role
from billing.collection import collect_due
from billing.invoicing import billing_run
from billing.payment_methods import payment_method_attach
from billing.providers.sandbox import SandboxProvider
from billing.settlement import provider_event_dispatch
from clients.models import Client
from tests.billing_helpers import client_create, service_line_add, tax_rate_create, with_plan
from tests.conftest import make_user


def run_day(agency, today: date) -> None:
    """Billing and collection of a day, then the sandbox processor's own day (settlement, payouts)."""
    billing_run(agency=agency, today=today)
    with tenant_context(agency):
        collect_due(today=today)
    for event in SandboxProvider().advance(today=today):
        provider_event_dispatch(event)


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
    """Three clients billed and collected on each of `months` (billing day 1)."""
    agency = with_plan(agency)
    if not agency.connected_account_id:
        agency.connected_account_id = f"acct_sbx_{agency.schema_name}"
        agency.save(update_fields=["connected_account_id"])
    admin = make_user(agency, f"admin@{agency.schema_name}.test", Role.ADMINISTRATOR, password)
    junior = make_user(agency, f"junior@{agency.schema_name}.test", Role.JR_SALESPERSON, password)
    seller = make_user(agency, f"seller@{agency.schema_name}.test", Role.SALESPERSON, password)
    tag = agency.schema_name
    with schema_context(agency.schema_name):
        tax = tax_rate_create(name="State sales tax", rate_bp=825)
        paying = client_create(
            name=f"Paying Plumbing {tag.title()}",
            email=f"pay@{tag}.example",
            activated_on=date(2026, 12, 1),
            license_price_minor=19900,
            taxes=[tax],
            salesperson=seller,
        )
        service_line_add(client=paying, description="Social media management", amount_minor=25000)
        declining = client_create(
            name=f"Declining Dental {tag.title()}",
            email=f"decline@{tag}.example",
            activated_on=date(2026, 12, 1),
            license_price_minor=9900,
            salesperson=seller,
        )
        junior_client = client_create(
            name=f"Junior Juice {tag.title()}",
            email=f"junior@{tag}.example",
            activated_on=date(2026, 12, 1),
            license_price_minor=4900,
            salesperson=junior,
        )
        payment_method_attach(client=paying, token=f"pm_card_visa:{tag}-paying")
        payment_method_attach(client=declining, token=f"pm_card_visa_chargeDeclined:{tag}-declining")
    for month in months:
        run_day(agency, month)
    return Scenario(agency, admin, junior, seller, paying, declining, junior_client, list(months))
