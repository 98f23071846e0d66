"""Configuration read from the environment, failing with one clear line naming the variable."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, unquote, urlparse

import dj_database_url


class ConfigError(Exception):
    """A setting is missing or malformed. The message names the environment variable."""


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name)
    if value is None or value == "":
        if default is None:
            raise ConfigError(f"{name} is not set (see .env.example)")
        return default
    return value


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None


def site_url_from_env(name: str, *, base_domain: str, default: str) -> str:
    """SITE_URL: the scheme, host and port every link that leaves the site is built from (emails, invitations,
    password resets). The host is the platform's (BASE_DOMAIN); agencies are `<slug>.<host>` with the same scheme
    and port. Returned without a trailing slash."""
    for legacy in ("SITE_SCHEME", "SITE_PORT_SUFFIX"):
        if os.environ.get(legacy):
            raise ConfigError(f"{legacy} is replaced by {name} (e.g. {name}=https://{base_domain}); unset {legacy}")
    raw = env_str(name, default)
    url = urlparse(raw)
    try:
        port = url.port
    except ValueError:
        raise ConfigError(f"{name} has an invalid port: {raw!r}") from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ConfigError(f"{name} must look like https://{base_domain} or http://{base_domain}:8000, got {raw!r}")
    if url.path not in ("", "/") or url.query or url.fragment or url.username or url.password:
        raise ConfigError(f"{name} is a scheme, a host and a port only, got {raw!r}")
    if url.hostname != base_domain.lower():
        raise ConfigError(f"{name}'s host must be BASE_DOMAIN ({base_domain}), got {url.hostname!r}")
    return f"{url.scheme}://{url.hostname}" + (f":{port}" if port else "")


def database_from_url(name: str, default: str | None = None) -> dict:
    url = env_str(name, default)
    if not url.startswith(("postgres://", "postgresql://")):
        raise ConfigError(f"{name} must be a postgres:// URL, got {url.split('@')[-1]!r}")
    config = dict(dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True))
    # django-tenants needs its schema-aware backend on top of PostgreSQL.
    config["ENGINE"] = "django_tenants.postgresql_backend"
    return config


def email_from_url(name: str, default: str) -> dict:
    """EMAIL_URL: smtp://user:pass@host:port, smtp+tls://..., console://, locmem://."""
    url = urlparse(env_str(name, default))
    backends = {
        "smtp": "django.core.mail.backends.smtp.EmailBackend",
        "smtp+tls": "django.core.mail.backends.smtp.EmailBackend",
        "smtp+ssl": "django.core.mail.backends.smtp.EmailBackend",
        "console": "django.core.mail.backends.console.EmailBackend",
        "locmem": "django.core.mail.backends.locmem.EmailBackend",
    }
    if url.scheme not in backends:
        raise ConfigError(f"{name} must start with one of {', '.join(s + '://' for s in backends)}")
    options = parse_qs(url.query)
    return {
        "EMAIL_BACKEND": backends[url.scheme],
        "EMAIL_HOST": url.hostname or "localhost",
        "EMAIL_PORT": url.port or 25,
        "EMAIL_HOST_USER": unquote(url.username or ""),
        "EMAIL_HOST_PASSWORD": unquote(url.password or ""),
        "EMAIL_USE_TLS": url.scheme == "smtp+tls",
        "EMAIL_USE_SSL": url.scheme == "smtp+ssl",
        "EMAIL_TIMEOUT": int(options.get("timeout", ["10"])[0]),
    }
