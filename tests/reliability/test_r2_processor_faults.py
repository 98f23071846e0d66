"""R2 (issue 9): a fault-injecting proxy between the app and the Stripe-compatible test server — resets,
5xx and 429 before the server sees a request, and timeouts, 5xx and resets *after* it processed one.

Must hold (RET-4, COL-2, COL-3): every outcome reconciled with the processor's truth; zero double charges;
no attempt left unknown once the resolver has run (it runs through the same faulty network).
"""

from __future__ import annotations

import random
import time

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from billing.attempts import attempts_sweep
from billing.collection import collect_due
from billing.invoicing import billing_run
from billing.models import ChargeAttempt
from billing.providers.stripe import StripeProvider
from core.calendar import local_date
from tests.reliability import scenario
from tests.reliability.fault_proxy import FaultProxy
from tests.reliability.harness import record_figures, size

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

CLIENTS = size(ci=120, full=600)
FAULT_RATE = 0.3
MAX_RESOLVER_ROUNDS = 40
CONCURRENCY = 8  # collect_due keeps this many provider calls in flight (its production path)


def _unresolved() -> int:
    return ChargeAttempt.objects.filter(outcome__in=["STARTED", "UNKNOWN"]).count()


def test_R2_RET_4_faults_between_app_and_processor_never_double_charge(agency_a, clean_stripe):
    seed = random.randrange(1_000_000)
    day = scenario.billing_day_for(local_date(timezone.now(), agency_a.time_zone))
    kinds = scenario.build(agency=agency_a, stripe_url=clean_stripe.url, clients=CLIENTS, day=day, seed=seed)
    billing_run(agency=agency_a, today=day)
    started = time.monotonic()
    with FaultProxy(clean_stripe.port, rate=FAULT_RATE, seed=seed, hold_seconds=2.5) as proxy:
        # Short client timeouts so "processed, then silence" costs a second, not twenty.
        provider = StripeProvider(
            api_key=scenario.STRIPE_KEY, api_base=proxy.url, timeout=0.8, rate_limit_retries=2, concurrency=CONCURRENCY
        )
        with tenant_context(agency_a):
            summary = collect_due(today=day, provider=provider, retries=False)
            unknown_after_collection = _unresolved()
            rounds = 0
            while _unresolved() and rounds < MAX_RESOLVER_ROUNDS:
                rounds += 1
                attempts_sweep(today=day, started_before=timezone.now(), provider=provider)
            left_unknown = _unresolved()
            # A second run of the day's collection (as after a crash) must not attempt anything again.
            again = collect_due(today=day, provider=provider, retries=False)
            while _unresolved() and rounds < MAX_RESOLVER_ROUNDS:
                rounds += 1
                attempts_sweep(today=day, started_before=timezone.now(), provider=provider)
    elapsed = time.monotonic() - started

    figures, problems = scenario.verify(
        agency=agency_a, day=day, kinds=kinds, processor_intents=clean_stripe.payment_intents(), smtp_counts=None
    )
    with tenant_context(agency_a):
        left_unknown = max(left_unknown, _unresolved())
    share = proxy.faulted / max(proxy.requests, 1)
    record_figures(
        "R2",
        {
            **{
                k: figures[k]
                for k in (
                    "clients",
                    "charges",
                    "attempts",
                    "processor_payment_intents",
                    "collected_minor",
                    "duplicate_charges",
                    "attempts_per_charge_max",
                )
            },
            "seed": seed,
            "mix": kinds,
            "processor_calls": proxy.requests,
            "faults_injected": proxy.faulted,
            "fault_share": round(share, 3),
            "faults": {k: v for k, v in proxy.counts.items() if k != "none"},
            "unknown_after_collection": unknown_after_collection,
            "resolver_rounds": rounds,
            "unknown_after_resolver": left_unknown,
            "second_run_attempted": again.attempted,
            "first_run_attempted": summary.attempted,
            "concurrency": CONCURRENCY,
            "run_seconds": round(elapsed, 1),
            "violations": len(problems),
        },
    )
    assert share >= 0.2, f"only {share:.0%} of processor calls were faulted"
    assert proxy.counts["timeout_after"] and proxy.counts["5xx_after"] and proxy.counts["reset_after"]
    assert unknown_after_collection > 0, "the faults never left an outcome unknown: the test proves nothing"
    assert left_unknown == 0
    assert again.attempted == 0
    assert not problems, "\n".join(problems[:40])
