"""Prometheus metrics (prometheus-client): what the web's `/metrics` and each worker's metrics port expose.

Counters and histograms are counted where the work happens (day steps, charge attempts, notices, tasks). With
`PROMETHEUS_MULTIPROC_DIR` set (gunicorn's workers, Celery's prefork pool: several processes per host), every
process writes its values there and a scrape adds them up (prometheus-client's multiprocess mode); without it,
a process exposes its own. Gauges that describe the platform rather than a process — queue depth, the oldest
provider event waiting, notices waiting — are read at scrape time (`PlatformCollector`), so every scrape of any
web process reports the same figures.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

TASKS = Counter(
    "agencybilling_tasks", "Celery tasks finished, by queue, task and outcome.", ["queue", "task", "outcome"]
)
TASK_SECONDS = Histogram(
    "agencybilling_task_seconds",
    "Celery task run time, by queue.",
    ["queue"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
DAY_STEP_SECONDS = Histogram(
    "agencybilling_day_step_seconds",
    "Duration of each step of an agency's day (billing/day.py).",
    ["step"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
CHARGES = Counter(
    "agencybilling_charge_attempts",
    "Charge attempts recorded by collection, by outcome (succeeded, pending, declined, unknown, ...).",
    ["outcome"],
)
NOTICES = Counter(
    "agencybilling_notices", "Notices handed to the mail server, by result (sent, failed, uncertain).", ["result"]
)
WEBHOOK_LAG_SECONDS = Histogram(
    "agencybilling_webhook_lag_seconds",
    "From a provider event's arrival to the end of its processing.",
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
)


class PlatformCollector(Collector):
    """Gauges read when scraped: each queue's depth (Redis list length) and what waits in the database."""

    def __init__(self, *, queue_depths: Callable[[], dict[str, int]], waiting: Callable[[], dict[str, float]]):
        self.queue_depths = queue_depths
        self.waiting = waiting

    def collect(self) -> Iterable[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "agencybilling_queue_depth", "Messages waiting in each Celery queue.", labels=["queue"]
        )
        for queue, length in self.queue_depths().items():
            depth.add_metric([queue], length)
        yield depth
        for name, value in self.waiting().items():
            yield GaugeMetricFamily(f"agencybilling_{name}", name.replace("_", " ").capitalize() + ".", value=value)


def exposition(extra: Collector | None = None) -> bytes:
    """The text exposition of this host's processes (all of them in multiprocess mode) plus `extra`."""
    from prometheus_client import REGISTRY

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    if extra is not None:
        scraped = CollectorRegistry()
        scraped.register(extra)
        text += generate_latest(scraped)
    return text


class Stopwatch:
    """`with Stopwatch() as watch: ...; watch.seconds`"""

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
