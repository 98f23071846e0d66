"""Seed data: the one builder of the worlds the demo (`load_demo`), the tests and the benchmarks start from.

Sizes and shapes are parameters; everything else is decided here once:

- `partner_plan(preset)`: the platform's partner plans ("standard" for tests, "growth" for the demo, "bench");
- `staff(agency, people)`: users of the agency, one per (email, role);
- `client(...)`: one client through the product's own services, with the payment method that gives it a
  collection outcome (`Outcome`: a card that pays, one that declines, none, a bank debit);
- `clients_bulk(...)`: thousands of clients with the same kinds of rows, written in bulk (benchmarks: set-up is
  not what they measure);
- `payouts_ready(agency, today=...)`: the agency's payout account, onboarded on the sandbox's hosted page (ONB-2);
- `run_days(agency, days)`: the real day pipeline (`billing.day.agency_day_run`) on each of those days, so a
  seeded history is exactly what the billing clock would have produced.

Data is deterministic: names, amounts and the mix follow the parameters and a seed, never the clock.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context, tenant_context

from accounts.models import User
from billing.day import agency_day_run
from billing.models import PaymentMethod, UsageRecord
from billing.payment_methods import agency_payment_method_attach, payment_method_attach
from billing.payout_accounts import (
    payout_account_create,
    payout_account_of,
    payout_account_refresh,
    payout_onboarding_link,
)
from billing.platform.models import SandboxPaymentMethod
from billing.providers.sandbox import sandbox_onboarding_submit
from billing.settlement import payout_account_apply
from clients.models import AgencyServiceLine, Client, TaxRate
from clients.services import client_create, service_line_add
from core.links import absolute_url
from tenants.models import PartnerPlan
from tenants.services import partner_plan_create

# --- partner plans ----------------------------------------------------------------------------------------------

_PRODUCTS = {
    "listings": {"code": "listings", "name": "Listings", "included_quantity": 100},
    "reviews": {"code": "reviews", "name": "Reviews", "included_quantity": 50},
}
PLANS: dict[str, dict] = {
    # The tests' plan: its amounts are the ones their assertions are written against.
    "standard": {
        "name": "Standard",
        "package_minimum_minor": 20000,
        "license_fee_minor": 2500,
        "products": [
            {**_PRODUCTS["listings"], "unit_price_decimal": "10", "overage_unit_price_decimal": "7"},
            {**_PRODUCTS["reviews"], "unit_price_decimal": "0", "overage_unit_price_decimal": "25"},
        ],
        "taxes": [{"name": "Platform tax", "rate_percent": "5"}],
        "fees": [{"name": "Processing fee", "amount_minor": 999}],
    },
    "growth": {
        "name": "Partner Growth",
        "package_minimum_minor": 50000,
        "license_fee_minor": 3000,
        "products": [
            {
                **_PRODUCTS["listings"],
                "name": "Listings sync",
                "unit_price_decimal": "0",
                "overage_unit_price_decimal": "5",
            },
            {
                **_PRODUCTS["reviews"],
                "name": "Review requests",
                "included_quantity": 10,
                "unit_price_decimal": "200",
                "overage_unit_price_decimal": "150",
            },
        ],
        "taxes": [{"name": "Platform sales tax", "rate_percent": "6"}],
        "fees": [{"name": "Payment processing fee", "amount_minor": 1500}],
    },
    "bench": {
        "name": "Benchmark plan",
        "package_minimum_minor": 50000,
        "license_fee_minor": 1500,
        "products": [
            {**_PRODUCTS["listings"], "unit_price_decimal": "10", "overage_unit_price_decimal": "7"},
            {**_PRODUCTS["reviews"], "unit_price_decimal": "0", "overage_unit_price_decimal": "25"},
        ],
        "taxes": [{"name": "Platform tax", "rate_percent": "5"}],
        "fees": [{"name": "Processing fee", "amount_minor": 999}],
    },
}


def partner_plan(preset: str = "standard", *, currency: str = "USD"):
    """The preset's partner plan in that currency (created once; found by name afterwards)."""
    spec = PLANS[preset]
    if currency != "USD":
        spec = {**spec, "name": f"{spec['name']} ({currency})"}
    existing = PartnerPlan.objects.filter(name=spec["name"]).first()
    if existing is not None:
        return existing
    return partner_plan_create(currency=currency, **spec)


# --- people -----------------------------------------------------------------------------------------------------


def staff(agency, people: Iterable[tuple[str, str]], *, password: str, names: dict[str, tuple[str, str]] | None = None):
    """Users of the agency (or of the platform for None), one per (email, role); returns them by email."""
    names = names or {}
    made = {}
    with schema_context(agency.schema_name if agency is not None else "public"):
        for email, role in people:
            first, last = names.get(email, ("", ""))
            made[email] = User.objects.create_user(email, password, role=role, first_name=first, last_name=last)
    return made


