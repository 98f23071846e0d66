"""python manage.py clock_tick --at 2027-03-14T07:00Z — beat's tick of the billing clock at a chosen instant."""

from __future__ import annotations

from datetime import date

from django.core.management.base import BaseCommand, CommandError

from billing.clock import agency_clock_catch_up, clock_tick
from core.commands import parse_instant
from tenants.models import Agency


class Command(BaseCommand):
    help = (
        "Run the billing clock's tick at a UTC instant, as beat runs it (CYC-5): every agency whose local day at "
        "that instant is past its clock runs its missed days, in order, here in this process. For replaying a "
        "tick missed during an outage, and for tests."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--at", required=True, help="The instant, ISO 8601 with its offset: 2027-03-14T07:00Z.")

    def handle(self, *args, **options) -> None:
        now = parse_instant(options["at"], "--at")
        busy: list[str] = []

        def run_here(schema_name: str, until: date) -> None:
            ran = agency_clock_catch_up(schema_name=schema_name, until=until)
            zone = Agency.objects.values_list("time_zone", flat=True).get(schema_name=schema_name)
            if ran is None:
                busy.append(schema_name)
                self.stdout.write(f"{schema_name} ({zone}, local day {until}): busy — another worker runs its days")
            else:
                days = ", ".join(day.isoformat() for day in ran) or "nothing (already run)"
                self.stdout.write(f"{schema_name} ({zone}, local day {until}): ran {days}")

        sent = clock_tick(now=now, dispatch=run_here)
        self.stdout.write(f"tick at {now.isoformat().replace('+00:00', 'Z')}: {len(sent)} agencies due")
        if busy:
            raise CommandError(f"not run, another worker holds their clock: {', '.join(busy)}; tick again later")
