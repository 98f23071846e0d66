"""R12 — a provider webhook that fails in processing is recorded, retried with backoff, then a dead letter billing
support sees and can replay (COL-3, PAY-2; the attack review's F8).

Before, the FAILED row was written inside the transaction the failure rolled back: the event stayed "received",
attempts 0, error empty, and the sweeper re-enqueued it on every sweep, for ever, with nothing visible. Now the
failure is written in a transaction of its own; the sweeper re-enqueues a failed event only after its backoff and
only up to `WEBHOOK_MAX_ATTEMPTS`; then the event is a dead letter, listed on the console with its error and a
Replay button (audited), and nothing re-enqueues it by itself.

Signed events go through the real endpoint; a poison event (the review's: `metadata.schema = "public"` without
`kind`) fails in processing every time. Hypothesis mixes poison events with good ones in any order and checks
every good one is applied once and every poison one ends a dead letter, whatever the interleaving.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.models import AuditEntry, Role
from billing.platform.models import WebhookEvent, WebhookStatus
from billing.webhooks import WEBHOOK_MAX_ATTEMPTS, webhook_event_process, webhook_sweep
from tests.conftest import host_client, login_client, make_user
from tests.integration.test_webhooks import SECRET, event, sign
from tests.reliability.harness import record_figures, size

pytestmark = pytest.mark.django_db
FIGURES: Counter = Counter()


def _post(body: dict):
    payload = json.dumps(body).encode()
    return host_client(None).post(
        "/webhooks/stripe", data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=sign(payload)
    )


def _poison(event_id: str) -> dict:
    return event(
        event_id,
        "payment_intent.succeeded",
        {
            "id": f"pi_{event_id}",
            "object": "payment_intent",
            "status": "succeeded",
            "amount": 1000,
            "metadata": {"schema": "public", "attempt": "cl-poison-1"},
        },
    )


def _harmless(event_id: str) -> dict:
    return event(event_id, "customer.created", {"id": f"cus_{event_id}", "object": "customer"})


def _swept(now, grace) -> set[int]:
    """The events the sweeper would re-enqueue at `now` (its rule, read without enqueuing)."""
    from unittest import mock

    with mock.patch("billing.tasks.webhook_process.delay") as delay:
        webhook_sweep(now=now, grace=grace)
    return {call.kwargs["event_pk"] for call in delay.call_args_list}


def _fail_until_dead(pk: int) -> int:
    """Run processing as the task and the sweeper would, each retry after its backoff, until the event is a dead
    letter; the attempts it took in all."""
    grace = timedelta(minutes=2)
    while (stored := WebhookEvent.objects.get(pk=pk)).status != WebhookStatus.DEAD:
        if stored.attempts:  # a retry: the sweeper puts it back only once its backoff (doubling) has passed
            due = stored.received_at + grace * 2 ** min(stored.attempts, 12)
            assert pk not in _swept(due - timedelta(seconds=1), grace), "re-enqueued before its backoff"
            assert pk in _swept(due, grace)
        if stored.attempts + 1 < WEBHOOK_MAX_ATTEMPTS:
            with pytest.raises(Exception):  # noqa: B017 - whatever the poison raises, the task retries it
                webhook_event_process(pk)
        else:
            assert webhook_event_process(pk) == WebhookStatus.DEAD  # no exception: the task stops retrying
    return stored.attempts


def test_R12_a_failing_webhook_is_recorded_retried_with_backoff_then_a_dead_letter_support_replays(settings):
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    assert _post(_poison("evt_poison_1")).json() == {"status": "received"}  # its task: not run here
    stored = WebhookEvent.objects.get(event_id="evt_poison_1")
    with pytest.raises(Exception):  # noqa: B017
        webhook_event_process(stored.pk)
    stored.refresh_from_db()
    # Regression: the failure survives the rollback of the work.
    assert stored.status == WebhookStatus.FAILED and stored.attempts == 1 and stored.error

    assert _fail_until_dead(stored.pk) == WEBHOOK_MAX_ATTEMPTS
    stored.refresh_from_db()
    assert stored.status == WebhookStatus.DEAD and stored.attempts == WEBHOOK_MAX_ATTEMPTS and stored.error
    far = timezone.now() + timedelta(days=365)
    assert webhook_sweep(now=far, grace=timedelta(minutes=2)) == 0, "a dead letter is never re-enqueued by itself"

    support = make_user(None, "support@platform.test", Role.BILLING_SUPPORT)
    console = login_client(None, support.email)
    page = console.get("/").content.decode()
    assert "evt_poison_1" in page and html.escape(stored.error[:40]) in page
    replayed = console.post("/webhook-events/evt_poison_1/replay")
    assert replayed.status_code == 302
    stored.refresh_from_db()
    # Replayed (its task ran on commit and failed again: the cause is still there), with a fresh allowance.
    assert stored.status in (WebhookStatus.RECEIVED, WebhookStatus.FAILED, WebhookStatus.DEAD)
    assert AuditEntry.objects.filter(action="webhook.replay", actor=support.email).count() == 1
    assert console.post("/webhook-events/evt_unknown/replay").status_code == 404
    assert host_client(None).post("/webhook-events/evt_poison_1/replay").status_code in (302, 403)  # not signed in


def test_R12_fuzz_poison_and_good_events_in_any_order(settings):
    settings.STRIPE_WEBHOOK_SECRET = SECRET

    @hypothesis_settings(
        max_examples=size(ci=10, full=100),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(kinds=st.lists(st.booleans(), min_size=1, max_size=6), data=st.data())
    def run(kinds, data):
        # Everything drawn before anything is stored: an example Hypothesis abandons midway (its data ran out) would
        # otherwise leave events posted and never processed.
        order = data.draw(st.permutations(range(len(kinds))))
        FIGURES["rounds"] += 1
        ids = [(f"evt_{FIGURES['rounds']}_{n}", poison) for n, poison in enumerate(kinds)]
        for event_id, poison in ids:
            FIGURES["events"] += 1
            assert _post(_poison(event_id) if poison else _harmless(event_id)).status_code == 200
        stored = {e.event_id: e.pk for e in WebhookEvent.objects.filter(event_id__in=[i for i, _ in ids])}
        for event_id, poison in (ids[i] for i in order):
            if poison:
                _fail_until_dead(stored[event_id])
                FIGURES["dead_letters"] += 1
            else:
                assert webhook_event_process(stored[event_id]) in (WebhookStatus.PROCESSED, WebhookStatus.IGNORED)
                assert webhook_event_process(stored[event_id]) in (WebhookStatus.PROCESSED, WebhookStatus.IGNORED)
        for event_id, poison in ids:
            row = WebhookEvent.objects.get(event_id=event_id)
            if poison:
                assert row.status == WebhookStatus.DEAD and row.error and row.attempts == WEBHOOK_MAX_ATTEMPTS
            else:
                assert row.status in (WebhookStatus.PROCESSED, WebhookStatus.IGNORED) and row.attempts == 1

    run()
    left = WebhookEvent.objects.filter(status=WebhookStatus.RECEIVED, attempts=0, error="")
    assert not left.exists(), list(left.values_list("event_id", "event_type"))
    record_figures(
        "R12",
        {
            "events": FIGURES["events"],
            "dead_letters": FIGURES["dead_letters"],
            "max_attempts": WEBHOOK_MAX_ATTEMPTS,
            "failures_left_unrecorded": 0,
            "re_enqueued_after_dead": 0,
            "responses_5xx": 0,
        },
    )
