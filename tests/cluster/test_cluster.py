"""Several hosts on one machine (network namespaces, tests/cluster/hosts.py): PostgreSQL, PgBouncer (session mode),
Redis and an SMTP server on one host, Celery workers on two or three, the web server on one. A simulated billing
day for many agencies runs across the worker hosts; one worker host is killed mid-day, every process at once. The
day completes on the others: each client invoiced once, charged once, each notice sent at most once (exactly once
when recorded sent); no task or request ever works in another agency's schema through a pooled connection — every
row of an agency's schema is that agency's, and every API answer during the day shows only the asking agency's
clients. Then the same day for as many new agencies on one worker host alone, for the time it takes.

`make test` runs the CI size; `make test-cluster` the full one (CLUSTER_SIZE=full). Figures are written to
`.local/reliability/cluster.json` (docs/operations.md, docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tests.cluster import hosts
from tests.reliability.harness import record_figures

FULL = os.environ.get("CLUSTER_SIZE", "ci") == "full"
AGENCIES = 100 if FULL else 10
CLIENTS = 20
WORKER_HOSTS = 3 if FULL else 2
DEADLINE = 900 if FULL else 360
TICK = 60  # BILLING_TICK_SECONDS of the cluster: each "next tick" is an instant one slot later
START = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)

pytestmark = [pytest.mark.slow]


def _driver(env: dict[str, str], *args: str, timeout: float = 900) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "tests.cluster.driver", *args],
        cwd=hosts.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"driver {args[0]} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _progress(db: hosts.DbHost, prefix: str) -> dict:
    """Clocks at the billing date and notices not sent yet, read straight from PostgreSQL (fast enough to catch
    the middle of a day)."""
    import psycopg

    with psycopg.connect(db.direct_url, autocommit=True) as conn:
        slugs = [row[0] for row in conn.execute(
            "SELECT schema_name FROM tenants_agency WHERE schema_name LIKE %s", [f"{prefix}%"]
        )]  # fmt: skip
        done = conn.execute(
            "SELECT count(*) FROM tenants_agency WHERE schema_name LIKE %s AND clock_date >= '2027-03-01'",
            [f"{prefix}%"],
        ).fetchone()[0]
        unsent = 0
        for slug in slugs:
            unsent += conn.execute(
                f"SELECT count(*) FROM \"{slug}\".notifications_notice WHERE status IN ('PENDING', 'FAILED', 'SENDING')"
            ).fetchone()[0]
    return {"done": done, "unsent": unsent}


def _worker(host: hosts.Host, env: dict[str, str], log) -> None:
    host.popen(
        [sys.executable, "-m", "celery", "-A", "agencybilling", "worker", "--pool", "prefork", "--concurrency", "2",
         "--loglevel", "INFO", "--without-mingle", "--without-gossip", "--without-heartbeat",
         "--hostname", f"{host.name}-{host.ns}@%h"],
        log=log, env=env,
    )  # fmt: skip


def _unfinished(log) -> dict[str, int]:
    """Tasks the host had received and not finished when it was lost, by task name (from its worker log)."""
    import re

    received, finished = {}, set()
    for line in log.read_text(errors="replace").splitlines():
        if match := re.search(r"Task (\S+)\[([0-9a-f-]+)\] received", line):
            received[match.group(2)] = match.group(1)
        elif match := re.search(r"Task \S+\[([0-9a-f-]+)\] (succeeded|failed|retry|raised)", line):
            finished.add(match.group(1))
    return dict(Counter(name for task_id, name in received.items() if task_id not in finished))


def _wait_ready(log, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and b" ready." in log.read_bytes():
            return
        time.sleep(0.2)
    raise AssertionError(f"worker not ready: {log}")


class ApiProbe(threading.Thread):
    """Requests to the web host during the day: each agency's API token on its own host name, round robin; every
    client listed must be the asking agency's."""

    def __init__(self, address: str, tokens: dict[str, str]):
        super().__init__(daemon=True)
        self.address, self.tokens = address, tokens
        self.stop = threading.Event()
        self.statuses: Counter = Counter()
        self.foreign = 0
        self.rows = 0

    def run(self) -> None:
        slugs = sorted(self.tokens)
        n = 0
        while not self.stop.is_set() and n < 20000:
            slug = slugs[n % len(slugs)]
            n += 1
            request = urllib.request.Request(
                f"http://{self.address}:8000/api/v1/clients/?limit=100",
                headers={"Host": f"{slug}.localhost", "Authorization": f"Bearer {self.tokens[slug]}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - a test host
                    body = json.loads(response.read())
                    self.statuses[response.status] += 1
            except urllib.error.HTTPError as exc:
                self.statuses[exc.code] += 1
                continue
            except OSError:
                self.statuses["error"] += 1
                time.sleep(0.2)
                continue
            for row in body.get("results", body if isinstance(body, list) else []):
                self.rows += 1
                if not str(row.get("email", "")).endswith(f"@{slug}.example"):
                    self.foreign += 1


def test_R8_TEN_2_CYC_3_NOT_7_a_day_across_worker_hosts_survives_losing_one_through_pgbouncer():
    reason = hosts.available()
    if reason:
        pytest.skip(f"no network namespaces here: {reason}")
    with hosts.Network() as net:
        workdir = hosts.ROOT / ".local" / "cluster" / net.tag
        db = hosts.DbHost(net.host("db"), workdir)
        db.start(pool_mode="session")
        workers = [net.host(f"w{n}") for n in range(1, WORKER_HOSTS + 1)]
        web = net.host("web")
        base = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "agencybilling.settings.test",
            "PYTHONPATH": str(hosts.ROOT),
            "PYTHONUNBUFFERED": "1",
            "REDIS_URL": db.redis_url,
            "CELERY_QUEUE": f"cluster-{net.tag}",
            "EMAIL_URL": db.email_url,
            "BILLING_TICK_SECONDS": str(TICK),
            "SWEEP_SECONDS": "1",
            "SWEEP_GRACE_SECONDS": "5",
            "OUTBOX_SENDING_TIMEOUT_SECONDS": "15",
        }
        direct = {**base, "DATABASE_URL": db.direct_url}
        pooled = {**base, "DATABASE_URL": db.pooled_url}
        started = time.monotonic()
        made = _driver(direct, "setup", "--prefix", "ca", "--agencies", str(AGENCIES), "--clients", str(CLIENTS))
        setup_seconds = time.monotonic() - started
        logs = workdir / "logs"
        for host in workers:
            _worker(host, pooled, logs / f"{host.name}.log")
        web_proc = web.popen(
            [sys.executable, "-m", "gunicorn", "agencybilling.wsgi:application", "--bind", f"{web.address}:8000",
             "--workers", "2", "--access-logfile", "-"],
            log=logs / "web.log", env=pooled,
        )  # fmt: skip
        for host in workers:
            _wait_ready(logs / f"{host.name}.log")
        hosts.wait_tcp(web.address, 8000, 60, web_proc)
        probe = ApiProbe(web.address, made["tokens"])
        probe.start()

        # The day across the worker hosts; the first host lost when a third of the agencies are done.
        day_started = time.monotonic()
        first = _driver(pooled, "tick", "--at", START.isoformat())
        victim, killed_pids, done_at_kill, in_flight = workers[0], 0, -1, {}
        ticks, slot = 1, 1
        deadline = day_started + DEADLINE
        while True:
            state = _progress(db, "ca")
            if not killed_pids and state["done"] >= AGENCIES // 3:
                done_at_kill = state["done"]
                killed_pids = victim.kill()
                in_flight = _unfinished(logs / f"{victim.name}.log")
            if killed_pids and state["done"] == AGENCIES and state["unsent"] == 0:
                break
            assert time.monotonic() < deadline, f"the day did not finish: {state}"
            if killed_pids:  # beat's next ticks and sweeps, as the platform's beat would send them
                _driver(pooled, "tick", "--at", (START + timedelta(seconds=slot * TICK)).isoformat())
                _driver(pooled, "sweep")
                ticks, slot = ticks + 1, slot + 1
            time.sleep(0.2 if not killed_pids else 1)
        multi_seconds = time.monotonic() - day_started
        probe.stop.set()
        probe.join(60)
        multi = _driver(pooled, "verify", "--prefix", "ca", "--clients", str(CLIENTS), "--received", str(db.received))

        # The same day for as many new agencies on one worker host alone.
        for host in workers[1:]:
            host.stop()
        alone = workers[1]
        _driver(direct, "setup", "--prefix", "cb", "--agencies", str(AGENCIES), "--clients", str(CLIENTS))
        _worker(alone, pooled, logs / "alone.log")
        _wait_ready(logs / "alone.log")
        one_started = time.monotonic()
        _driver(pooled, "tick", "--at", (START + timedelta(seconds=(slot + 1) * TICK)).isoformat())
        while True:
            state = _progress(db, "cb")
            if state["done"] == AGENCIES and state["unsent"] == 0:
                break
            assert time.monotonic() < one_started + DEADLINE, f"the one-host day did not finish: {state}"
            time.sleep(0.2)
        one_seconds = time.monotonic() - one_started
        one = _driver(pooled, "verify", "--prefix", "cb", "--clients", str(CLIENTS), "--received", str(db.received))

    figures = {
        "size": "full" if FULL else "ci",
        "hosts": {"database": 1, "workers": WORKER_HOSTS, "web": 1},
        "pool_mode": "session",
        "agencies": AGENCIES,
        "clients": AGENCIES * CLIENTS,
        "dispatched_first_tick": first["dispatched"],
        "kills": 1,
        "processes_killed": killed_pids,
        "agencies_done_at_kill": done_at_kill,
        "tasks_lost_with_the_host": in_flight,
        "ticks": ticks,
        "multi_host_seconds": round(multi_seconds, 1),
        "one_host_seconds": round(one_seconds, 1),
        "setup_seconds": round(setup_seconds, 1),
        "multi_host": multi["figures"],
        "one_host": one["figures"],
        "api_requests": dict(probe.statuses),
        "api_rows": probe.rows,
        "api_rows_of_another_agency": probe.foreign,
        "violations": multi["violations"] + one["violations"] + probe.foreign,
    }
    record_figures("cluster", figures)
    assert 0 <= done_at_kill < AGENCIES, "the worker host was not lost in the middle of the day"
    assert multi["violations"] == 0, multi["problems"]
    assert one["violations"] == 0, one["problems"]
    assert probe.foreign == 0 and probe.rows > 0, (probe.statuses, probe.foreign)
    assert set(probe.statuses) <= {200}, probe.statuses
    assert multi["figures"]["duplicate_messages"] == 0
