"""A billing day with many clients against the Stripe-compatible test server, and the checks that prove it
ran exactly once whatever crashed (R1, R4).

Usable in-process (pytest-django's database) and as a command for child processes pointed at another
database (R4 restarts a private PostgreSQL):

    python -m tests.reliability.scenario build --agency alpha --clients 300 --stripe URL --day 2026-11-22
    python -m tests.reliability.scenario state --agency alpha --day 2026-11-22
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import date, timedelta
from typing import Any

STRIPE_KEY = "sk_test_reliability"
AGENCY_EMAIL = "ops@agency.example"

# What each client is set up with, and the status its charge must end in on the billing day.
MIX: list[tuple[str, float, str]] = [
    ("card_ok", 0.60, "PAID"),
    ("card_declined", 0.15, "RETRYING"),
    ("ach", 0.10, "PENDING"),
    ("no_method", 0.07, "UNCOLLECTABLE"),
    ("agency_invoiced", 0.08, "AGENCY_INVOICED"),
]
EXPECTED_STATUS = {kind: status for kind, _, status in MIX}
TOKENS = {"card_ok": "pm_card_visa", "card_declined": "pm_card_chargeCustomerFail", "ach": "pm_usBankAccount_success"}
# The notices each kind's charge sends on its first attempt (NOT-4, NOT-6, COL-4, COL-1).
EXPECTED_NOTICES = {
    "card_ok": {"PAYMENT_RECEIVED"},
    "card_declined": {"PAYMENT_FAILED", "AGENCY_CHARGE_FAILED"},
    "ach": set(),
    "no_method": {"PAYMENT_FAILED", "AGENCY_CHARGE_FAILED", "AGENCY_CHARGE_UNCOLLECTABLE"},
    "agency_invoiced": set(),
}
FINAL_STATUSES = {"PAID", "PENDING", "RETRYING", "UNCOLLECTABLE", "AGENCY_INVOICED", "PAID_OUT"}


def billing_day_for(today: date) -> date:
    """The latest date up to `today` that can be a billing day (1–28)."""
    return today if today.day <= 28 else today.replace(day=28)


def kinds_for(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    kinds = []
    for kind, share, _ in MIX:
        kinds += [kind] * round(count * share)
    kinds = (kinds + ["card_ok"] * count)[:count]
    rng.shuffle(kinds)
    return kinds


def build(*, agency, stripe_url: str, clients: int, day: date, seed: int = 7) -> dict[str, int]:
    """Plan, connected account, `clients` clients billed on `day` with payment methods at the Stripe server,
    and the agency's clock set to the day before (so the clock runs `day` next)."""
    import stripe
    from django_tenants.utils import schema_context

    from agencybilling import seed as seeding
    from billing.models import PaymentMethod
    from billing.providers.stripe import StripeProvider
    from clients.models import Client
    from tenants.models import Agency
    from tests.billing_helpers import with_plan

    agency = with_plan(agency)
    provider = StripeProvider(api_key=STRIPE_KEY, api_base=stripe_url)
    server = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": stripe_url})
    agency.email = AGENCY_EMAIL
    agency.save(update_fields=["email"])
    seeding.payouts_connected(agency, provider=provider)
    kinds = kinds_for(clients, seed)
    rng = random.Random(seed)
    with schema_context(agency.schema_name):
        rows = Client.objects.bulk_create(
            [
                Client(
                    name=f"Client {i:05d} {kind}",
                    email=f"client{i:05d}@example.com",
                    license_price_minor=rng.randrange(1000, 50000),
                    billing_day=day.day,
                    activated_on=day - timedelta(days=60),
                    agency_invoiced=kind == "agency_invoiced",
                    agency_invoiced_reason="billed by the agency" if kind == "agency_invoiced" else "",
                )
                for i, kind in enumerate(kinds)
            ]
        )
        methods = []
        for client, kind in zip(rows, kinds, strict=True):
            if kind not in TOKENS:
                continue
            customer = server.v1.customers.create(params={"email": client.email, "name": client.name})
            method = server.v1.payment_methods.attach(TOKENS[kind], params={"customer": customer.id})
            client.provider_customer_id = customer.id
            details = getattr(method, method.type)
            # Stored the way payment_method_attach stores them; the fingerprint claim (COL-5) is bypassed on
            # purpose: Stripe's decline test cards share one fingerprint and this test is about collection.
            methods.append(
                PaymentMethod(
                    client=client,
                    reference=method.id,
                    kind=method.type,
                    fingerprint=f"reliability-{client.public_id}",
                    brand=getattr(details, "brand", "") or "",
                    last4=details.last4,
                )
            )
        Client.objects.bulk_update(rows, ["provider_customer_id"], batch_size=500)
        PaymentMethod.objects.bulk_create(methods)
    Agency.objects.filter(pk=agency.pk).update(clock_date=day - timedelta(days=1))
    return dict(Counter(kinds))


