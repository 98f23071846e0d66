"""R3 (issue 9): a storm of webhook deliveries — 30 % duplicates, shuffled, delayed, from concurrent threads —
mixed with forged and stale signatures.

Two agencies get the same clients, bank debits and processor events. Agency B receives its events once, in
order; agency A receives the storm. Must hold (COL-3, PAY-2, NOT-7): A ends exactly as B (charges, attempts,
ledger, payouts, notices); 100 % of forged or stale deliveries are answered 400 and store nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import random
import threading
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from django.test import Client as HttpClient
from django_tenants.utils import schema_context, tenant_context

from agencybilling import seed as seeding
from billing.collection import collect_due
from billing.invoicing import billing_run
from billing.models import Charge, LedgerEntry
from billing.payment_methods import payment_method_attach
from billing.platform.models import Payout, SandboxPayout, WebhookEvent
from billing.selectors import client_balance
from billing.webhooks import webhook_sweep
from clients.models import Client
from clients.services import client_create
from notifications.models import Notice
from tests.billing_helpers import with_plan
from tests.reliability.harness import record_figures, size

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SECRET = "whsec_reliability_storm_0123456789"
DAY = date(2027, 1, 1)
DELIVERIES = size(ci=300, full=1000)
DUPLICATE_SHARE = 0.30
THREADS = 4


def _ts(day: date, hour: int = 12) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp())


def sign(payload: bytes, *, secret: str = SECRET, at: int | None = None) -> str:
    at = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def _setup(agency, clients: int) -> list[dict]:
    """`clients` clients on ACH debit with their first attempt Pending (sandbox processor)."""
    agency = with_plan(agency)
    seeding.payouts_ready(agency, today=DAY - timedelta(days=40))
    with schema_context(agency.schema_name):
        for i in range(clients):
            client = client_create(
                name=f"R3 client {i:04d}",
                email=f"r3-{i:04d}@example.com",
                activated_on=DAY - timedelta(days=60),
                license_price_minor=1000 + i,
            )
            payment_method_attach(client=client, token=f"ach:110000000:000123456789:{agency.schema_name}{i}")
    billing_run(agency=agency, today=DAY)
    with tenant_context(agency):
        collect_due(today=DAY)
        rows = []
        for charge in Charge.objects.select_related("client").prefetch_related("attempts").order_by("client__name"):
            attempt = charge.attempts.get()
            assert attempt.outcome == "PENDING"
            rows.append(
                {
                    "client": charge.client.name,
                    "reference": attempt.gateway_reference,
                    "attempt": attempt.idempotency_key,
                }
            )
    return rows


def _events(agency, rows: list[dict], tag: str, seed: int) -> list[dict]:
    """The processor's events for one agency, in the order they happened. The same seed gives the same
    outcomes and times to both agencies; only ids differ (the webhook inbox is platform-wide)."""
    rng = random.Random(seed)
    events = []
    succeeded: list[tuple[date, str]] = []
    for index, row in enumerate(rows):
        settled = DAY + timedelta(days=1 + index % 3)
        metadata = {"schema": agency.schema_name, "kind": "client", "attempt": row["attempt"]}
        if rng.random() < 0.75:
            kind, obj = "payment_intent.succeeded", {"status": "succeeded"}
            succeeded.append((settled, row["reference"]))
        else:
            kind, obj = (
                "payment_intent.payment_failed",
                {
                    "status": "requires_payment_method",
                    "last_payment_error": {
                        "code": "payment_method_provider_decline",
                        "decline_code": rng.choice(["insufficient_funds", "account_closed"]),
                    },
                },
            )
        events.append(
            {
                "id": f"evt_{tag}_pi_{index}",
                "type": kind,
                "created": _ts(settled, 8 + index % 9),
                "account": None,
                "data": {"object": {"id": row["reference"], "object": "payment_intent", "metadata": metadata, **obj}},
            }
        )
        if index % 10 == 0:  # something the product does not act on
            events.append(
                {
                    "id": f"evt_{tag}_other_{index}",
                    "type": "customer.updated",
                    "created": _ts(settled, 7),
                    "account": None,
                    "data": {"object": {"id": f"cus_{index}", "object": "customer"}},
                }
            )
    carried: set[str] = set()
    for number, arrival in enumerate((DAY + timedelta(days=3), DAY + timedelta(days=5), DAY + timedelta(days=8))):
        # The processor's books: each payout carries the payments settled before its arrival that no earlier
        # payout carried (what its balance transactions list).
        intents = [ref for day, ref in succeeded if day < arrival and ref not in carried]
        carried.update(intents)
        SandboxPayout.objects.create(
            reference=f"po_{tag}_{number}",
            destination=agency.connected_account_id,
            amount_minor=0,
            currency="USD",
            arrival_on=arrival,
            intents=intents,
        )
        events.append(
            {
                "id": f"evt_{tag}_payout_{number}",
                "type": "payout.paid",
                "created": _ts(arrival, 20),
                "account": agency.connected_account_id,
                "data": {
                    "object": {
                        "id": f"po_{tag}_{number}",
                        "object": "payout",
                        "status": "paid",
                        "arrival_date": _ts(arrival, 6),
                    }
                },
            }
        )
    for event in events:
        event.update({"object": "event", "livemode": False, "api_version": "2026-10-28.endive"})
    return sorted(events, key=lambda e: (e["created"], e["id"]))


def _post(http: HttpClient, body: bytes, signature: str | None):
    extra = {"HTTP_STRIPE_SIGNATURE": signature} if signature is not None else {}
    return http.post("/webhooks/stripe", data=body, content_type="application/json", **extra)


def _forgeries(events: list[dict], rng: random.Random, count: int) -> list[tuple[str, bytes, str | None, str]]:
    """(kind, body, signature header, event id) — each must be refused with 400 and stored nowhere."""
    forged = []
    kinds = ["wrong_secret", "stale", "future", "tampered", "missing", "garbage", "v0_only", "other_body"]
    for n in range(count):
        kind = kinds[n % len(kinds)]
        original = rng.choice(events)
        event = {**original, "id": f"{original['id']}_forged_{n}"}
        if kind == "tampered":  # a genuine signature, then the body is changed (turned into a payment)
            event = json.loads(json.dumps(original))
            event["type"] = "payment_intent.succeeded"
            event["data"]["object"].update(status="succeeded", amount_received=1)
        body = json.dumps(event).encode()
        signature: str | None = {
            "wrong_secret": sign(body, secret="whsec_attacker"),
            "stale": sign(body, at=int(time.time()) - rng.randrange(301, 7200)),
            "future": sign(body, at=int(time.time()) + rng.randrange(301, 7200)),
            "tampered": sign(json.dumps(original).encode()),
            "missing": None,
            "garbage": rng.choice(["t=abc,v1=zzz", "v1=" + "0" * 64, "", "t=1", "nonsense"]),
            "v0_only": sign(body).replace("v1=", "v0="),
            "other_body": sign(json.dumps(rng.choice(events)).encode()),
        }[kind]
        forged.append((kind, body, signature, event["id"]))
    return forged


def _snapshot(agency) -> dict:
    with schema_context(agency.schema_name):
        state = {}
        for client in Client.objects.order_by("name"):
            charge = Charge.objects.get(client=client)
            attempt = charge.attempts.get()
            notices = sorted(Notice.objects.filter(account=str(client.public_id)).values_list("kind", "number"))
            agency_notices = sorted(
                Notice.objects.filter(period__startswith=str(client.public_id)).values_list("kind", "number")
            )
            payments = list(
                LedgerEntry.objects.filter(client=client, entry_type="PAYMENT").values_list(
                    "amount_minor", "occurred_on"
                )
            )
            state[client.name] = (
                charge.status,
                charge.paid_on,
                charge.next_retry_on,
                charge.paid_out_on,
                charge.payout_reference.rsplit("_", 1)[-1] if charge.payout_reference else "",
                attempt.outcome,
                attempt.decline_code,
                client_balance(client),
                payments,
                notices,
                agency_notices,
            )
        payouts = sorted(
            (p.reference.rsplit("_", 1)[-1], p.status, p.arrival_on)
            for p in Payout.objects.filter(account=agency.connected_account_id)
        )
        return {"clients": state, "payouts": payouts}


def test_R3_COL_3_PAY_2_webhook_storm_equals_in_order_once_only(agency_a, agency_b, settings, eager_tasks):
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    # deliveries = unique + duplicates, duplicates = 30 % of deliveries; unique ≈ 1.1 × clients + 3 payouts
    unique_target = round(DELIVERIES * (1 - DUPLICATE_SHARE))
    clients = max(10, round((unique_target - 3) / 1.1))
    rows_a, rows_b = _setup(agency_a, clients), _setup(agency_b, clients)
    events_a = _events(agency_a, rows_a, "a", seed)
    events_b = _events(agency_b, rows_b, "b", seed)

    # B: once, in order, one after the other.
    http = HttpClient(HTTP_HOST="localhost")
    for event in events_b:
        body = json.dumps(event).encode()
        assert _post(http, body, sign(body)).status_code == 200

    # A: the storm. Duplicates, shuffled, some held back to the very end, forged ones mixed in, 4 threads.
    duplicates = round(len(events_a) * DUPLICATE_SHARE / (1 - DUPLICATE_SHARE))
    deliveries = [("genuine", e) for e in events_a] + [("duplicate", rng.choice(events_a)) for _ in range(duplicates)]
    rng.shuffle(deliveries)
    late = {index for index in range(len(deliveries)) if rng.random() < 0.1}
    held_back = [d for index, d in enumerate(deliveries) if index in late]
    deliveries = [d for index, d in enumerate(deliveries) if index not in late] + held_back
    forged = _forgeries(events_a, rng, max(24, len(events_a) // 10))
    work: queue.Queue = queue.Queue()
    for item in deliveries:
        work.put(("event", item))
    for index, forgery in enumerate(forged):  # spread through the stream
        work.queue.insert(rng.randrange(len(work.queue) + 1) if index else 0, ("forged", forgery))
    statuses: Counter = Counter()
    forged_answers: Counter = Counter()
    errors: list[str] = []

    def deliver() -> None:
        client = HttpClient(HTTP_HOST="localhost")
        while True:
            try:
                what, item = work.get_nowait()
            except queue.Empty:
                return
            if rng.random() < 0.05:
                time.sleep(rng.uniform(0.01, 0.2))  # a delayed delivery
            if what == "event":
                _, event = item
                body = json.dumps(event).encode()
                response = _post(client, body, sign(body))
                statuses[response.status_code] += 1
                if response.status_code != 200:
                    errors.append(f"{event['id']}: {response.status_code} {response.content[:200]!r}")
            else:
                kind, body, signature, _event_id = item
                response = _post(client, body, signature)
                forged_answers[(kind, response.status_code)] += 1
                if response.status_code != 400 or set(response.json()) != {"code", "message", "fields"}:
                    errors.append(f"forged ({kind}) answered {response.status_code}")

    started = time.monotonic()
    threads = [threading.Thread(target=deliver) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    elapsed = time.monotonic() - started
    requeued = webhook_sweep(now=datetime.now(UTC) + timedelta(hours=1), grace=timedelta(seconds=1))

    stored_forged = WebhookEvent.objects.filter(event_id__in=[f[3] for f in forged if f[0] != "tampered"]).count()
    inbox = Counter(WebhookEvent.objects.filter(event_id__startswith="evt_a_").values_list("status", flat=True))
    snapshot_a, snapshot_b = _snapshot(agency_a), _snapshot(agency_b)
    differing = [
        name for name in snapshot_b["clients"] if snapshot_a["clients"].get(name) != snapshot_b["clients"][name]
    ]
    final = Counter(state[0] for state in snapshot_a["clients"].values())
    rejected = sum(n for (kind, code), n in forged_answers.items() if code == 400)
    record_figures(
        "R3",
        {
            "seed": seed,
            "clients_per_agency": clients,
            "unique_events": len(events_a),
            "deliveries": len(deliveries),
            "duplicates": duplicates,
            "duplicate_share": round(duplicates / len(deliveries), 3),
            "held_back_to_the_end": len(held_back),
            "threads": THREADS,
            "forged_or_stale": len(forged),
            "forged_rejected_400": rejected,
            "forged_stored": stored_forged,
            "forged_kinds": dict(Counter(k for k, *_ in forged)),
            "answers": dict(statuses),
            "inbox": dict(inbox),
            "requeued_by_sweeper": requeued,
            "final_charge_statuses": dict(final),
            "clients_differing_from_in_order": len(differing),
            "payouts_equal": snapshot_a["payouts"] == snapshot_b["payouts"],
            "run_seconds": round(elapsed, 1),
        },
    )
    assert not differing, (
        f"{len(differing)} clients differ, e.g. {differing[0]}: "
        f"{snapshot_a['clients'][differing[0]]} != {snapshot_b['clients'][differing[0]]}"
    )
    assert not errors, "\n".join(errors[:20])
    assert rejected == len(forged) and stored_forged == 0
    assert inbox == {
        "PROCESSED": len(events_a) - sum(e["type"] == "customer.updated" for e in events_a),
        "IGNORED": sum(e["type"] == "customer.updated" for e in events_a),
    }
    assert requeued == 0
    assert not differing, (
        f"{len(differing)} clients differ, e.g. {differing[0]}: "
        f"{snapshot_a['clients'][differing[0]]} != {snapshot_b['clients'][differing[0]]}"
    )
    assert snapshot_a["payouts"] == snapshot_b["payouts"] and len(snapshot_a["payouts"]) == 3
    assert {"PAID_OUT", "RETRYING"} <= set(final)
