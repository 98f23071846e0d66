"""python manage.py run_billing --date YYYY-MM-DD [--agency SLUG]"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from billing.invoicing import billing_run
from core.commands import parse_date
from core.money import format_minor
from tenants.models import Agency


class Command(BaseCommand):
    help = "Run the billing step (invoices and ledger entries) of one date, for one agency or all."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--date", required=True, help="The agency-local billing date, YYYY-MM-DD.")
        parser.add_argument("--agency", help="Only this agency (its slug).")
        parser.add_argument("--no-progress", action="store_true", help="Do not draw progress bars.")

    def handle(self, *args, **options) -> None:
        run_date = parse_date(options["date"], "--date")
        agencies = Agency.objects.select_related("plan").order_by("schema_name")
        if options["agency"]:
            agencies = agencies.filter(schema_name=options["agency"])
            if not agencies.exists():
                raise CommandError(f"--agency: no agency with the slug {options['agency']!r}")
        totals: dict[str, int] = {}
        built = existing = done_before = 0
        for agency in agencies:
            bar = tqdm(
                desc=agency.schema_name,
                unit="client",
                disable=options["no_progress"],
                leave=False,
                file=self.stderr._out,
            )

            def progress(done: int, total: int, bar=bar) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            result = billing_run(agency=agency, today=run_date, progress=progress)
            bar.close()
            if result.already_done:
                done_before += 1
                self.stdout.write(f"{agency.schema_name}: {run_date} already done — nothing to do")
                continue
            built += result.invoices_built
            existing += result.invoices_existing
            for currency, amount in result.totals.items():
                totals[currency] = totals.get(currency, 0) + amount
            agency_line = ""
            if result.agency_invoice_number:
                agency_line = f", agency invoice {result.agency_invoice_number}" + (
                    " (already built)" if result.agency_invoice_existed else ""
                )
            self.stdout.write(
                f"{agency.schema_name}: {result.invoices_built} client invoices built, "
                f"{result.invoices_existing} already built{agency_line}"
            )
        money = ", ".join(f"{format_minor(v, c)} {c}" for c, v in sorted(totals.items())) or "nothing"
        self.stdout.write(
            self.style.SUCCESS(
                f"{run_date}: {built} invoices built ({money}); {existing} skipped as already built; "
                f"{done_before} agencies had already run this date."
            )
        )