def progress(*, agency) -> dict[str, int]:
    """Cheap counters for the moment of a kill."""
    from django_tenants.utils import schema_context

    from billing.models import ChargeAttempt, Invoice
    from notifications.models import Notice

    with schema_context(agency.schema_name):
        return {
            "invoices": Invoice.objects.count(),
            "attempts": ChargeAttempt.objects.count(),
            "notices": Notice.objects.count(),
            "sent": Notice.objects.filter(status="SENT").count(),
        }


def settled(*, agency, day: date) -> bool:
    """Nothing left to do: the day is recorded, no attempt unresolved, every notice sent or closed."""
    from django_tenants.utils import schema_context

    from billing.models import Charge, ChargeAttempt
    from notifications.models import Notice
    from tenants.models import Agency

    clock = Agency.objects.filter(pk=agency.pk).values_list("clock_date", flat=True).first()
    if clock is None or clock < day:
        return False
    with schema_context(agency.schema_name):
        if ChargeAttempt.objects.filter(outcome__in=["STARTED", "UNKNOWN"]).exists():
            return False
        if Charge.objects.filter(status="SCHEDULED", due_on__lte=day).exists():
            return False
        return not Notice.objects.exclude(status__in=["SENT", "UNCERTAIN"]).exists()


def verify(
    *, agency, day: date, kinds: dict[str, int], processor_intents: list[dict], smtp_counts: Counter | None
) -> tuple[dict[str, Any], list[str]]:
    """Compare the database with the processor's books and (unless None) the SMTP server's inbox.

    Returns (figures, violations); a correct run has no violations."""
    from django.db.models import Sum
    from django_tenants.utils import schema_context

    from billing.models import Charge, ChargeAttempt, Invoice, LedgerEntry
    from clients.models import Client
    from notifications.models import Notice

    problems: list[str] = []
    with schema_context(agency.schema_name):
        clients = {c.pk: c for c in Client.objects.all()}
        kind_of = {pk: c.name.split(" ", 2)[2] for pk, c in clients.items()}
        invoices = list(Invoice.objects.filter(period_start=day).values("id", "client_id", "number"))
        per_client = Counter(i["client_id"] for i in invoices)
        doubles = {pk: n for pk, n in per_client.items() if n > 1}
        if doubles:
            problems.append(f"{len(doubles)} clients have more than one invoice for {day}")
        missing = set(clients) - set(per_client)
        if missing:
            problems.append(f"{len(missing)} clients have no invoice for {day}")
        numbers = sorted(int(i["number"].rsplit("-", 1)[1]) for i in Invoice.objects.values("number"))
        if numbers != list(range(1, len(numbers) + 1)):
            problems.append("invoice numbers have gaps or repeats")

        charges = list(
            Charge.objects.filter(invoice__period_start=day).values(
                "id", "client_id", "status", "amount_minor", "paid_reference"
            )
        )
        statuses = Counter(c["status"] for c in charges)
        for charge in charges:
            expected = EXPECTED_STATUS[kind_of[charge["client_id"]]]
            if charge["status"] != expected:
                problems.append(
                    f"charge {charge['id']} ({kind_of[charge['client_id']]}) is {charge['status']}, expected {expected}"
                )
        not_final = [c for c in charges if c["status"] not in FINAL_STATUSES]
        if not_final:
            problems.append(f"{len(not_final)} charges are not in a final status")

        attempts = list(
            ChargeAttempt.objects.values(
                "id", "charge_id", "number", "idempotency_key", "outcome", "amount_minor", "gateway_reference"
            )
        )
        unresolved = [a for a in attempts if a["outcome"] in ("STARTED", "UNKNOWN")]
        if unresolved:
            problems.append(f"{len(unresolved)} attempts are still unresolved")
        per_charge = Counter(a["charge_id"] for a in attempts)
        extra = {cid: n for cid, n in per_charge.items() if n > 1}
        if extra:
            problems.append(f"{len(extra)} charges got more than one attempt on their first day")

        # The processor's books against the database's.
        intents_by_key: dict[str, list[dict]] = defaultdict(list)
        for intent in processor_intents:
            intents_by_key[(intent.get("metadata") or {}).get("attempt", "")].append(intent)
        keys = {a["idempotency_key"] for a in attempts}
        strangers = set(intents_by_key) - keys
        if strangers:
            problems.append(f"{len(strangers)} PaymentIntents at the processor match no attempt")
        outcome_of = {"succeeded": "SUCCEEDED", "processing": "PENDING", "requires_payment_method": "DECLINED"}
        succeeded_per_charge: Counter = Counter()
        for attempt in attempts:
            found = intents_by_key.get(attempt["idempotency_key"], [])
            if len(found) != 1:
                problems.append(f"attempt {attempt['idempotency_key']} has {len(found)} PaymentIntents")
                continue
            intent = found[0]
            if outcome_of.get(intent["status"]) != attempt["outcome"]:
                problems.append(
                    f"attempt {attempt['idempotency_key']} is {attempt['outcome']} but the processor "
                    f"says {intent['status']}"
                )
            if intent["amount"] != attempt["amount_minor"]:
                problems.append(f"attempt {attempt['idempotency_key']} amount differs from the processor's")
            if intent["status"] == "succeeded":
                succeeded_per_charge[attempt["charge_id"]] += 1
        double_paid = [cid for cid, n in succeeded_per_charge.items() if n > 1]
        if double_paid:
            problems.append(f"{len(double_paid)} charges were paid twice at the processor")
        processor_collected = sum(i["amount"] for i in processor_intents if i["status"] == "succeeded")
        db_collected = sum(c["amount_minor"] for c in charges if c["status"] in ("PAID", "PAID_OUT"))
        if processor_collected != db_collected:
            problems.append(f"processor collected {processor_collected}, the database says {db_collected}")

        payments = LedgerEntry.objects.filter(entry_type="PAYMENT")
        paid_refs = Counter(payments.values_list("reference", flat=True))
        if any(n > 1 for n in paid_refs.values()):
            problems.append("a payment was entered in the ledger twice")
        ledger_paid = -(payments.aggregate(s=Sum("amount_minor"))["s"] or 0)
        if ledger_paid != db_collected:
            problems.append(f"ledger payments {ledger_paid} differ from paid charges {db_collected}")

        # Notices: the right ones queued, once; and (when mail was sent) the rows against the SMTP inbox.
        notices = list(Notice.objects.values("account", "kind", "period", "number", "status"))
        by_status = Counter(n["status"] for n in notices)
        client_kinds = {str(c.public_id): kind_of[pk] for pk, c in clients.items()}
        got: dict[str, set[str]] = defaultdict(set)
        for notice in notices:
            if notice["account"].startswith("agency:"):
                got[notice["period"].split("/", 1)[0]].add(notice["kind"])
            else:
                got[notice["account"]].add(notice["kind"])
        wrong = [cid for cid, kind in client_kinds.items() if got.get(cid, set()) != EXPECTED_NOTICES[kind]]
        if wrong:
            problems.append(f"{len(wrong)} clients did not get exactly their expected notices")
        twice: dict[str, int] = {}
        uncertain_received = 0
        if smtp_counts is not None:

            def key(n: dict) -> str:
                return f"{n['account']}/{n['kind']}/{n['period']}/{n['number']}"

            twice = {k: n for k, n in smtp_counts.items() if n > 1}
            if twice:
                problems.append(f"{len(twice)} notices were e-mailed more than once: {sorted(twice)[:5]}")
            unknown_mail = set(smtp_counts) - {key(n) for n in notices}
            if unknown_mail:
                problems.append(f"{len(unknown_mail)} e-mails match no outbox row")
            for notice in notices:
                received = smtp_counts.get(key(notice), 0)
                if notice["status"] == "SENT" and received != 1:
                    problems.append(f"notice {key(notice)} is SENT but was received {received} times")
                if notice["status"] not in ("SENT", "UNCERTAIN"):
                    problems.append(f"notice {key(notice)} was never sent ({notice['status']})")
                uncertain_received += notice["status"] == "UNCERTAIN" and received > 0

    figures = {
        "clients": len(clients),
        "mix": kinds,
        "invoices": len(invoices),
        "charges": dict(statuses),
        "attempts": len(attempts),
        "processor_payment_intents": len(processor_intents),
        "collected_minor": db_collected,
        "notices": dict(by_status),
        "emails_received": sum(smtp_counts.values()) if smtp_counts is not None else None,
        "uncertain_notices_received": uncertain_received,
        "duplicate_emails": len(twice),
        "duplicate_charges": len(double_paid),
        "duplicate_invoices": len(doubles),
        "attempts_per_charge_max": max(per_charge.values(), default=0),
    }
    return figures, problems


