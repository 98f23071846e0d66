"""python manage.py simulate --start D1 --end D2 [--agency SLUG] — walk every day in between."""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from billing.clock import agency_day_record
from billing.management.commands.run_day import day_summary, selected_agencies
from core.commands import parse_date


class Command(BaseCommand):
    help = "Time-travel: run the billing pipeline for every day from --start to --end (sandbox processor)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--start", required=True, help="First day, YYYY-MM-DD.")
        parser.add_argument("--end", required=True, help="Last day (included), YYYY-MM-DD.")
        parser.add_argument("--agency", help="Only this agency (its slug).")
        parser.add_argument("--quiet", action="store_true", help="No progress bar, only the summary lines.")

    def handle(self, *args, **options) -> None:
        start, end = parse_date(options["start"], "--start"), parse_date(options["end"], "--end")
        if end < start:
            raise CommandError("--end must not be before --start")
        if (end - start).days > 3660:
            raise CommandError("--start and --end may be at most ten years apart")
        agencies = selected_agencies(options["agency"])
        days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
        with tqdm(
            total=len(days) * len(agencies), unit="agency-day", disable=options["quiet"], file=self.stderr._out
        ) as bar:
            for day in days:
                for agency in agencies:
                    result = agency_day_record(agency=agency, day=day)
                    bar.update(1)
                    bar.write(f"{day} {agency.schema_name}: {day_summary(result)}", file=self.stdout._out)
