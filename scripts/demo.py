"""Run the product for a demo: migrate, load demo data, then web + worker + beat until Ctrl-C.

Started by `make demo` inside scripts/services.py (which provides PostgreSQL and Redis).
Every process started here is stopped here, by PID, when any of them exits or on Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PORT = os.environ.get("DEMO_PORT", "8000")


def main() -> int:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "agencybilling.settings.local"),
    }
    local = ROOT / ".local"
    local.mkdir(exist_ok=True)
    for step in (["migrate_schemas", "--executor", "standard", "-v", "0"], ["load_demo"]):
        result = subprocess.run([PY, "manage.py", *step], cwd=ROOT, env=env)
        if result.returncode != 0:
            return result.returncode

    commands = {
        "web": [PY, "manage.py", "runserver", f"127.0.0.1:{PORT}", "--noreload"],
        "worker": [
            PY,
            "-m",
            "celery",
            "-A",
            "agencybilling",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            "2",
            "--hostname",
            "demo@%h",
        ],
        "beat": [
            PY,
            "-m",
            "celery",
            "-A",
            "agencybilling",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(local / "celerybeat-schedule"),
            "--pidfile",
            "",
        ],
    }
    procs: dict[str, subprocess.Popen] = {}
    stopping = False

    def stop(*_args) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for name, command in commands.items():
        procs[name] = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
        print(f"[demo] started {name} (pid {procs[name].pid})", flush=True)
    print(f"[demo] open http://demo.localhost:{PORT}/ — Ctrl-C stops everything", flush=True)
    code = 0
    try:
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    print(f"[demo] {name} exited with code {proc.returncode}; stopping the rest", flush=True)
                    code = proc.returncode or 1
                    stopping = True
            time.sleep(0.3)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name, proc in procs.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            print(f"[demo] stopped {name}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
