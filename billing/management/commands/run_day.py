"""python manage.py run_day --date YYYY-MM-DD [--agency SLUG]"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from billing.clock import agency_day_record
from billing.day import DayResult
from core.commands import parse_date
from tenants.models import Agency


def selected_agencies(slug: str | None):
    agencies = Agency.objects.select_related("plan").order_by("schema_name")
    if slug:
        agencies = agencies.filter(schema_name=slug)
        if not agencies.exists():
            raise CommandError(f"--agency: no agency with the slug {slug!r}")
    return list(agencies)


def day_summary(result: DayResult) -> str:
    """One line per agency-day: what each step did ("done before" when an earlier run finished it)."""
    parts = []
    if result.notices is not None:
        n = result.notices
        parts.append(f"notices: {n.statements} statements, {n.payments} upcoming payments")
    if result.billing is not None:
        b = result.billing
        billing = "invoices already built" if b.already_done else f"{b.invoices_built} invoices"
        if b.agency_invoice_number and not b.agency_invoice_existed:
            billing += f" + agency invoice {b.agency_invoice_number}"
        if b.invoices_held:
            billing += f", {b.invoices_held} held (amounts out of bounds: see the client's page)"
        if b.holds_released:
            billing += f", {b.holds_released} held before now built"
        parts.append(billing)
    for label, c in (("due", result.collection), ("retries", result.retries)):
        if c is not None and (c.attempted or c.uncollectable or label == "due"):
            parts.append(
                f"{label}: {c.attempted} attempts: {c.paid} paid, {c.pending} pending, {c.failed} failed, "
                f"{c.uncollectable} uncollectable"
            )
    if result.provider_events is not None:
        parts.append(f"{result.provider_events} processor events")
    if result.overdue is not None and (result.overdue.flagged or result.overdue.cleared or result.overdue.notices):
        o = result.overdue
        parts.append(f"overdue: {o.flagged} flagged, {o.cleared} cleared, {o.notices} notices")
    if result.notices_sent is not None and (result.notices_sent.sent or result.notices_sent.unsent):
        out = result.notices_sent
        left = f", {out.unsent} left to their tasks" if out.unsent else ""
        parts.append(f"notices sent by the day: {out.sent}{left}")
    if result.skipped:
        parts.append(f"done before: {', '.join(s.lower() for s in result.skipped)}")
    if result.given_up:
        parts.append(f"FAILED and given up: {', '.join(s.lower() for s in result.given_up)}")
    return "; ".join(parts)


class Command(BaseCommand):
    help = "Run one agency-local day of the billing pipeline (invoices, collection, settlement, payouts)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--date", required=True, help="The agency-local day, YYYY-MM-DD.")
        parser.add_argument("--agency", help="Only this agency (its slug).")

    def handle(self, *args, **options) -> None:
        day = parse_date(options["date"], "--date")
        failed = []
        for agency in selected_agencies(options["agency"]):
            result = agency_day_record(agency=agency, day=day)
            self.stdout.write(f"{agency.schema_name} {day}: {day_summary(result)}")
            failed += [f"{agency.schema_name} {step.lower()}" for step in result.given_up]
        if failed:
            raise CommandError(f"steps that kept failing (errors on the support console): {', '.join(failed)}")
