"""Start-up checks: a bad configuration stops the process with one line naming the variable."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import redis
from django.conf import settings
from django.db import OperationalError, connection

from agencybilling.env import ConfigError

T = TypeVar("T")


def _describe_database() -> str:
    db = settings.DATABASES["default"]
    return f"{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db.get('NAME')}"


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
