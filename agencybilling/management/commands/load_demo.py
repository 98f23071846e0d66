"""Load deterministic demo data: a platform operator and the agency `demo` with its clients, built with the
seed-data builder (agencybilling/seed.py) and three months of history through the real day pipeline."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from django.core.management.base import BaseCommand
from django.db import connection, transaction
from django.db.models import Q
from django_tenants.utils import schema_context

from accounts.models import Role, User
from agencybilling import seed
from billing.platform.models import (
    AgencyAllocation,
    AgencyCharge,
    AgencyChargeAttempt,
    AgencyChargeEvent,
    AgencyInvoice,
    AgencyInvoiceLine,
    AgencyInvoiceSequence,
    AgencyLedgerEntry,
    AgencyPaymentMethod,
    PaymentMethodFingerprint,
    Payout,
    PayoutAccount,
    SandboxAccountLink,
    SandboxConnectedAccount,
    SandboxPaymentIntent,
    SandboxPayout,
)
from billing.usage import UsageInput, usage_record_bulk
from clients.models import Client, ClientUser
from clients.services import tax_rate_create
from core.calendar import add_months
from core.links import absolute_url
from tenants.models import Agency
from tenants.services import agency_create, plan_assign

DEMO_PASSWORD = "demo-pass-2026"
SUPPORT_EMAIL = "support@platform.test"
CLIENT_EMAIL = "client@demo.test"

STAFF = [
    ("admin@demo.test", "Avery", "Admin", Role.ADMINISTRATOR),
    ("manager@demo.test", "Morgan", "Manager", Role.COMPANY_MANAGER),
    ("sales.manager@demo.test", "Sasha", "Lead", Role.SALES_MANAGER),
    ("marketing@demo.test", "Mika", "Market", Role.MARKETING_MANAGER),
    ("sam@demo.test", "Sam", "Seller", Role.SALESPERSON),
    ("junior@demo.test", "Jules", "Junior", Role.JR_SALESPERSON),
]

# Sandbox tokens (seed.Outcome and other test cards): mostly paying cards, some declines, a card that asks for
# 3-D Secure (COL-7: its client confirms in the portal), bank debits that settle or fail, one client without.
DEMO_TOKENS = [
    "pm_card_visa",
    "pm_card_mastercard",
    "pm_card_amex",
    "pm_card_visa_debit",
    "sepa:DE89370400440532013000",
    "pm_card_visa",
    "pm_card_visa_chargeDeclined",
    "pm_card_mastercard",
    "ach:110000000:000123456789",
    None,
    "pm_card_authenticationRequired",
    "pm_card_visa_chargeDeclinedInsufficientFunds",
    "ach:110000000:000111111113",
]

CLIENT_NAMES = [
    "Alder Dental",
    "Birch Bakery",
    "Cedar Law",
    "Dogwood Fitness",
    "Elm Street Auto",
    "Fir & Co Realty",
    "Ginkgo Spa",
    "Hawthorn Vet",
    "Ironwood Roofing",
    "Juniper Cafe",
    "Kapok Florists",
    "Linden Books",
    "Maple Plumbing",
    "Nutmeg Bistro",
    "Oak Ridge Dentistry",
    "Pine Hardware",
    "Quince Boutique",
    "Redwood HVAC",
    "Sequoia Legal",
    "Tamarack Tours",
    "Upas Pest Control",
    "Viburnum Yoga",
    "Willow Pet Care",
    "Yew Tree Salon",
    "Zelkova Movers",
]


def _wipe(agency: Agency) -> None:
    """Remove a demo agency entirely. Its invoices and ledger are append-only by trigger (MON-3), so the
    triggers are switched off for this one transaction — a demo reset, never a production path."""
    guarded = [AgencyInvoice, AgencyInvoiceLine, AgencyLedgerEntry, AgencyAllocation]
    with transaction.atomic(), connection.cursor() as cursor:
        for model in guarded:
            cursor.execute(f'ALTER TABLE "{model._meta.db_table}" DISABLE TRIGGER USER')
        AgencyAllocation.objects.filter(charge__agency=agency).delete()
        AgencyAllocation.objects.filter(payment__agency=agency).delete()
        AgencyChargeEvent.objects.filter(charge__agency=agency).delete()
        AgencyChargeAttempt.objects.filter(charge__agency=agency).delete()
        AgencyCharge.objects.filter(agency=agency).delete()
        AgencyLedgerEntry.objects.filter(agency=agency).delete()
        AgencyInvoiceLine.objects.filter(invoice__agency=agency).delete()
        AgencyInvoice.objects.filter(agency=agency).delete()
        AgencyInvoiceSequence.objects.filter(agency=agency).delete()
        AgencyPaymentMethod.objects.filter(agency=agency).delete()
        PaymentMethodFingerprint.objects.filter(schema_name=agency.schema_name).delete()
        accounts = {agency.connected_account_id} | set(
            PayoutAccount.objects.filter(agency=agency).values_list("account_id", flat=True)
        )
        accounts.discard("")
        SandboxPaymentIntent.objects.filter(metadata__schema=agency.schema_name).delete()
        SandboxPaymentIntent.objects.filter(destination__in=accounts).delete()
        SandboxPayout.objects.filter(destination__in=accounts).delete()
        Payout.objects.filter(Q(account__in=accounts) | Q(agency=agency)).delete()
        PayoutAccount.objects.filter(agency=agency).delete()
        SandboxAccountLink.objects.filter(account__in=accounts).delete()
        SandboxConnectedAccount.objects.filter(reference__in=accounts).delete()
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for model in guarded:
            cursor.execute(f'ALTER TABLE "{model._meta.db_table}" ENABLE TRIGGER USER')
        agency.delete(force_drop=True)


class Command(BaseCommand):
    help = "Reset and load the demo data (platform operator, agency `demo`, its staff and ~25 clients)."

    def handle(self, *args, **options) -> None:
        connection.set_schema_to_public()
        existing = Agency.objects.filter(schema_name="demo").first()
        if existing is not None:
            _wipe(existing)
        support, _ = User.objects.get_or_create(
            email=SUPPORT_EMAIL,
            defaults={"first_name": "Pat", "last_name": "Support", "role": Role.BILLING_SUPPORT, "is_staff": True},
        )
        support.set_password(DEMO_PASSWORD)
        support.save()

        agency = agency_create(
            slug="demo", name="Demo Marketing Agency", time_zone="America/New_York", currency="USD", billing_day=1
        )
        plan_assign(agency=agency, plan=seed.partner_plan("growth"))
        # History starts three billing dates ago, so the overview has months to page through.
        today = datetime.now(UTC).date()
        start = add_months(date(today.year, today.month, 1), -3)
        # The agency finished payout onboarding (the sandbox's hosted page) before its history starts (ONB-2).
        seed.payouts_ready(agency, today=start - timedelta(days=30))
        # Its own payment method, so its platform invoices are collected like its clients' charges (PAY-3).
        seed.agency_payment_method(agency, method="pm_card_visa:agency-demo")
        users = seed.staff(
            agency,
            [(email, role) for email, _first, _last, role in STAFF],
            password=DEMO_PASSWORD,
            names={email: (first, last) for email, first, last, _role in STAFF},
        )
        with schema_context(agency.schema_name):
            by_role = {user.role: user for user in users.values()}
            sellers = [by_role[Role.SALESPERSON], by_role[Role.JR_SALESPERSON], by_role[Role.SALES_MANAGER]]
            state_tax = tax_rate_create(name="State sales tax", rate_percent="8.25")
            city_tax = tax_rate_create(name="City tax", rate_percent="1.5")
            usage = []
            for index, name in enumerate(CLIENT_NAMES):
                slug = name.lower().split()[0].replace("&", "")
                services = [("Social media management", 25000 + index * 1000)]
                if index % 4 == 0:
                    services.append(("Website refresh (one-time)", 60000, True))
                # A mix of payers: most cards pay, some decline, some pay by bank debit, one has nothing.
                client = seed.client(
                    name=name,
                    email=f"billing@{slug}.example",
                    activated_on=start - timedelta(days=20),
                    license_price_minor=9900 + (index % 5) * 5000,
                    salesperson=sellers[index % len(sellers)],
                    taxes=[state_tax] + ([city_tax] if index % 3 == 0 else []),
                    autopay_days=[5, 28] if index == 7 else None,
                    billing_day=15 if index == 11 else None,
                    services=services,
                    outcome=DEMO_TOKENS[index % len(DEMO_TOKENS)] or "",
                    method_tag=f"demo{index}",
                )
                for month in range(3):
                    moment = datetime.combine(
                        add_months(start, month) + timedelta(days=9), datetime.min.time(), tzinfo=UTC
                    )
                    usage.append(UsageInput("listings", 80 + index * 7, moment, f"demo-l-{index}-{month}", client))
                    usage.append(UsageInput("reviews", 5 + index % 9, moment, f"demo-r-{index}-{month}", client))
            # Recorded as it happened: the history is dated as the clock will run it.
            usage_record_bulk(agency=agency, items=usage, now=max(item.occurred_at for item in usage))
            client_count = Client.objects.count()
            # A client-portal login for the first client (INV-3).
            portal_user = User.objects.create_user(
                CLIENT_EMAIL, DEMO_PASSWORD, first_name="Casey", last_name="Client", role=Role.CLIENT
            )
            ClientUser.objects.create(user=portal_user, client=Client.objects.get(name=CLIENT_NAMES[0]))
        seed.run_days(agency, seed.days(start, today))

        self.stdout.write(self.style.SUCCESS(f"Demo data loaded: agency 'demo' with {client_count} clients."))
        # The addresses come from SITE_URL, like every link the product sends (the demo sets its port).
        console, agency_site = absolute_url("/"), absolute_url("/", agency="demo")
        self.stdout.write(f"  {'Platform console':<18}{console:<{len(agency_site)}}  {SUPPORT_EMAIL} / {DEMO_PASSWORD}")
        for email, _first, _last, role in STAFF:
            self.stdout.write(f"  {role.label:<18}{agency_site}  {email} / {DEMO_PASSWORD}")
        self.stdout.write(
            f"  {'Client portal':<18}{agency_site}  {CLIENT_EMAIL} / {DEMO_PASSWORD}  ({CLIENT_NAMES[0]})"
        )
