"""A valid body for every write operation of both hosts, and a snapshot of every table's row count (to prove
that a request stored nothing). Tests built on these are generated over the schema: a write operation missing
here fails `test_every_write_operation_has_a_body`."""

from __future__ import annotations

from django.db import connection
from django_tenants.utils import schema_context


def agency_bodies(world) -> dict[tuple[str, str], dict]:
    return {
        ("post", "/api/v1/clients/"): {
            "name": "Idem Co",
            "email": "idem@example.com",
            "license_price_minor": 1000,
            "autopay_days": [5, 20],
        },
        ("patch", "/api/v1/clients/{client_id}/"): {"license_price_minor": 25000, "billing_day": 15},
        ("post", "/api/v1/clients/{client_id}/service-lines/"): {
            "description": "Ads management",
            "amount_minor": 500,
            "one_time": True,
        },
        ("post", "/api/v1/clients/{client_id}/payment-method/"): {"token": "pm_card_mastercard"},
        ("post", "/api/v1/clients/{client_id}/agency-invoiced-requests/"): {"reason": "Pays by bank transfer"},
        ("post", "/api/v1/charges/{charge_id}/retry-requests/"): {"reason": "The client updated the card"},
        ("post", "/api/v1/tax-rates/"): {"name": "VAT", "rate_percent": "8.875"},
        ("post", "/api/v1/usage-records/"): {
            "records": [
                {
                    "client": world.ids["client_id"],
                    "product_code": "listings",
                    "quantity": 7,
                    "occurred_at": "2026-12-02T10:00:00Z",
                    "idempotency_key": "crm-0001",
                },
                {
                    "product_code": "reviews",
                    "quantity": 3,
                    "occurred_at": "2026-12-03T10:00:00+01:00",
                    "idempotency_key": "crm-0002",
                },
            ]
        },
        ("patch", "/api/v1/billing-settings/"): {
            "grace_period_days": 5,
            "retries_enabled": False,
            "address": "1 Main St",
        },
        ("put", "/api/v1/email-templates/{kind}/"): {
            "subject": "Payment failed for {{ client_name }}",
            "body": "Hello {{ client_name }}, please update your card.",
        },
        ("post", "/api/v1/email-templates/{kind}/preview/"): {
            "subject": "Hi {{ client_name }}",
            "body": "Amount: {{ amount }} {{ currency }}",
        },
        ("post", "/api/v1/api-tokens/"): {"name": "CRM sync"},
        ("post", "/api/v1/webhook-endpoints/"): {
            "url": "https://hooks.example.com/agencybilling",
            "event_kinds": ["invoice.finalized", "charge.paid"],
        },
        ("patch", "/api/v1/webhook-endpoints/{endpoint_id}/"): {"description": "Accounting", "is_active": True},
        ("post", "/api/v1/webhook-deliveries/{delivery_id}/redeliver/"): {},
        ("post", "/api/v1/invitations/{invitation_id}/resend/"): {},
        ("post", "/api/v1/invitations/{invitation_id}/revoke/"): {},
        ("post", "/api/v1/webhook-endpoints/{endpoint_id}/roll-secret/"): {"previous_valid_for_hours": 24},
        ("post", "/api/v1/invoices/{invoice_id}/credit-notes/"): {
            "reason": "Overbilled for the ads line",
            "outcome": "CREDIT",
            "amount_minor": 100,
        },
        ("post", "/api/v1/agency-payment-method/"): {"token": "pm_card_visa"},
        ("post", "/api/v1/payout-account/onboarding-links/"): {},
    }


def platform_bodies(world, plan_id: int) -> dict[tuple[str, str], dict]:
    return {
        ("post", "/api/v1/agencies/"): {
            "slug": "gamma",
            "name": "Gamma Agency",
            "plan": plan_id,
            "administrator": {"email": "owner@gamma.example", "first_name": "Gia"},
            "time_zone": "Europe/Paris",
            "billing_day": 5,
        },
        ("patch", "/api/v1/agencies/{slug}/"): {"plan": plan_id},
        ("post", "/api/v1/agencies/{slug}/clients/{client_id}/agency-invoiced/"): {
            "agency_invoiced": True,
            "reason": "Billed by the agency directly",
        },
        ("post", "/api/v1/agencies/{slug}/charges/{charge_id}/retry/"): {},
        ("post", "/api/v1/agency-charges/{charge_id}/retry/"): {},
        ("post", "/api/v1/agencies/{slug}/invitations/{invitation_id}/resend/"): {},
        ("post", "/api/v1/agencies/{slug}/invitations/{invitation_id}/revoke/"): {},
        ("post", "/api/v1/partner-plans/"): {
            "name": "Growth",
            "currency": "USD",
            "package_minimum_minor": 50000,
            "license_fee_minor": 1500,
            "products": [
                {
                    "code": "listings",
                    "name": "Listings",
                    "unit_price_decimal": "0.0875",
                    "included_quantity": 500,
                    "overage_unit_price_decimal": "4",
                }
            ],
            "taxes": [{"name": "Platform tax", "rate_percent": "4.7125"}],
            "fees": [{"name": "Support", "amount_minor": 2500}],
        },
        ("post", "/api/v1/api-tokens/"): {"name": "support script"},
    }


def row_counts(*schemas: str) -> dict[str, int]:
    """Rows in every table of these schemas (the API's own idempotency records excluded when asked)."""
    counts: dict[str, int] = {}
    with schema_context("public"), connection.cursor() as cursor:
        cursor.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY(%s) "
            "AND tablename <> 'django_migrations' ORDER BY 1, 2",
            [list(schemas)],
        )
        tables = cursor.fetchall()
        for schema, table in tables:
            cursor.execute(f'SELECT count(*) FROM "{schema}"."{table}"')
            counts[f"{schema}.{table}"] = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM information_schema.schemata")
        counts["schemas"] = cursor.fetchone()[0]
    return counts


def table_digests(*schemas: str, skip: tuple[str, ...] = ("django_session",)) -> dict[str, str]:
    """A digest of every row of every table of these schemas: unlike row counts, it also sees an UPDATE."""
    digests: dict[str, str] = {}
    with schema_context("public"), connection.cursor() as cursor:
        cursor.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY(%s) "
            "AND tablename <> ALL(%s) ORDER BY 1, 2",
            [list(schemas), list(skip)],
        )
        for schema, table in cursor.fetchall():
            cursor.execute(
                f'SELECT md5(coalesce(string_agg(t::text, chr(10) ORDER BY t::text), \'\')) FROM "{schema}"."{table}" t'
            )
            digests[f"{schema}.{table}"] = cursor.fetchone()[0]
    return digests


def changed(before: dict[str, int], after: dict[str, int], ignore: tuple[str, ...] = ()) -> dict:
    return {
        name: (before.get(name), after.get(name))
        for name in set(before) | set(after)
        if before.get(name) != after.get(name) and not name.endswith(ignore)
    }
