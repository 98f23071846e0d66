"""P5 mix — `GET /api/v1/invoices/` across many agencies and tokens: the query paths compared (docs/performance.md).

`python -m bench.p5_mix [--agencies 50] [--clients 40] [--slices 5] [--seconds 2]`, with PostgreSQL and Redis (the
`make bench` services). Not a row of the table: it decides how the invoice list reads the database.

Method: `--agencies` agencies (fast-created from the schema template) of `--clients` clients each, billed for three
months; an Administrator's API token in each, so as many tokens as agencies. Each variant is its own gunicorn
(`P5`'s set-up: sync workers, 127.0.0.1) with its own database settings; `wrk` (2 threads, 16 connections)
requests the first page of invoices, each request with the next (agency host, token) pair in turn, so every
request names another agency and token than the one before. The variants and `/healthz` take turns in slices after
a warm-up, so the machine's other load weighs on all alike. Figures: requests/s and the gunicorn workers' CPU
time per request (the figure other load barely moves).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from bench.common import ROOT, children_of, cpu_seconds, django_setup, stop_process
from bench.p5_api import WORKERS, _free_port, _get

MONTHS = [date(2027, 1, 1), date(2027, 2, 1), date(2027, 3, 1)]
PREFIX = "p5mix"

# Each variant: the environment its gunicorn runs with.
# (The third variant of the measurement that retired them, "compiled+prepared" — api/compiled.py and core/prepared.py —
# is in docs/performance-history.md, P5.)
VARIANTS = {
    "orm": {"DATABASE_PREPARE_THRESHOLD": ""},
    "orm+prepare_threshold": {"DATABASE_PREPARE_THRESHOLD": "5"},
}


def _setup(agencies: int, clients: int) -> list[tuple[str, str]]:
    """(host, token secret) of each agency, creating what is missing."""
    from django.db import connection
    from django_tenants.utils import tenant_context

    from accounts.models import Role, User
    from accounts.tokens import api_token_create
    from bench.population import Mix, bench_plan, clients_populate
    from bench.schemas import agency_fast_create, template_ensure
    from billing.invoicing import billing_run
    from tenants.models import Agency

    template_ensure()
    pairs = []
    plan = bench_plan()
    for n in range(agencies):
        slug = f"{PREFIX}{n:02d}"
        agency = Agency.objects.filter(schema_name=slug).first()
        if agency is None:
            agency = agency_fast_create(slug=slug, plan=plan, billing_day=1)
            clients_populate(
                agency=agency,
                count=clients,
                activated_on=date(2026, 12, 1),
                mix=Mix(one_time_permille=0, usage_permille=0),
            )
            for month in MONTHS:
                billing_run(agency=agency, today=month)
        with tenant_context(agency):
            admin = User.objects.filter(email=f"admin@{slug}.example").first() or User.objects.create_user(
                f"admin@{slug}.example", "bench-pass-2027", role=Role.ADMINISTRATOR
            )
            _, secret = api_token_create(actor=admin, name="mix benchmark")
        pairs.append((f"{slug}.localhost", secret))
        connection.set_schema_to_public()
    return pairs


def _lua(pairs: list[tuple[str, str]], directory: Path) -> Path:
    lines = ["local pairs = {"]
    lines += [f'  {{"{host}", "Bearer {secret}"}},' for host, secret in pairs]
    lines += [
        "}",
        "local n = 0",
        "request = function()",
        "  n = n + 1",
        "  local pair = pairs[(n % #pairs) + 1]",
        '  return wrk.format("GET", "/api/v1/invoices/", {["Host"] = pair[1], ["Authorization"] = pair[2]})',
        "end",
        (ROOT / "bench" / "wrk_report.lua").read_text(),
    ]
    path = directory / "mix.lua"
    path.write_text("\n".join(lines))
    return path


def _wrk(url: str, script: Path, seconds: int, headers: dict[str, str] | None = None) -> dict:
    args = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--timeout", "5s", "-s", str(script)]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], check=True, capture_output=True, text=True, timeout=seconds + 60).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("{")))


def _serve(name: str, variant: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "API_RATE_LIMIT": "10000000/minute", **variant}
    log = open(ROOT / "bench" / "results" / f"P5mix-{name}-gunicorn.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "agencybilling.wsgi:application", "--bind", f"127.0.0.1:{port}"]
        + ["--workers", str(WORKERS), "--worker-class", "sync", "--timeout", "60", "--log-level", "warning"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return server, f"http://127.0.0.1:{port}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agencies", type=int, default=50)
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--slices", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--keep-database", action="store_true", help="Reuse the agencies of an earlier run.")
    args = parser.parse_args(argv)
    from bench.schemas import bench_database_url, database_recreate

    # The benchmarks' own database and settings, as `bench.run` sets them (the servers inherit them).
    os.environ["DATABASE_URL"] = bench_database_url(os.environ["DATABASE_URL"])
    os.environ["DJANGO_SETTINGS_MODULE"] = "agencybilling.settings.bench"
    os.environ.setdefault("CELERY_QUEUE", f"agencybilling-bench-{os.getpid()}")
    if not args.keep_database:
        database_recreate(os.environ["DATABASE_URL"])
        subprocess.run([sys.executable, "manage.py", "migrate_schemas", "--shared", "-v0"], cwd=ROOT, check=True)
    django_setup()
    pairs = _setup(args.agencies, args.clients)
    chosen = args.variants.split(",")
    servers: dict[str, tuple[subprocess.Popen, str]] = {}
    results: dict[str, list[dict]] = {name: [] for name in [*chosen, "healthz"]}
    with tempfile.TemporaryDirectory() as directory:
        script = _lua(pairs, Path(directory))
        try:
            for name in chosen:
                servers[name] = _serve(name, VARIANTS[name])
            for name, (server, base) in servers.items():
                deadline = time.monotonic() + 60
                while True:
                    try:
                        first = {"Host": pairs[0][0], "Authorization": f"Bearer {pairs[0][1]}"}
                        status, body = _get(f"{base}/api/v1/invoices/", first)
                        break
                    except OSError:
                        if time.monotonic() > deadline or server.poll() is not None:
                            raise RuntimeError(f"gunicorn {name} did not start") from None
                        time.sleep(0.3)
                if status != 200 or len(json.loads(body)["results"]) != 50:
                    raise RuntimeError(f"{name}: /api/v1/invoices/ answered {status}: {body[:300]!r}")
            health_base = servers[chosen[0]][1]
            health_script = Path(directory) / "report.lua"
            health_script.write_text((ROOT / "bench" / "wrk_report.lua").read_text())
            for _, base in servers.values():  # warm-up: every worker meets every agency and token
                _wrk(f"{base}/api/v1/invoices/", script, 3)
            _wrk(f"{health_base}/healthz", health_script, 2, {"Host": pairs[0][0]})
            for _ in range(args.slices):
                for name, (server, base) in servers.items():
                    workers = children_of(server.pid)
                    before = cpu_seconds(workers)
                    report = _wrk(f"{base}/api/v1/invoices/", script, args.seconds)
                    report["server_cpu_s"] = cpu_seconds(workers) - before
                    results[name].append(report)
                server = servers[chosen[0]][0]
                workers = children_of(server.pid)
                before = cpu_seconds(workers)
                report = _wrk(f"{health_base}/healthz", health_script, args.seconds, {"Host": pairs[0][0]})
                report["server_cpu_s"] = cpu_seconds(workers) - before
                results["healthz"].append(report)
        finally:
            for server, _ in servers.values():
                stop_process(server)
    summary = {}
    for name, runs in results.items():
        requests = sum(run["requests"] for run in runs)
        seconds = sum(run["duration_us"] for run in runs) / 1e6
        summary[name] = {
            "rps": round(requests / seconds, 1),
            "slices_rps": [round(run["requests"] / (run["duration_us"] / 1e6), 1) for run in runs],
            "non_2xx": sum(run["non_2xx"] for run in runs),
            "p95_ms": round(max(run["p95_us"] for run in runs) / 1000, 1),
            "server_cpu_ms_per_request": round(sum(run["server_cpu_s"] for run in runs) * 1000 / max(1, requests), 3),
        }
    out = {
        "agencies": args.agencies,
        "tokens": len(pairs),
        "clients_per_agency": args.clients,
        "load_average": os.getloadavg(),
        "results": summary,
    }
    (ROOT / "bench" / "results" / "P5-mix.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
