"""Start-up checks: a bad configuration stops the process with one line naming the variable."""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import TypeVar

import redis
from django.conf import settings
from django.core.management import get_commands
from django.db import OperationalError, connection

from agencybilling.env import ConfigError

T = TypeVar("T")


def _describe_database() -> str:
    db = settings.DATABASES["default"]
    return f"{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db.get('NAME')}"


# Django's and django-tenants' own commands that need the database from the start (the project's own commands
# all do: `command_needs_database`).
DATABASE_COMMANDS = frozenset({"runserver", "migrate", "migrate_schemas", "createsuperuser", "dbshell"})
# Commands whose whole job is reading Redis: an unreachable one is a line naming REDIS_URL, not a traceback. The web
# and the workers are not checked: they ride out a Redis outage (/healthz reports it; Celery reconnects).
BROKER_COMMANDS = frozenset({"beat_health"})
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def is_project_app(app_name: str) -> bool:
    """An app of this repository, not an installed package (the virtualenv may live inside the repository)."""
    path = Path(import_module(app_name).__file__ or "").resolve()
    return path.is_relative_to(PROJECT_ROOT) and "site-packages" not in path.parts


def command_needs_database(command: str) -> bool:
    """Every command of the project's own apps, and Django's that open the database, is checked before it runs:
    derived from where the command lives, so a new or renamed command cannot slip out of a list."""
    if command in BROKER_COMMANDS:
        return False
    if command in DATABASE_COMMANDS:
        return True
    app = get_commands().get(command)
    return isinstance(app, str) and is_project_app(app)


def check_database() -> None:
    try:
        connection.ensure_connection()
    except OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"DATABASE_URL: cannot connect to PostgreSQL at {_describe_database()} ({reason})") from None


def check_broker() -> None:
    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        raise ConfigError(f"REDIS_URL: cannot connect to Redis ({exc})") from None


def run_or_exit[T](func: Callable[[], T]) -> T:
    """Run `func`; a ConfigError becomes one line on stderr and exit status 2."""
    try:
        return func()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
