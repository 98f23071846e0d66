"""The cluster test's hands on the database, run as `python -m tests.cluster.driver <command>` with the cluster's
DATABASE_URL, REDIS_URL and CELERY_QUEUE in the environment (the pytest process keeps its own test database).
Each command prints one JSON document.

    setup --agencies N --clients C --prefix P   agencies (schemas copied from a migrated template) with clients,
                                                saved sandbox cards and usage, clocks the day before the billing
                                                date, an Administrator and an API token each
    tick --at ISO                               beat's tick at that instant (billing_clock_tick)
    sweep                                       beat's reliability sweep
    progress --prefix P                         clocks at the billing date, notices not sent yet
    verify --prefix P --clients C --received F  exactly-once checks, and that no row of one agency shows another's
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import date, timedelta

BILLING_DATE = date(2027, 3, 1)


def _setup() -> None:
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agencybilling.settings.test")
    import django

    django.setup()


def setup(prefix: str, agencies: int, clients: int) -> dict:
    from django.core.management import call_command
    from django.db import connection
    from django_tenants.utils import tenant_context

    call_command("migrate_schemas", "--shared", verbosity=0)
    from accounts.models import Role, User
    from accounts.tokens import api_token_create
    from bench.population import bench_plan, clients_populate
    from bench.schemas import agencies_fast_create, template_ensure
    from tenants.models import Agency

    template_ensure()
    # The template agency is a schema to copy, not an agency: kept off the clock.
    Agency.objects.filter(schema_name="benchtpl").update(clock_date=date(2100, 1, 1))
    slugs = [f"{prefix}{n:03d}" for n in range(agencies)]
    agencies_fast_create(slugs, billing_day=1, plan=bench_plan(), clock_date=BILLING_DATE - timedelta(days=1))
    tokens = {}
    for agency in Agency.objects.filter(schema_name__in=slugs).order_by("schema_name"):
        Agency.objects.filter(pk=agency.pk).update(connected_account_id=f"acct_sbx_{agency.schema_name}")
        agency.connected_account_id = f"acct_sbx_{agency.schema_name}"
        clients_populate(
            agency=agency,
            count=clients,
            activated_on=date(2027, 1, 1),
            usage_period_start=date(2027, 2, 1),
            sandbox_cards=True,
        )
        with tenant_context(agency):
            admin = User.objects.create_user(f"admin@{agency.schema_name}.example", None, role=Role.ADMINISTRATOR)
            _, tokens[agency.schema_name] = api_token_create(actor=admin, name="cluster")
    connection.set_schema_to_public()
    return {"agencies": slugs, "tokens": tokens}


def tick(at: str) -> dict:
    from billing.tasks import billing_clock_tick

    sent = billing_clock_tick(at=at)
    return {"dispatched": None if sent is None else len(sent)}


def sweep() -> dict:
    from billing.tasks import reliability_sweep

    return reliability_sweep()


def progress(prefix: str) -> dict:
    from django.db import connection

    from notifications.models import Notice, OutboxStatus
    from tenants.models import Agency

    done = Agency.objects.filter(schema_name__startswith=prefix, clock_date__gte=BILLING_DATE).count()
    unsent = 0
    for slug in Agency.objects.filter(schema_name__startswith=prefix).values_list("schema_name", flat=True):
        connection.set_schema(slug)
        unsent += Notice.objects.filter(
            status__in=[OutboxStatus.PENDING, OutboxStatus.FAILED, OutboxStatus.SENDING]
        ).count()
    connection.set_schema_to_public()
    return {"done": done, "unsent": unsent}


def verify(prefix: str, clients: int, received: str) -> dict:
    """Exactly once: one invoice per client, gap-free numbers, one attempt per charge (every card pays), each
    notice key in the database once and received by the SMTP server at most once (exactly once when SENT).
    Isolation: every invoice and notice in an agency's schema is that agency's (the e-mail domains of its clients
    and recipients, and each notice's account: one of the schema's clients, or the agency itself)."""
    from django.db import connection
    from django.db.models import Count

    from billing.models import AgencyDay, Charge, ChargeAttempt, Invoice, RunStatus
    from billing.statuses import ChargeStatus
    from clients.models import Client
    from notifications.models import Notice, OutboxStatus
    from tenants.models import Agency

    keys = Counter(open(received).read().splitlines()) if received else Counter()
    figures: Counter = Counter()
    problems: list[str] = []
    for agency in Agency.objects.filter(schema_name__startswith=prefix).order_by("schema_name"):
        slug = agency.schema_name
        connection.set_schema(slug)
        domain = f"@{slug}.example"
        days = AgencyDay.objects.filter(day=BILLING_DATE, status=RunStatus.DONE).count()
        invoices = Invoice.objects.count()
        numbers = sorted(int(n.rsplit("-", 1)[-1]) for n in Invoice.objects.values_list("number", flat=True))
        # Charges due on the billing date are attempted once; Agency Invoiced ones and later installments never.
        due = Charge.objects.filter(due_on__lte=BILLING_DATE).exclude(status=ChargeStatus.AGENCY_INVOICED)
        per_charge = Counter(due.annotate(n=Count("attempts")).values_list("n", flat=True))
        not_due = ChargeAttempt.objects.exclude(charge__in=due).count()
        attempts = ChargeAttempt.objects.count()
        notices = Counter(Notice.objects.values_list("status", flat=True))
        foreign_clients = Invoice.objects.exclude(client__email__endswith=domain).count()
        foreign_notices = Notice.objects.exclude(to_email__endswith=domain).exclude(to_email=agency.email).count()
        own_clients = {str(public_id) for public_id in Client.objects.values_list("public_id", flat=True)}
        wrong_agency_text = sum(
            1
            for account in Notice.objects.values_list("account", flat=True)
            if account not in own_clients and not account.startswith("agency:")
        )
        figures.update(
            invoices=invoices, attempts=attempts, charges_due=sum(per_charge.values()), notices=sum(notices.values())
        )
        figures.update({f"notices_{status.lower()}": n for status, n in notices.items()})
        if agency.clock_date != BILLING_DATE or days != 1:
            problems.append(f"{slug}: day not done once (clock {agency.clock_date}, {days} done)")
        if invoices != clients or numbers != list(range(numbers[0], numbers[0] + len(numbers)) if numbers else []):
            problems.append(f"{slug}: {invoices} invoices for {clients} clients, numbers {numbers[:3]}…")
        if set(per_charge) != {1} or not_due:
            problems.append(f"{slug}: attempts per due charge {dict(per_charge)}, {not_due} on charges not due")
        if foreign_clients or foreign_notices or wrong_agency_text:
            problems.append(
                f"{slug}: rows of another agency: {foreign_clients} invoices, {foreign_notices} notice recipients, "
                f"{wrong_agency_text} notice accounts"
            )
        for account, kind, period, number, status in Notice.objects.values_list(
            "account", "kind", "period", "number", "status"
        ):
            got = keys.get(f"{account}/{kind}/{period}/{number}", 0)
            if got > 1 or (status == OutboxStatus.SENT and got != 1):
                figures["notice_key_problems"] += 1
                problems.append(f"{slug}: notice {account}/{kind} {status} received {got} times")
    connection.set_schema_to_public()
    figures["received_messages"] = sum(keys.values())
    figures["duplicate_messages"] = sum(n - 1 for n in keys.values() if n > 1)
    return {"figures": dict(figures), "problems": problems[:20], "violations": len(problems)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["setup", "tick", "sweep", "progress", "verify"])
    parser.add_argument("--prefix", default="cl")
    parser.add_argument("--agencies", type=int, default=10)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--at")
    parser.add_argument("--received", default="")
    args = parser.parse_args(argv)
    _setup()
    if args.command == "setup":
        result = setup(args.prefix, args.agencies, args.clients)
    elif args.command == "tick":
        result = tick(args.at)
    elif args.command == "sweep":
        result = sweep()
    elif args.command == "progress":
        result = progress(args.prefix)
    else:
        result = verify(args.prefix, args.clients, args.received)
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
