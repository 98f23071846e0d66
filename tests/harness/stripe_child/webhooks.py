"""Events and their delivery: signed like Stripe, in order per endpoint, retried with backoff, loopback only."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import traceback
from typing import Any

import aiohttp
from localstripe.resources import (
    Event,
)

from .core import S


def _endpoint_wants(endpoint_id: str, event: Any) -> bool:
    hook = S.webhooks.get(endpoint_id)
    if hook is None:
        return False
    if hook["events"] is not None and event.type not in hook["events"] and "*" not in hook["events"]:
        return False
    account = getattr(event, "account", None)
    if hook["connect"] is True and not account:
        return False
    return not (hook["connect"] is False and account)


def _schedule_event(event: Any) -> None:
    if not S.webhooks:
        return
    payload = json.dumps(event._export(), indent=2, sort_keys=True).encode()
    for endpoint_id in list(S.webhooks):
        if _endpoint_wants(endpoint_id, event):
            _enqueue_delivery(endpoint_id, event.id, event.type, getattr(event, "account", None), payload)


def _enqueue_delivery(endpoint_id: str, event_id: str, event_type: str, account: str | None, payload: bytes) -> None:
    queue = S.webhook_queues.get(endpoint_id)
    if queue is None:
        queue = S.webhook_queues[endpoint_id] = asyncio.Queue()
        S.webhook_workers[endpoint_id] = asyncio.ensure_future(_webhook_worker(endpoint_id, queue))
    S.pending_deliveries += 1
    queue.put_nowait(
        {
            "event_id": event_id,
            "type": event_type,
            "account": account,
            "payload": payload,
            "not_before": time.monotonic() + S.webhook_delay,
            "attempt": 1,
        }
    )


async def _webhook_worker(endpoint_id: str, queue: asyncio.Queue) -> None:
    """Delivers an endpoint's events one at a time, in order; failed deliveries are retried in the background."""
    while True:
        item = await queue.get()
        try:
            delay = item["not_before"] - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await _attempt_delivery(endpoint_id, item)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a broken delivery must not stop the worker
            traceback.print_exc()
            S.pending_deliveries -= 1


async def _attempt_delivery(endpoint_id: str, item: dict) -> None:
    hook = S.webhooks.get(endpoint_id)
    if hook is None:
        S.pending_deliveries -= 1
        return
    timestamp = int(time.time())
    signature = hmac.new(hook["secret"].encode(), b"%d." % timestamp + item["payload"], hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Stripe/1.0 (+https://stripe.com)",
        "Stripe-Signature": f"t={timestamp},v1={signature}",
    }
    status, error = None, None
    started = time.monotonic()
    try:
        assert S.session is not None
        async with S.session.post(
            hook["url"], data=item["payload"], headers=headers, timeout=aiohttp.ClientTimeout(total=S.webhook_timeout)
        ) as resp:
            status = resp.status
            await resp.read()
    except (aiohttp.ClientError, TimeoutError) as e:
        error = f"{type(e).__name__}: {e}"
    S.deliveries.append(
        {
            "endpoint": endpoint_id,
            "url": hook["url"],
            "event_id": item["event_id"],
            "type": item["type"],
            "account": item["account"],
            "attempt": item["attempt"],
            "status": status,
            "error": error,
            "at": time.time(),
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
        }
    )
    if status is not None and 200 <= status < 300:
        S.pending_deliveries -= 1
        return
    if item["attempt"] > S.webhook_retries:
        S.pending_deliveries -= 1
        return

    async def retry() -> None:
        try:
            await asyncio.sleep(S.webhook_backoff * 2 ** (item["attempt"] - 1))
            await _attempt_delivery(endpoint_id, {**item, "attempt": item["attempt"] + 1})
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            S.pending_deliveries -= 1

    _spawn(retry())


def _spawn(coro: Any) -> asyncio.Task:
    task = asyncio.ensure_future(coro)
    S.background.add(task)
    task.add_done_callback(S.background.discard)
    return task


def _emit(type_: str, obj: Any, previous: dict | None = None) -> Event:
    """Record an event (`data.object` is `obj` exported now) and schedule its deliveries. `previous` becomes
    `data.previous_attributes`, as on Stripe's `*.updated` events."""
    event = Event(type_, obj)
    if previous:
        event.data["previous_attributes"] = previous
    _schedule_event(event)
    return event
