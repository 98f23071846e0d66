"""Run the product for a demo: migrate, load demo data, then web + worker + beat + a local SMTP server until Ctrl-C.

Started by `make demo` inside scripts/services.py (which provides PostgreSQL and Redis).
Every process started here is stopped here, by PID, when any of them exits or on Ctrl-C.

- `DEMO_PORT` (8000): the port of the web server, and of every link the demo prints or mails (SITE_URL follows it).
- `AGENCYBILLING_LOCAL_DIR` (`.local/`): where the demo keeps its data (private servers, beat schedule, mail).
- `DEMO_SMTP_PORT` (a free port): the local SMTP server that receives every email; the mail viewer at
  http://localhost:<DEMO_PORT>/mail/ lists them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PORT = os.environ.get("DEMO_PORT", "8000")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> int:
    local = Path(os.environ.get("AGENCYBILLING_LOCAL_DIR", ROOT / ".local"))
    local.mkdir(parents=True, exist_ok=True)
    maildir = local / "mail"
    shutil.rmtree(maildir, ignore_errors=True)  # the demo data is rebuilt each time: so is its mail
    smtp_port = int(os.environ.get("DEMO_SMTP_PORT") or _free_port())
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "agencybilling.settings.local"),
        "DEMO_PORT": PORT,
        # Every email goes through a real SMTP hop to the local server, and the viewer reads what it received.
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
        "DEMO_MAIL_DIR": str(maildir),
    }
    mail = subprocess.Popen(
        [PY, str(ROOT / "scripts" / "mailsink.py"), "--port", str(smtp_port), "--maildir", str(maildir)],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    try:
        return _run(env, local, mail)
    finally:
        if mail.poll() is None:
            os.killpg(mail.pid, signal.SIGTERM)
            try:
                mail.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(mail.pid, signal.SIGKILL)
                mail.wait()
        print("[demo] stopped mail", flush=True)


def _run(env: dict[str, str], local: Path, mail: subprocess.Popen) -> int:
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
    smtp = env["EMAIL_URL"].rsplit(":", 1)[1]
    print(
        f"[demo] mail viewer: http://localhost:{PORT}/mail/ — every email sent (SMTP on 127.0.0.1:{smtp})", flush=True
    )
    code = 0
    try:
        while not stopping:
            if mail.poll() is not None:
                print(f"[demo] mail exited with code {mail.returncode}; stopping the rest", flush=True)
                code, stopping = mail.returncode or 1, True
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
