"""Celery queues, one per kind of work, and which task goes to which (read by the settings; no Django here).

Each kind has a queue of its own, `<prefix>.<kind>` (the prefix is `CELERY_QUEUE`, `agencybilling` by default), so
each can be drained by workers of its own and a slow kind never holds another up: a worker started without `-Q`
consumes every queue (kombu's Redis transport takes from them in turn), `-Q agencybilling.notices` only one.
Anything not listed here goes to the default queue, `<prefix>` itself, which every worker also consumes.

Kinds (docs/operations.md has the picture):

- **clock**: beat's tick, each agency's days (the whole day pipeline, in date order under the agency's advisory
  lock wherever it runs), the sweeps, and the platform's housekeeping;
- **collection**: charge attempts outside the day (resolving attempts whose outcome is unknown);
- **notices**: sending the notice outbox (a batch of notices per task, one SMTP connection);
- **webhooks-in**: processing stored provider (Stripe) events;
- **webhooks-out**: delivering the agency's outbound webhooks (slow receivers wait here, nowhere else);
- **pdfs**: rendering and storing invoice PDFs ahead of their first download.
"""

from __future__ import annotations

TASK_KINDS: dict[str, str] = {
    "billing.tasks.billing_clock_tick": "clock",
    "billing.tasks.agency_clock_run": "clock",
    "billing.tasks.reliability_sweep": "clock",
    "billing.tasks.agency_sweep": "clock",
    "tenants.tasks.billing_clock_tick": "clock",
    "tenants.tasks.agency_clock_run": "clock",
    "tenants.tasks.reliability_sweep": "clock",
    "tenants.tasks.agency_sweep": "clock",
    "api.tasks.idempotency_expire": "clock",
    "tenants.tasks.spare_schemas_refill": "clock",
    "billing.tasks.agency_attempts_resolve": "collection",
    "notifications.tasks.notices_send": "notices",
    "notifications.tasks.notice_send": "notices",
    "billing.tasks.webhook_process": "webhooks-in",
    "integrations.tasks.webhook_deliver": "webhooks-out",
    "billing.tasks.invoice_pdfs_store": "pdfs",
}
KINDS = ("clock", "collection", "notices", "webhooks-in", "webhooks-out", "pdfs")


def queue_name(prefix: str, kind: str) -> str:
    return f"{prefix}.{kind}"


def celery_routing(prefix: str) -> tuple[dict[str, dict[str, str]], list[str]]:
    """(task_routes, every queue name) for a queue prefix: the default queue first, then one per kind."""
    routes = {task: {"queue": queue_name(prefix, kind)} for task, kind in TASK_KINDS.items()}
    return routes, [prefix, *(queue_name(prefix, kind) for kind in KINDS)]
