"""R13 — concurrent writes answer 2xx or 409 with the right counts, never 500 (COL-5, PLAN-3; the attack review's F9
and F10).

Ten concurrent card saves on one client gave eight 500s (the one-active-method unique constraint, hit by saves that
each found no committed method to retire), and ten concurrent usage POSTs of one record key stored one row but three
answered `created: 1`. Now saves of one client's method are serialized on the client row (each replaces the one
before, as saves one after another do), usage counts come from `INSERT … ON CONFLICT DO NOTHING RETURNING`, and an
IntegrityError anywhere in the API is answered 409 by the exception handler, in one place.

Threads behind a barrier send the requests through the API (each thread its own database connection); rounds with
random numbers of threads and random mixes of keys.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import date

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from accounts.models import Role
from billing.models import PaymentMethod, UsageRecord
from billing.platform.models import PaymentMethodFingerprint
from clients.models import Client
from tests.api.conftest import token_for
from tests.billing_helpers import client_create, with_plan
from tests.reliability.harness import record_figures, size

pytestmark = pytest.mark.django_db(transaction=True)
ROUNDS = size(ci=2, full=12)
FIGURES: Counter = Counter()


def _together(count: int, request) -> list:
    """`request(n)` on `count` threads released at once; their responses (or exceptions)."""
    barrier = threading.Barrier(count)
    answers: list = [None] * count

    def run(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            answers[n] = request(n)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            answers[n] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return answers


def _api(secret: str):
    from rest_framework.test import APIClient

    client = APIClient(HTTP_HOST="alpha.localhost")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_R13_COL_5_concurrent_card_saves_on_one_client_never_answer_500(agency_a):
    with_plan(agency_a)
    secret = token_for(agency_a, "admin@alpha.test", Role.ADMINISTRATOR)
    with schema_context(agency_a.schema_name):
        client = client_create(name="Zeta 007", email="z7@client.test", activated_on=date(2026, 12, 1))
    rng = random.Random(18)
    for round_ in range(ROUNDS):
        count = rng.randint(6, 12)
        answers = _together(
            count,
            lambda n, r=round_: _api(secret).post(
                f"/api/v1/clients/{client.public_id}/payment-method/",
                {"token": f"pm_card_visa:r13-{r}-{n}"},
                format="json",
            ),
        )
        statuses = Counter(getattr(a, "status_code", type(a).__name__) for a in answers)
        FIGURES.update({f"cards_{k}": v for k, v in statuses.items()})
        FIGURES["card_saves"] += count
        assert set(statuses) <= {200, 201, 409}, statuses
        with schema_context(agency_a.schema_name):
            active = PaymentMethod.objects.filter(client=client, removed_at__isnull=True)
            assert active.count() == 1
            claimed = PaymentMethodFingerprint.objects.filter(owner_public_id=client.public_id)
            assert list(claimed.values_list("fingerprint", flat=True)) == [active.get().fingerprint]


def test_R13_PLAN_3_concurrent_usage_posts_of_one_record_count_it_created_once(agency_a):
    with_plan(agency_a)
    secret = token_for(agency_a, "admin@alpha.test", Role.ADMINISTRATOR)
    with schema_context(agency_a.schema_name):
        client = client_create(name="Usage", email="u@client.test", activated_on=date(2026, 12, 1))
    rng = random.Random(10)
    for round_ in range(ROUNDS):
        count = rng.randint(6, 12)
        keys = [f"usage-race-{round_}-{k}" for k in range(rng.randint(1, 3))]
        batches = [rng.sample(keys, rng.randint(1, len(keys))) for _ in range(count)]

        def post(n, batch=None):
            records = [
                {
                    "client": str(client.public_id),
                    "product_code": "listings",
                    "quantity": 5,
                    "occurred_at": "2026-12-02T12:00:00Z",  # in the past: future usage is refused (PLAN-3)
                    "idempotency_key": key,
                }
                for key in batches[n]
            ]
            return _api(secret).post(
                "/api/v1/usage-records/", {"records": records}, format="json", HTTP_IDEMPOTENCY_KEY=f"req-{round_}-{n}"
            )

        answers = _together(count, post)
        statuses = Counter(getattr(a, "status_code", type(a).__name__) for a in answers)
        FIGURES.update({f"usage_{k}": v for k, v in statuses.items()})
        FIGURES["usage_posts"] += count
        assert set(statuses) <= {200, 201, 409}, statuses
        bodies = [a.json() for a in answers if a.status_code in (200, 201)]
        with schema_context(agency_a.schema_name):
            stored = UsageRecord.objects.filter(idempotency_key__in=keys).count()
        assert sum(b["created"] for b in bodies) == stored == len({k for b in batches for k in b})
        assert sum(b["created"] + b["already_present"] for b in bodies) == sum(len(b) for b in batches)
    record_figures(
        "R13",
        {
            **dict(FIGURES),
            "rounds": ROUNDS,
            "responses_5xx": 0,
            "created_counts_wrong": 0,
        },
    )
    with schema_context(agency_a.schema_name):
        assert Client.objects.count() == 1
