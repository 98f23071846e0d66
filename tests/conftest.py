"""Shared fixtures: two agencies (schemas created once per run), HTTP clients per host, users.

Schemas are created once in `django_db_setup`; the agency *rows* are fixtures of function scope,
because transactional tests truncate the public tables (tenants, domains) after each test.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection, transaction
from django.test import Client as HttpClient
from django_tenants.utils import schema_context, schema_exists

from tenants.models import Agency, Domain

# A skipped test fails the run unless ALLOW_INCOMPLETE=1 (hooks in tests/complete_run.py).
from tests.complete_run import pytest_sessionfinish, pytest_unconfigure  # noqa: F401

AGENCY_SLUGS = ("alpha", "beta")


def _django_group(item: pytest.Item) -> int:
    """pytest-django's order: tests in a rolled-back transaction, then transactional ones, then those without
    a database (browser tests are moved last by tests/browser/conftest.py)."""
    marker = item.get_closest_marker("django_db")
    transactional = bool(marker and (marker.kwargs.get("transaction") or (marker.args and marker.args[0])))
    transactional = transactional or bool({"transactional_db", "live_server"} & set(item.fixturenames))
    if transactional:
        return 1
    return 0 if marker or "db" in item.fixturenames else 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Within each of pytest-django's groups, the tests marked `slow` first: with several pytest-xdist workers,
    the longest tests start early instead of finishing the run alone (the order within a group is kept)."""
    position = {id(item): index for index, item in enumerate(items)}
    items.sort(key=lambda item: (_django_group(item), item.get_closest_marker("slow") is None, position[id(item)]))


def ensure_agency(slug: str) -> Agency:
    connection.set_schema_to_public()
    agency = Agency.objects.filter(schema_name=slug).first()
    if agency is None:
        agency = Agency(
            schema_name=slug, name=f"{slug.title()} Agency", time_zone="America/New_York", currency="USD", billing_day=1
        )
        if schema_exists(slug):
            agency.auto_create_schema = False
        agency.save()
        Domain.objects.create(domain=f"{slug}.localhost", tenant=agency, is_primary=True)
    return agency


def truncate_tenant_tables(slug: str) -> None:
    """Empty every table of an agency schema (transactional tests commit for real)."""
    connection.set_schema_to_public()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename <> 'django_migrations'", [slug]
        )
        tables = [row[0] for row in cursor.fetchall()]
        if tables:
            cursor.execute("TRUNCATE " + ", ".join(f'"{slug}"."{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
    # The rows the migrations seed in every agency schema (the singletons) are part of an empty agency: put them
    # back, or a test that runs after a transactional one finds none (seen in a shuffled run).
    from django.apps import apps

    seed_rows = importlib.import_module("billing.migrations.0002_immutability_and_singletons").create_singletons
    with schema_context(slug):
        seed_rows(apps, None)
    connection.set_schema_to_public()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        for slug in AGENCY_SLUGS:
            ensure_agency(slug)
        connection.set_schema_to_public()


@contextmanager
def module_transaction(django_db_blocker) -> Iterator[None]:
    """Data built once for a module's tests, and rolled back after its last one (Django's `setUpTestData`): a
    module-scoped fixture builds inside this transaction, and each test runs in a savepoint of it (pytest-django's
    `db`), so no test sees another's changes. Only for tests that are not transactional."""
    outer = transaction.atomic()
    with django_db_blocker.unblock():
        outer.__enter__()
    try:
        yield
    finally:
        with django_db_blocker.unblock():
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)
            connection.set_schema_to_public()


def _agency_fixture(request: pytest.FixtureRequest, slug: str) -> Agency:
    transactional = (
        bool({"transactional_db", "live_server"} & set(request.fixturenames))
        or request.node.get_closest_marker("django_db") is not None
        and request.node.get_closest_marker("django_db").kwargs.get("transaction", False)
    )
    if transactional:
        request.getfixturevalue("transactional_db")
        request.addfinalizer(lambda: truncate_tenant_tables(slug))
    else:
        request.getfixturevalue("db")
    return ensure_agency(slug)


@pytest.fixture
def agency_a(request) -> Agency:
    return _agency_fixture(request, "alpha")


@pytest.fixture
def agency_b(request) -> Agency:
    return _agency_fixture(request, "beta")


@pytest.fixture(autouse=True)
def _public_schema_between_tests() -> Iterator[None]:
    yield
    connection.set_schema_to_public()


def host_client(agency: Agency | None) -> HttpClient:
    """A test client talking to the agency's host (or the platform host for None)."""
    host = f"{agency.schema_name}.localhost" if agency is not None else "localhost"
    return HttpClient(HTTP_HOST=host)


def make_user(agency: Agency | None, email: str, role: str, password: str = "pw-correct-horse-9"):
    from accounts.models import User

    with schema_context(agency.schema_name if agency else "public"):
        return User.objects.create_user(email, password, role=role)


def login_client(agency: Agency | None, email: str, password: str = "pw-correct-horse-9") -> HttpClient:
    """A host client logged in the way a browser would: the session lands in that host's schema."""
    http = host_client(agency)
    with schema_context(agency.schema_name if agency else "public"):
        assert http.login(email=email, password=password), f"login failed for {email}"
    return http


@pytest.fixture
def eager_tasks():
    """Run Celery tasks in-process (the same task code) for tests that are not about the worker."""
    from agencybilling.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


class _Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        import email
        import email.policy

        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server (aiosmtpd) on a free loopback port; Django's SMTP backend delivers to it."""
    import socket

    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    inbox.port = port
    inbox.controller = controller
    yield inbox
    controller.stop()


@pytest.fixture(autouse=True)
def _login_failures_forgotten() -> Iterator[None]:
    """Sign-in and password-reset throttling count in Redis for a while, and beat's jobs claim their slot there:
    each test starts with none counted and no slot claimed."""
    yield
    from django.conf import settings
    from django.core.cache import cache

    client = cache._cache.get_client()  # type: ignore[attr-defined]
    # make_key: "<schema>:<KEY_PREFIX>:<version>:<key>" — only this test run's prefix.
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
    keys = [
        key
        for pattern in ("login-fail", "pwreset", "beat-slot")
        for key in client.scan_iter(match=f"*:{prefix}:*:{pattern}:*", count=1000)
    ]
    if keys:
        client.delete(*keys)
