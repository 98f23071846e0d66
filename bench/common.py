"""What every benchmark shares: rows of the result table, JSON output, timing, Django set-up, process RSS.

A benchmark is a module `bench.pN_*` with `main(argv)`; `bench.run` starts each one in its own process
(so memory, connections and Django state never leak from one to the next) and collects the JSON each
one writes to `bench/results/`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


@dataclass
class Row:
    """One line of the table: what was measured, the target, the figure, the same-run baseline, the verdict.

    `ratio` is figure / baseline (how close to its ceiling the product got); `passed` is None when the row
    could not be measured (then `note` says why)."""

    id: str
    what: str
    target: str
    figure: float | None
    unit: str
    passed: bool | None
    baseline: float | None = None
    baseline_what: str = ""
    ratio: float | None = None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def ratio(figure: float | None, baseline: float | None) -> float | None:
    if figure is None or not baseline:
        return None
    return figure / baseline


def bench_args(
    description: str, argv: list[str] | None = None, extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="Smaller sizes (CI): regression floors, not targets.")
    parser.add_argument("--out", type=Path, help="Write the JSON result here (default bench/results/<name>.json).")
    parser.add_argument("--profile", action="store_true", help="Profile the measured step with pyinstrument.")
    if extra:
        extra(parser)
    return parser.parse_args(argv)


def write_result(
    name: str, rows: list[Row], *, quick: bool, out: Path | None = None, extra: dict[str, Any] | None = None
) -> Path:
    path = out or RESULTS / f"{name}{'-quick' if quick else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": name,
        "quick": quick,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "rows": [asdict(row) for row in rows],
        **(extra or {}),
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(json.dumps({"benchmark": name, "rows": [_short(row) for row in rows]}, default=str))
    return path


def _short(row: Row) -> dict[str, Any]:
    return {
        "id": row.id,
        "figure": row.figure,
        "unit": row.unit,
        "baseline": row.baseline,
        "ratio": row.ratio,
        "passed": row.passed,
    }


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_avg_1m": round(load[0], 2),
        "platform": platform.platform(),
    }


# --- timing -------------------------------------------------------------------------------------------


class Timer:
    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values)


@contextmanager
def profiled(enabled: bool, name: str) -> Iterator[None]:
    """pyinstrument around a block; the HTML and text reports go to bench/results/profile-<name>.*"""
    if not enabled:
        yield
        return
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"profile-{name}.txt").write_text(profiler.output_text(unicode=False, color=False))
        (RESULTS / f"profile-{name}.html").write_text(profiler.output_html())
        print(f"profile written to bench/results/profile-{name}.txt", file=sys.stderr)


# --- Django --------------------------------------------------------------------------------------------


def django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agencybilling.settings.bench")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


# --- processes -------------------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def children_of(pid: int) -> list[int]:
    """Direct and indirect children of a process, from /proc (no psutil needed)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found, queue = [], [pid]
    while queue:
        for child in parents.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (those gone count 0)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


def stop_process(proc: subprocess.Popen, *, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Stop a process this benchmark started (its whole process group when it leads one), by PID."""
    if proc.poll() is not None:
        return
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL) if os.getpgid(proc.pid) == proc.pid else proc.kill()
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


def queues_purge() -> None:
    """Empty every Celery queue of this run (one per kind of work, agencybilling/queues.py): tasks queued for a
    worker the benchmark does not run."""
    from django.conf import settings

    from agencybilling.celery import app

    with app.connection_for_write() as conn:
        for name in settings.CELERY_QUEUE_NAMES:
            conn.default_channel.queue_purge(name)


def stop_children_on_sigterm() -> None:
    """`bench.run` stops a benchmark past its time limit with SIGTERM: turn it into SystemExit, so the benchmark's
    `finally` blocks stop the workers and servers it started in process groups of their own."""

    def _exit(signum, frame):  # noqa: ARG001 - signal handler signature
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, _exit)
