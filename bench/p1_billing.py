"""P1 — building a billing date's invoices and ledger entries for one agency of 10,000 clients.

Method: for each size (1k, 2.5k, 5k, 10k clients; quick: 0.5k, 2k) a fresh agency schema is populated with
the fixed client mix of bench/population.py and `billing_run` (the product's own entry point, as the
billing clock calls it) bills its billing date once, timed. Every run is then checked: one invoice per due
client, numbers gap-free, every invoice total equal to its lines and to its ledger charges.

Ceiling baseline, same run: the rows the largest run wrote (invoices, lines, ledger entries, charges) are
loaded with raw PostgreSQL `COPY ... FROM STDIN` into a second agency schema with the same tables,
constraints, indexes and triggers, in one transaction (median of 3). Ratio = billing rate / COPY rate.
"""

from __future__ import annotations

import io
import sys
from datetime import date

from bench.common import Row, Timer, bench_args, django_setup, median, profiled, write_result

BILLING_DATE = date(2027, 3, 1)
ACTIVATED_ON = date(2027, 1, 1)
USAGE_MONTH = date(2027, 2, 1)
TABLES = ["billing_invoice", "billing_invoiceline", "billing_ledgerentry", "billing_charge"]
TARGET_RATE = 3000.0
TARGET_COPY_SHARE = 0.15
LINEARITY_LIMIT = 1.25  # per-invoice cost at the largest size / at the smallest


def _check(agency, due: int) -> dict:
    """The invariants the fast path must keep (INV-1, MON-2, MON-4, CYC-4)."""
    from django.db import connection
    from django_tenants.utils import tenant_context

    with tenant_context(agency), connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*), COUNT(DISTINCT client_id) FROM billing_invoice")
        invoices, clients = cursor.fetchone()
        cursor.execute("SELECT array_agg(split_part(number, '-', 2)::int ORDER BY number) FROM billing_invoice")
        numbers = cursor.fetchone()[0] or []
        cursor.execute("SELECT next_number FROM billing_invoicesequence")
        next_number = cursor.fetchone()[0]
        cursor.execute("""
            SELECT COUNT(*) FROM billing_invoice i
            LEFT JOIN (SELECT invoice_id, SUM(amount_minor) s FROM billing_invoiceline GROUP BY 1) l
                   ON l.invoice_id = i.id
            LEFT JOIN (SELECT invoice_id, SUM(amount_minor) s FROM billing_ledgerentry GROUP BY 1) e
                   ON e.invoice_id = i.id
            LEFT JOIN (SELECT invoice_id, SUM(amount_minor) s FROM billing_charge GROUP BY 1) c ON c.invoice_id = i.id
            WHERE COALESCE(l.s, 0) <> i.total_minor OR COALESCE(e.s, 0) <> i.total_minor
               OR COALESCE(c.s, 0) <> i.total_minor
               OR i.total_minor <> i.subtotal_minor + i.tax_minor""")
        mismatched = cursor.fetchone()[0]
        counts = {}
        for table in TABLES:
            cursor.execute(f"SELECT COUNT(*) FROM {table}")
            counts[table] = cursor.fetchone()[0]
    problems = []
    if invoices != due or clients != due:
        problems.append(f"{invoices} invoices for {clients} clients, {due} due")
    if numbers != list(range(1, len(numbers) + 1)) or next_number != len(numbers) + 1:
        problems.append("invoice numbers are not gap-free")
    if mismatched:
        problems.append(f"{mismatched} invoices whose lines, ledger or charges differ from the total")
    return {"rows": counts, "problems": problems}


def _copy_baseline(source, size: int, repeats: int = 3) -> dict:
    """COPY the same rows into an identical, empty schema; the median time of `repeats` loads."""
    from django.db import connection, transaction

    from bench.schemas import agency_fast_create

    target = agency_fast_create(slug=f"{source.schema_name}copy", plan=source.plan)
    dumps: dict[str, bytes] = {}
    with connection.cursor() as cursor:
        raw = cursor.connection
        cursor.execute(
            f'INSERT INTO "{target.schema_name}".clients_client SELECT * FROM "{source.schema_name}".clients_client'
        )
        for table in TABLES:
            buffer = io.BytesIO()
            with raw.cursor().copy(f'COPY "{source.schema_name}".{table} TO STDOUT (FORMAT binary)') as copy:
                for chunk in copy:
                    buffer.write(chunk)
            dumps[table] = buffer.getvalue()
    times = []
    for _ in range(repeats):
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE " + ", ".join(f'"{target.schema_name}".{t}' for t in TABLES) + " CASCADE")
        with Timer() as timer, transaction.atomic(), connection.cursor() as cursor:
            raw = cursor.connection
            for table in TABLES:
                with raw.cursor().copy(f'COPY "{target.schema_name}".{table} FROM STDIN (FORMAT binary)') as copy:
                    copy.write(dumps[table])
        times.append(timer.seconds)
    seconds = median(times)
    return {"seconds": seconds, "times": times, "rate": size / seconds, "bytes": sum(map(len, dumps.values()))}


