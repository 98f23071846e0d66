"""python manage.py run_day --date YYYY-MM-DD [--agency SLUG]"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from billing.clock import agency_day_record
from core.commands import parse_date
from tenants.models import Agency


def selected_agencies(slug: str | None):
    agencies = Agency.objects.select_related("plan").order_by("schema_name")
    if slug:
        agencies = agencies.filter(schema_name=slug)
        if not agencies.exists():
            raise CommandError(f"--agency: no agency with the slug {slug!r}")
    return list(agencies)


def day_summary(result) -> str:
    b, c = result.billing, result.collection
    billing = "already done" if b.already_done else f"{b.invoices_built} invoices"
    if b.agency_invoice_number and not b.agency_invoice_existed:
        billing += f" + agency invoice {b.agency_invoice_number}"
    return (f"{billing}; {c.attempted} attempts: {c.paid} paid, {c.pending} pending, {c.failed} failed, "
            f"{c.uncollectable} uncollectable; {result.provider_events} processor events")


class Command(BaseCommand):
    help = "Run one agency-local day of the billing pipeline (invoices, collection, settlement, payouts)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--date", required=True, help="The agency-local day, YYYY-MM-DD.")
        parser.add_argument("--agency", help="Only this agency (its slug).")

    def handle(self, *args, **options) -> None:
        day = parse_date(options["date"], "--date")
        for agency in selected_agencies(options["agency"]):
            result = agency_day_record(agency=agency, day=day)
            self.stdout.write(f"{agency.schema_name} {day}: {day_summary(result)}")
