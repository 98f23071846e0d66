"""Load deterministic demo data: a platform operator and the agency `demo` with its clients."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import connection
from django_tenants.utils import schema_context

from accounts.models import Role, User
from tenants.models import Agency
from tenants.services import agency_create, agency_domain

DEMO_PASSWORD = "demo-pass-2026"
SUPPORT_EMAIL = "support@platform.test"

STAFF = [
    ("admin@demo.test", "Avery", "Admin", Role.ADMINISTRATOR),
    ("manager@demo.test", "Morgan", "Manager", Role.COMPANY_MANAGER),
    ("sales.manager@demo.test", "Sasha", "Lead", Role.SALES_MANAGER),
    ("marketing@demo.test", "Mika", "Market", Role.MARKETING_MANAGER),
    ("sam@demo.test", "Sam", "Seller", Role.SALESPERSON),
    ("junior@demo.test", "Jules", "Junior", Role.JR_SALESPERSON),
]

CLIENT_NAMES = [
    "Alder Dental", "Birch Bakery", "Cedar Law", "Dogwood Fitness", "Elm Street Auto", "Fir & Co Realty",
    "Ginkgo Spa", "Hawthorn Vet", "Ironwood Roofing", "Juniper Cafe", "Kapok Florists", "Linden Books",
    "Maple Plumbing", "Nutmeg Bistro", "Oak Ridge Dentistry", "Pine Hardware", "Quince Boutique",
    "Redwood HVAC", "Sequoia Legal", "Tamarack Tours", "Upas Pest Control", "Viburnum Yoga", "Willow Pet Care",
    "Yew Tree Salon", "Zelkova Movers",
]


class Command(BaseCommand):
    help = "Reset and load the demo data (platform operator, agency `demo`, its staff and ~25 clients)."

    def handle(self, *args, **options) -> None:
        from clients.models import Client

        connection.set_schema_to_public()
        existing = Agency.objects.filter(schema_name="demo").first()
        if existing is not None:
            existing.delete(force_drop=True)
        support, _ = User.objects.get_or_create(email=SUPPORT_EMAIL, defaults={
            "first_name": "Pat", "last_name": "Support", "role": Role.BILLING_SUPPORT, "is_staff": True})
        support.set_password(DEMO_PASSWORD)
        support.save()

        agency = agency_create(slug="demo", name="Demo Marketing Agency", time_zone="America/New_York",
                               currency="USD", billing_day=1)
        with schema_context(agency.schema_name):
            users = {}
            for email, first, last, role in STAFF:
                users[role] = User.objects.create_user(email, DEMO_PASSWORD, first_name=first, last_name=last,
                                                       role=role)
            sellers = [users[Role.SALESPERSON], users[Role.JR_SALESPERSON], users[Role.SALES_MANAGER]]
            for index, name in enumerate(CLIENT_NAMES):
                slug = name.lower().split()[0].replace("&", "")
                Client.objects.create(name=name, email=f"billing@{slug}.example",
                                      salesperson=sellers[index % len(sellers)])
            client_count = Client.objects.count()

        self.stdout.write(self.style.SUCCESS(f"Demo data loaded: agency 'demo' with {client_count} clients."))
        self.stdout.write(f"  Platform console  http://localhost:8000/       {SUPPORT_EMAIL} / {DEMO_PASSWORD}")
        host = agency_domain("demo")
        for email, _first, _last, role in STAFF:
            self.stdout.write(f"  {role.label:<18}http://{host}:8000/  {email} / {DEMO_PASSWORD}")