# --- clients ----------------------------------------------------------------------------------------------------


class Outcome(StrEnum):
    """How a client's charges end, by the sandbox test token of its payment method (or none)."""

    PAYING = "pm_card_visa"
    DECLINING = "pm_card_visa_chargeDeclined"
    INSUFFICIENT_FUNDS = "pm_card_visa_chargeDeclinedInsufficientFunds"
    AUTHENTICATION = "pm_card_authenticationRequired"  # 3-D Secure on every payment (COL-7)
    BANK_DEBIT = "sepa:DE89370400440532013000"
    ACH_DEBIT = "ach:110000000:000123456789"
    ACH_FAILING = "ach:110000000:000111111113"
    NO_METHOD = ""


def client(
    *,
    name: str,
    email: str,
    activated_on: date,
    license_price_minor: int,
    outcome: Outcome | str = Outcome.NO_METHOD,
    method_tag: str = "",
    services: Iterable[tuple[str, int] | tuple[str, int, bool]] = (),
    **fields,
):
    """One client, created in the current agency schema through the product's services, with its Agency Services
    lines (description, amount[, one_time]) and the payment method of its `outcome` (sandbox test tokens:
    `method_tag` makes a distinct method with the same behaviour, since a card may be saved once, COL-5).
    `fields`: the rest of `client_create`'s parameters (salesperson, taxes, billing_day, autopay_days)."""
    made = client_create(
        name=name, email=email, activated_on=activated_on, license_price_minor=license_price_minor, **fields
    )
    for description, amount_minor, *one_time in services:
        service_line_add(client=made, description=description, amount_minor=amount_minor, one_time=any(one_time))
    if outcome:
        payment_method_attach(client=made, token=f"{outcome}:{method_tag}" if method_tag else str(outcome))
    return made


@dataclass(frozen=True)
class Mix:
    """Shares of bulk clients with each trait (per mille, so the counts are exact for any size)."""

    services_permille: int = 500
    one_time_permille: int = 100
    usage_permille: int = 300
    two_taxes_permille: int = 400
    autopay_permille: int = 50
    agency_invoiced_permille: int = 30
    payment_method_permille: int = 1000


