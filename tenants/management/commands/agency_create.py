"""python manage.py agency_create --slug SLUG --name NAME --plan PLAN --admin-email EMAIL [options]

Create an agency with its partner plan and first Administrator (ONB-1), the same service as the platform API and
the billing-support console. The Administrator is mailed a one-time link to choose a password (through the
agency's notice outbox); the link is also printed, for deployments whose mail is not set up yet."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from core.commands import error_line
from core.errors import ApplicationError
from tenants.models import PartnerPlan
from tenants.onboarding import agency_onboard


class Command(BaseCommand):
    help = "Create an agency with its partner plan and first Administrator, who is mailed an invitation."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--slug", required=True, help="2–40 lowercase letters or digits: schema and subdomain.")
        parser.add_argument("--name", required=True, help="The agency's name.")
        parser.add_argument("--plan", required=True, help="The partner plan: its id or its exact name.")
        parser.add_argument("--admin-email", required=True, help="The first Administrator's email address.")
        parser.add_argument("--admin-first-name", default="")
        parser.add_argument("--admin-last-name", default="")
        parser.add_argument("--time-zone", default="UTC", help="IANA time zone of the agency's days (CYC-5).")
        parser.add_argument("--currency", default=None, help="ISO-4217 code; defaults to the plan's.")
        parser.add_argument("--billing-day", default="1", help="1–28 (CYC-1).")
        parser.add_argument("--email", default="", help="The agency's billing contact address (optional).")

    def handle(self, *args, **options) -> None:
        plan_arg = options["plan"]
        plan = (
            PartnerPlan.objects.filter(pk=int(plan_arg)).first()
            if plan_arg.isdigit()
            else PartnerPlan.objects.filter(name=plan_arg).first()
        )
        if plan is None:
            names = ", ".join(repr(p.name) for p in PartnerPlan.objects.all()[:10]) or "none yet"
            raise CommandError(f"--plan: no partner plan {plan_arg!r} (plans: {names})")
        if not options["billing_day"].isdigit():
            raise CommandError(f"--billing-day must be a whole number from 1 to 28, got {options['billing_day']!r}")
        try:
            onboarded = agency_onboard(
                slug=options["slug"],
                name=options["name"],
                plan=plan,
                admin_email=options["admin_email"],
                admin_first_name=options["admin_first_name"],
                admin_last_name=options["admin_last_name"],
                time_zone=options["time_zone"],
                currency=options["currency"],
                billing_day=int(options["billing_day"]),
                email=options["email"],
                actor="manage.py agency_create",
                now=timezone.now(),
            )
        except ApplicationError as exc:
            raise error_line(exc) from None
        agency = onboarded.agency
        self.stdout.write(f"Agency {agency.schema_name!r} created ({agency.name}, plan {plan.name}).")
        self.stdout.write(
            f"Invitation mailed to {onboarded.administrator.email} (expires "
            f"{onboarded.invitation.invitation.expires_at:%Y-%m-%d}): {onboarded.invitation.url}"
        )