def main(argv: list[str] | None = None) -> int:
    """Run against the database in DATABASE_URL (a child process of R4, pointed at a private server)."""
    import argparse
    import json
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agencybilling.settings.test")
    import django

    django.setup()
    from tenants.models import Agency
    from tenants.services import agency_create

    parser = argparse.ArgumentParser(prog="python -m tests.reliability.scenario")
    parser.add_argument("command", choices=["build", "state", "verify"])
    parser.add_argument("--agency", required=True)
    parser.add_argument("--day", required=True, type=date.fromisoformat)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--stripe", default="")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--kinds", help="JSON file: the mix `build` printed")
    parser.add_argument("--intents", help="JSON file: the processor's PaymentIntents")
    parser.add_argument("--smtp", help="JSON file: {X-Notice-Key: count} received by the SMTP server")
    args = parser.parse_args(argv)
    agency = Agency.objects.filter(schema_name=args.agency).first()
    if args.command == "build":
        if agency is None:
            agency = agency_create(slug=args.agency, name=f"{args.agency.title()} Agency", time_zone="America/New_York")
        print(
            json.dumps(build(agency=agency, stripe_url=args.stripe, clients=args.clients, day=args.day, seed=args.seed))
        )
        return 0
    assert agency is not None, f"no agency {args.agency!r}"
    if args.command == "state":
        print(json.dumps({"settled": settled(agency=agency, day=args.day), **progress(agency=agency)}))
        return 0
    with open(args.kinds) as kinds, open(args.intents) as intents, open(args.smtp) as smtp:
        figures, problems = verify(
            agency=agency,
            day=args.day,
            kinds=json.load(kinds),
            processor_intents=json.load(intents),
            smtp_counts=Counter(json.load(smtp)),
        )
    print(json.dumps({"figures": figures, "problems": problems}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