def main(argv: list[str] | None = None) -> int:
    args = bench_args(__doc__.splitlines()[0], argv)
    django_setup()
    from django.db import connection
    from django_tenants.utils import tenant_context

    from bench.population import bench_plan, clients_populate
    from bench.schemas import agency_fast_create
    from billing.invoicing import billing_run
    from billing.selectors import clients_due

    sizes = [500, 2000] if args.quick else [1000, 2500, 5000, 10000]
    plan = bench_plan()
    runs = []
    largest = None
    for size in sizes:
        agency = agency_fast_create(slug=f"p1c{size}", plan=plan, billing_day=1)
        clients_populate(agency=agency, count=size, activated_on=ACTIVATED_ON, usage_period_start=USAGE_MONTH)
        with tenant_context(agency):
            due = sum(1 for _ in clients_due(agency=agency, today=BILLING_DATE))
        connection.set_schema_to_public()
        with profiled(args.profile and size == sizes[-1], f"P1-{size}"), Timer() as timer:
            result = billing_run(agency=agency, today=BILLING_DATE)
        checked = _check(agency, due)
        runs.append(
            {
                "clients": size,
                "invoices": result.invoices_built,
                "seconds": timer.seconds,
                "rate": result.invoices_built / timer.seconds,
                "us_per_invoice": timer.seconds / max(result.invoices_built, 1) * 1e6,
                **checked,
            }
        )
        print(
            f"P1 {size} clients: {result.invoices_built} invoices in {timer.seconds:.2f}s "
            f"({runs[-1]['rate']:.0f}/s) {checked['problems'] or 'ok'}",
            file=sys.stderr,
        )
        largest = agency
    top = runs[-1]
    copy = _copy_baseline(largest, top["invoices"])
    print(f"P1 COPY of the same rows: {copy['seconds']:.3f}s ({copy['rate']:.0f} invoices/s)", file=sys.stderr)
    problems = [p for run in runs for p in run["problems"]]
    growth = top["us_per_invoice"] / runs[0]["us_per_invoice"]
    share = top["rate"] / copy["rate"]
    # Quick (CI): regression floors against the same run's COPY, robust to a busy machine; not the targets.
    rate_floor = 0.0 if args.quick else TARGET_RATE
    share_floor = 0.10 if args.quick else TARGET_COPY_SHARE
    growth_limit = 1.5 if args.quick else LINEARITY_LIMIT
    rows = [
        Row(
            "P1",
            f"billing date, {top['clients']:,} clients: invoices/s",
            (f">= {rate_floor:,.0f}/s and " if rate_floor else "") + f">= {share_floor:.0%} of COPY",
            round(top["rate"], 1),
            "invoices/s",
            passed=not problems and top["rate"] >= rate_floor and share >= share_floor,
            baseline=round(copy["rate"], 1),
            baseline_what="raw COPY of the same rows",
            ratio=round(share, 4),
            note="; ".join(problems),
            details={"runs": runs, "copy": copy},
        ),
        Row(
            "P1-growth",
            f"cost per invoice, {runs[0]['clients']:,} -> {top['clients']:,} clients",
            f"<= {growth_limit}x (linear)",
            round(growth, 3),
            "x",
            passed=growth <= growth_limit,
            baseline=round(runs[0]["us_per_invoice"], 1),
            baseline_what=f"us/invoice at {runs[0]['clients']:,}",
            ratio=round(growth, 3),
            details={"us_per_invoice": {r["clients"]: round(r["us_per_invoice"], 1) for r in runs}},
        ),
    ]
    write_result("P1", rows, quick=args.quick, out=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
