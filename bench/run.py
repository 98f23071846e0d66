"""Run the benchmarks and print the table: `python -m bench.run [--quick] [--only P1,P2] [--profile] [--scaling]`.

`make bench` / `make bench-quick` run this under scripts/services.py, which provides PostgreSQL and Redis
(private servers on loopback when DATABASE_URL / REDIS_URL are unset). The benchmarks use a database of
their own on that server (`<database>_bench`, recreated on every run) and a Redis queue of their own.
Each benchmark runs in its own process with a time limit; every process it starts is stopped by PID.

Exit status: 0 when every row is measured and passes, 1 otherwise (quick mode checks regression floors, see
docs/performance.md). A row not measured fails the run unless ALLOW_INCOMPLETE=1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.common import RESULTS, ROOT, machine

# (id, module, time limit in seconds: full, quick)
BENCHMARKS = [
    ("P1", "bench.p1_billing", 300, 60),
    ("P2", "bench.p2_collection", 300, 60),
    ("P3", "bench.p3_overview", 180, 45),
    ("P4", "bench.p4_pdf", 120, 40),
    ("P5", "bench.p5_api", 180, 45),
    ("P6", "bench.p6_tenants", 600, 90),
    ("P7", "bench.p7_day", 420, 90),
    ("P8", "bench.p8_notices", 180, 60),
]
SCALING_LIMIT = 900


def _prepare_database(env: dict[str, str]) -> None:
    from bench.schemas import database_recreate

    database_recreate(env["DATABASE_URL"])
    subprocess.run([sys.executable, "manage.py", "migrate_schemas", "--shared", "-v0"], cwd=ROOT, env=env, check=True)


def _run_one(
    module: str, limit: int, quick: bool, profile: bool, env: dict[str, str], out: Path, extra: tuple[str, ...] = ()
) -> tuple[dict | None, str]:
    cmd = [sys.executable, "-m", module, "--out", str(out), *extra]
    if quick:
        cmd.append("--quick")
    if profile:
        cmd.append("--profile")
    out.unlink(missing_ok=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    try:
        code = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return None, f"stopped after its {limit}s limit"
    finally:
        # Anything the benchmark left in its process group (it should have stopped its own servers).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if code != 0 or not out.exists():
        return None, f"exited with status {code}"
    return json.loads(out.read_text()), ""


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}".strip()


def table(rows: list[dict]) -> str:
    header = ["row", "what", "target", "figure", "baseline", "ratio", "result"]
    body = []
    for row in rows:
        verdict = {True: "PASS", False: "FAIL", None: "NOT MEASURED"}[row["passed"]]
        body.append(
            [
                row["id"],
                row["what"],
                row["target"],
                _fmt(row["figure"], row["unit"]),
                _fmt(row["baseline"]) + (f" ({row['baseline_what']})" if row.get("baseline_what") else ""),
                _fmt(row["ratio"]),
                verdict + (f": {row['note']}" if row.get("note") else ""),
            ]
        )
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    widths[-1] = 0
    out = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(header, widths, strict=True)).rstrip(),
        "  ".join("-" * max(width, 6) for width in widths),
    ]
    out += [
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in body
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the performance benchmarks and print the table.")
    parser.add_argument("--quick", action="store_true", help="Smaller sizes for CI (<= 2 minutes).")
    parser.add_argument("--only", help="Comma-separated rows to run, e.g. P1,P2.")
    parser.add_argument("--profile", action="store_true", help="Profile the measured steps (pyinstrument).")
    parser.add_argument("--keep-database", action="store_true", help="Reuse the benchmark database as it is.")
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="The 1k -> 10k client scaling rows (P3 only; P1's full run already covers its sizes).",
    )
    args = parser.parse_args(argv)
    for name in ("DATABASE_URL", "REDIS_URL"):
        if not os.environ.get(name):
            print(f"error: {name} is not set (run through `make bench`, which provides it)", file=sys.stderr)
            return 2
    from bench.schemas import bench_database_url

    env = {
        **os.environ,
        "DATABASE_URL": bench_database_url(os.environ["DATABASE_URL"]),
        "DJANGO_SETTINGS_MODULE": "agencybilling.settings.bench",
        "PYTHONPATH": str(ROOT),
        "CELERY_QUEUE": f"agencybilling-bench-{os.getpid()}",
    }
    env.pop("STRIPE_SECRET_KEY", None)
    selected = {part.strip().upper() for part in args.only.split(",")} if args.only else None
    if args.scaling:
        selected, args.quick = {"P3"}, False
    started = time.monotonic()
    if not args.keep_database:
        _prepare_database(env)
    rows: list[dict] = []
    for row_id, module, full_limit, quick_limit in BENCHMARKS:
        if selected and row_id not in selected:
            continue
        out = RESULTS / f"{row_id}{'-quick' if args.quick else ''}{'-scaling' if args.scaling else ''}.json"
        print(f"== {row_id} ({module})", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        limit = SCALING_LIMIT if args.scaling else quick_limit if args.quick else full_limit
        document, error = _run_one(
            module, limit, args.quick, args.profile, env, out, ("--scaling",) if args.scaling else ()
        )
        print(f"== {row_id} took {time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)
        if document is None:
            rows.append(
                {
                    "id": row_id,
                    "what": module,
                    "target": "",
                    "figure": None,
                    "unit": "",
                    "baseline": None,
                    "baseline_what": "",
                    "ratio": None,
                    "passed": False,
                    "note": error,
                }
            )
        else:
            rows.extend(document["rows"])
    elapsed = time.monotonic() - started
    summary = {
        "quick": args.quick,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(elapsed, 1),
        "machine": machine(),
        "rows": rows,
    }
    name = (
        "latest-quick.json"
        if args.quick
        else ("latest-scaling.json" if args.scaling else "latest.json" if not selected else "latest-partial.json")
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / name).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print()
    print(table(rows))
    failed = [row["id"] for row in rows if row["passed"] is False]
    unmeasured = [row["id"] for row in rows if row["passed"] is None]
    print(
        f"\n{len(rows) - len(failed) - len(unmeasured)} passed, {len(failed)} failed, "
        f"{len(unmeasured)} not measured in {elapsed:.0f}s ({'quick' if args.quick else 'full'}); "
        f"results in bench/results/{name}"
    )
    if unmeasured:
        # A row not measured is a gap in the table, not a pass: it fails the run unless explicitly accepted.
        reasons = "; ".join(
            f"{row['id']}: {row.get('note') or 'no reason given'}" for row in rows if row["passed"] is None
        )
        if os.environ.get("ALLOW_INCOMPLETE") == "1":
            print(f"incomplete run: {', '.join(unmeasured)} not measured ({reasons}) (ALLOW_INCOMPLETE=1)")
        else:
            print(
                f"error: {', '.join(unmeasured)} not measured ({reasons}); a complete run measures every row: "
                "run scripts/system-packages bench, or set ALLOW_INCOMPLETE=1 to accept an incomplete run"
            )
            return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
