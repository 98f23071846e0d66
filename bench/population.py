"""Realistic agencies for the benchmarks, written in bulk (set-up is not what is measured).

Each client gets what a real one has: a license price, one or two of the agency's taxes, often an Agency
Services line (a few one-time), usage in the closed cycle for some, two autopay days for a few, Agency
Invoiced for a few, and (optionally) a saved payment method. The mix is fixed by a seed, so every run
bills the same rows.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

PLAN_NAME = "Benchmark plan"


def bench_plan():
    from tenants.models import PartnerPlan
    from tenants.services import partner_plan_create

    existing = PartnerPlan.objects.filter(name=PLAN_NAME).first()
    if existing:
        return existing
    return partner_plan_create(
        name=PLAN_NAME,
        currency="USD",
        package_minimum_minor=50000,
        license_fee_minor=1500,
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


@dataclass(frozen=True)
class Mix:
    """Shares of clients with each trait (per mille, so the counts are exact for any size)."""

    services_permille: int = 500
    one_time_permille: int = 100
    usage_permille: int = 300
    two_taxes_permille: int = 400
    autopay_permille: int = 50
    agency_invoiced_permille: int = 30
    payment_method_permille: int = 1000


def clients_populate(
    *,
    agency,
    count: int,
    activated_on: date,
    usage_period_start: date | None = None,
    seed: int = 7,
    mix: Mix = Mix(),
    sandbox_cards: bool = False,
) -> list[int]:
    """Create `count` clients in the agency's schema with the mix above; returns their ids.

    `sandbox_cards`: each client gets a saved Visa test card in the sandbox processor's books, the rows
    `payment_method_save` leaves behind (one fingerprint per client, COL-5)."""
    from django.db import connection, transaction
    from django_tenants.utils import tenant_context

    from billing.models import PaymentMethod, UsageRecord
    from billing.platform.models import SandboxPaymentMethod
    from clients.models import AgencyServiceLine, Client, TaxRate

    rng = random.Random(seed)
    with tenant_context(agency), transaction.atomic():
        taxes = list(TaxRate.objects.order_by("id"))
        if not taxes:
            taxes = TaxRate.objects.bulk_create(
                [
                    TaxRate(name="State tax", rate_bp=625),
                    TaxRate(name="City tax", rate_bp=200),
                    TaxRate(name="County tax", rate_bp=150),
                ]
            )
        start = Client.objects.count()
        clients = []
        for n in range(start, start + count):
            two_autopay = n % 1000 < mix.autopay_permille
            clients.append(
                Client(
                    name=f"Client {n:05d}",
                    email=f"client{n:05d}@{agency.schema_name}.example",
                    license_price_minor=rng.choice([4900, 9900, 14900, 19900, 24900]),
                    autopay_days=[agency.billing_day, 15] if two_autopay else [],
                    agency_invoiced=(n * 7) % 1000 < mix.agency_invoiced_permille,
                    agency_invoiced_reason="Billed by the agency directly"
                    if (n * 7) % 1000 < mix.agency_invoiced_permille
                    else "",
                    provider_customer_id=f"cus_bench_{agency.schema_name}_{n}",
                    activated_on=activated_on,
                )
            )
        Client.objects.bulk_create(clients, batch_size=2000)
        through = Client.taxes.through
        links, services, usage, methods, sandbox = [], [], [], [], []
        for index, client in enumerate(clients):
            n = start + index
            links.append(through(client_id=client.pk, taxrate_id=taxes[n % 2].pk))
            if (n * 3) % 1000 < mix.two_taxes_permille:
                links.append(through(client_id=client.pk, taxrate_id=taxes[2].pk))
            if (n * 11) % 1000 < mix.services_permille:
                services.append(
                    AgencyServiceLine(
                        client=client, description="SEO retainer", amount_minor=rng.choice([15000, 25000, 40000])
                    )
                )
            if (n * 13) % 1000 < mix.one_time_permille:
                services.append(
                    AgencyServiceLine(
                        client=client,
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
                            client=client,
                            product_code="listings",
                            quantity=rng.randint(20, 60),
                            occurred_at=when,
                            idempotency_key=f"u-{client.public_id}-{day}",
                        )
                    )
                if n % 2:
                    usage.append(
                        UsageRecord(
                            client=client,
                            product_code="reviews",
                            quantity=rng.randint(30, 90),
                            occurred_at=datetime(usage_period_start.year, usage_period_start.month, 8, tzinfo=UTC),
                            idempotency_key=f"r-{client.public_id}",
                        )
                    )
            if sandbox_cards and (n * 19) % 1000 < mix.payment_method_permille:
                reference = f"pm_sbx_bench_{agency.schema_name}_{n}"
                fingerprint = uuid.uuid5(uuid.NAMESPACE_URL, f"{agency.schema_name}/{n}").hex
                methods.append(
                    PaymentMethod(
                        client=client,
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
                        customer=client.provider_customer_id,
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


def month_start(day: date) -> date:
    return day.replace(day=1)


def previous_month(day: date) -> date:
    return (day.replace(day=1) - timedelta(days=1)).replace(day=1)