def clients_bulk(
    *,
    agency,
    count: int,
    activated_on: date,
    usage_period_start: date | None = None,
    seed: int = 7,
    mix: Mix = Mix(),
    sandbox_cards: bool = False,
) -> list[int]:
    """Create `count` clients in the agency's schema with the mix above, in bulk; returns their ids.

    Each gets what a real one has: a license price, one or two of the agency's taxes, often an Agency Services
    line (a few one-time), usage in the cycle starting `usage_period_start` for some, two autopay days for a few,
    Agency Invoiced for a few. `sandbox_cards`: each client also gets a saved Visa test card in the sandbox
    processor's books, the rows `payment_method_save` leaves behind (one fingerprint per client, COL-5)."""
    rng = random.Random(seed)
    with tenant_context(agency), transaction.atomic():
        taxes = list(TaxRate.objects.order_by("id"))
        if not taxes:
            taxes = TaxRate.objects.bulk_create(
                [
                    TaxRate(name="State tax", rate_percent=Decimal("6.25")),
                    TaxRate(name="City tax", rate_percent=Decimal("2")),
                    TaxRate(name="County tax", rate_percent=Decimal("1.5")),
                ]
            )
        start = Client.objects.count()
        clients = []
        for n in range(start, start + count):
            two_autopay = n % 1000 < mix.autopay_permille
            agency_invoiced = (n * 7) % 1000 < mix.agency_invoiced_permille
            clients.append(
                Client(
                    name=f"Client {n:05d}",
                    email=f"client{n:05d}@{agency.schema_name}.example",
                    license_price_minor=rng.choice([4900, 9900, 14900, 19900, 24900]),
                    autopay_days=[agency.billing_day, 15] if two_autopay else [],
                    agency_invoiced=agency_invoiced,
                    agency_invoiced_reason="Billed by the agency directly" if agency_invoiced else "",
                    provider_customer_id=f"cus_bench_{agency.schema_name}_{n}",
                    activated_on=activated_on,
                )
            )
        Client.objects.bulk_create(clients, batch_size=2000)
        through = Client.taxes.through
        links, services, usage, methods, sandbox = [], [], [], [], []
        for index, row in enumerate(clients):
            n = start + index
            links.append(through(client_id=row.pk, taxrate_id=taxes[n % 2].pk))
            if (n * 3) % 1000 < mix.two_taxes_permille:
                links.append(through(client_id=row.pk, taxrate_id=taxes[2].pk))
            if (n * 11) % 1000 < mix.services_permille:
                services.append(
                    AgencyServiceLine(
                        client=row, description="SEO retainer", amount_minor=rng.choice([15000, 25000, 40000])
                    )
                )
            if (n * 13) % 1000 < mix.one_time_permille:
                services.append(
                    AgencyServiceLine(
                        client=row,
                        description="Website set-up",
                        recurrence="ONE_TIME",
                        amount_minor=50000,
                        taxable=False,
                    )
                )
            if usage_period_start and (n * 17) % 1000 < mix.usage_permille:
                for day in (3, 12, 21):
                    when = datetime(usage_period_start.year, usage_period_start.month, day, 12, tzinfo=UTC)
                    usage.append(
                        UsageRecord(
                            client=row,
                            product_code="listings",
                            quantity=rng.randint(20, 60),
                            occurred_at=when,
                            idempotency_key=f"u-{row.public_id}-{day}",
                        )
                    )
                if n % 2:
                    usage.append(
                        UsageRecord(
                            client=row,
                            product_code="reviews",
                            quantity=rng.randint(30, 90),
                            occurred_at=datetime(usage_period_start.year, usage_period_start.month, 8, tzinfo=UTC),
                            idempotency_key=f"r-{row.public_id}",
                        )
                    )
            if sandbox_cards and (n * 19) % 1000 < mix.payment_method_permille:
                reference = f"pm_sbx_bench_{agency.schema_name}_{n}"
                fingerprint = uuid.uuid5(uuid.NAMESPACE_URL, f"{agency.schema_name}/{n}").hex
                methods.append(
                    PaymentMethod(
                        client=row,
                        reference=reference,
                        kind="card",
                        fingerprint=fingerprint,
                        brand="visa",
                        last4="4242",
                    )
                )
                sandbox.append(
                    SandboxPaymentMethod(
                        reference=reference,
                        customer=row.provider_customer_id,
                        kind="card",
                        token="pm_card_visa",
                        fingerprint=fingerprint,
                        brand="visa",
                        last4="4242",
                    )
                )
        through.objects.bulk_create(links, batch_size=5000)
        AgencyServiceLine.objects.bulk_create(services, batch_size=5000)
        UsageRecord.objects.bulk_create(usage, batch_size=5000)
        PaymentMethod.objects.bulk_create(methods, batch_size=5000)
        SandboxPaymentMethod.objects.bulk_create(sandbox, batch_size=5000)  # public schema: shared books
        with connection.cursor() as cursor:
            # This schema's tables only: a database-wide ANALYZE inside this transaction would lock every table
            # of every schema (P6 leaves 1,000 of them) and run the server's shared lock table out.
            cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", [agency.schema_name])
            tables = [row[0] for row in cursor.fetchall()]
            cursor.execute("ANALYZE " + ", ".join(f'"{agency.schema_name}"."{t}"' for t in tables))
    return [c.pk for c in clients]


# --- the agency's side of the money (ONB-2, PAY-3) ---------------------------------------------------------------


def payouts_ready(
    agency, *, today: date, action: str = "complete", bank_account: str = "000123456789", actor: str = "seed"
):
    """The agency's payout account, onboarded through the product (Billing Setup's link, the sandbox's hosted page)
    on `today`: `complete` (payouts enabled), `pending_verification`, `restricted` or `leave` (half done)."""
    now = timezone.now()
    with tenant_context(agency):
        link = payout_onboarding_link(
            agency=agency,
            actor=actor,
            return_url=absolute_url("/setup/payouts/return/", agency=agency.schema_name),
            refresh_url=absolute_url("/setup/payouts/refresh/", agency=agency.schema_name),
        )
        token = link.url.rstrip("/").rsplit("/", 1)[-1]
        sandbox_onboarding_submit(token=token, action=action, bank_account=bank_account, now=now, today=today)
        account = payout_account_of(agency)
        assert account is not None
        payout_account_apply(agency=agency, account_id=account.account_id, now=now, today=today)
    agency.refresh_from_db()
    return payout_account_of(agency)


def payouts_connected(agency, *, provider, actor: str = "seed"):
    """The agency's payout account at a processor that enables accounts at once (the Stripe test server without
    onboarding, benchmarks): created through the product, its state read back from the processor."""
    with tenant_context(agency):
        account = payout_account_create(agency=agency, actor=actor, provider=provider)
        payout_account_refresh(account_id=account.account_id, now=timezone.now(), provider=provider)
    agency.refresh_from_db()
    return account


def agency_payment_method(agency, *, method: str = "pm_card_visa"):
    """The agency's own payment method on the platform account (PAY-3), saved through the product."""
    return agency_payment_method_attach(agency=agency, token=method)


# --- history ----------------------------------------------------------------------------------------------------


def days(first: date, last: date) -> list[date]:
    """Every day from `first` to `last`, both included."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def run_days(agency, on: Iterable[date]) -> None:
    """The agency's day pipeline on each of those days, in order: what the billing clock would have run."""
    for day in on:
        agency_day_run(agency=agency, today=day)
