"""R7 — no card number or secret in the database, the logs or the repository's fixtures.

A realistic day runs with every secret the product handles set to a fresh random value: the Stripe secret key and
webhook secret (against the Stripe-compatible test server), a card entered the way Stripe.js enters it (the
number goes to the processor, only a PaymentMethod id reaches us), an API token created on its page and used, a
webhook endpoint registered with the token (its signing secret returned once), a billing day with charges,
emails and webhook deliveries. Every log record of every logger at DEBUG is captured; then every row of every
table of the public and the agency's schema is dumped and scanned, with the logs and the repository's fixture
and data files.

Webhook signing secrets are stored as they are: the product signs each delivery with them (HMAC), so it needs
them in clear, as Stripe does (docs/decisions.md). They are scanned for in the logs and in responses other than
the one that hands them out.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
from datetime import date
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import stripe
from django.conf import settings
from django.db import connection
from django_tenants.utils import schema_context, tenant_context

from accounts.models import Role
from agencybilling import seed
from billing.collection import collect_due
from billing.invoicing import billing_run
from billing.providers import get_provider
from clients.models import ClientUser
from tests.billing_helpers import client_create, with_plan
from tests.conftest import login_client, make_user
from tests.reliability.harness import ROOT, free_port, record_figures

CARD = "4242424242424242"
# Not after a decimal point: the fraction of a float (7.552455330000157 in benchmark results) is no card.
CARD_CANDIDATE = re.compile(r"(?<![0-9.])(?:[0-9][ -]?){12,18}[0-9](?![0-9])")
STRIPE_KEY = re.compile(r"\b[sr]k_(?:live|test)_[0-9A-Za-z]{20,}")
# Repository files that hold data: fixtures, test and benchmark data, docs, settings, examples.
SCANNED_SUFFIXES = {
    ".json",
    ".yaml",
    ".yml",
    ".csv",
    ".py",
    ".md",
    ".txt",
    ".toml",
    ".cfg",
    ".ini",
    ".html",
    ".env",
    ".example",
    ".sql",
}
NOT_SCANNED = {
    ".venv",
    ".git",
    ".local",
    "node_modules",
    "artifacts",
    "staticfiles",
    "media",
    "vendor",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
}


def stripe_test_cards() -> set[str]:
    """Stripe's published test card numbers, as the Stripe-compatible test server models them: the only
    card-like numbers the repository may hold (the sandbox processor and the test server map test tokens to
    them). Not anyone's card."""
    from tests.harness import stripe_server

    return {
        *stripe_server.CARD_TEST_PAYMENT_METHODS.values(),
        *stripe_server.CARD_DECLINES,
        *stripe_server.AUTH_REQUIRED,
    }


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def card_numbers(text: str) -> set[str]:
    """Digit runs of 13–19 (spaces or dashes between groups allowed) with a card network's prefix that pass
    Luhn's check."""
    found = set()
    for match in CARD_CANDIDATE.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and re.match(r"^(4|5[1-5]|2[2-7]|3[47]|6011|65)", digits) and luhn_ok(digits):
            found.add(digits)
    return found


def test_R7_the_card_detector_finds_cards_and_ignores_other_numbers():
    assert card_numbers(f"pm for {CARD} and 4242 4242 4242 4242 and 5555-5555-5555-4444") == {CARD, "5555555555554444"}
    assert card_numbers("amount 1999 id 12345678901234 ts 1767225600000 4242424242424241") == set()
    assert card_numbers('{"clone_schema_seconds": 7.552455330000157, "ratio": 0.4242424242424242}') == set()
    assert card_numbers(f"card {CARD}.") == {CARD}


def database_dump(*schemas: str) -> str:
    """Every row of every table of these schemas, as PostgreSQL prints them."""
    parts = []
    with schema_context("public"), connection.cursor() as cursor:
        cursor.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY(%s) ORDER BY 1, 2", [list(schemas)]
        )
        for schema, table in cursor.fetchall():
            cursor.execute(f'SELECT coalesce(string_agg(t::text, chr(10)), \'\') FROM "{schema}"."{table}" t')
            parts.append(f"-- {schema}.{table}\n{cursor.fetchone()[0]}")
    return "\n".join(parts)


def repository_data_files() -> list[Path]:
    files = []
    for path in ROOT.rglob("*"):
        if any(part in NOT_SCANNED for part in path.relative_to(ROOT).parts):
            continue
        if (
            path.is_file()
            and (path.suffix in SCANNED_SUFFIXES or path.name.startswith(".env"))
            and path.stat().st_size < 5_000_000
        ):
            files.append(path)
    return files


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name} {record.levelname} {text}")


@pytest.fixture
def every_log_at_debug():
    handler, root = _Captured(), logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in ("", *logging.root.manager.loggerDict)}
    root.addHandler(handler)
    for name in levels:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def webhook_receiver():
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's hook name
            received.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.received = received  # type: ignore[attr-defined]
    yield server
    server.shutdown()


@pytest.fixture
def stripe_secrets(settings, clean_stripe):
    settings.STRIPE_SECRET_KEY = "sk_test_" + secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")
    settings.STRIPE_WEBHOOK_SECRET = "whsec_" + secrets.token_hex(24)
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_" + secrets.token_hex(12)
    settings.STRIPE_API_BASE = clean_stripe.url
    settings.PAYMENT_PROVIDER = "stripe"
    get_provider.cache_clear()
    yield clean_stripe
    get_provider.cache_clear()


@pytest.mark.django_db
def test_R7_no_card_number_or_secret_in_the_database_logs_or_fixtures(
    agency_a,
    stripe_secrets,
    smtp_server,
    every_log_at_debug,
    webhook_receiver,
    eager_tasks,
    django_capture_on_commit_callbacks,
):
    agency = with_plan(agency_a)
    agency.email = "ops@alpha.example"
    agency.save(update_fields=["email"])
    seed.payouts_connected(agency, provider=get_provider())
    admin = make_user(agency, "admin@alpha.test", Role.ADMINISTRATOR)
    with schema_context("alpha"):
        client = client_create(
            name="Card Co", email="card@example.com", activated_on=date(2026, 12, 1), license_price_minor=19900
        )
        owner = make_user(agency, "owner@card.example", Role.CLIENT)
        ClientUser.objects.create(user=owner, client=client)
    responses: list[str] = []

    # The card, as Stripe.js creates it in the browser: the number goes to the processor only.
    # That call happens in the browser, not on our server: the stripe library's own debug log of it (the
    # test stands in for the browser, in this process) is not the server's log.
    processor = stripe.StripeClient(settings.STRIPE_SECRET_KEY, base_addresses={"api": stripe_secrets.url})
    logging.getLogger("stripe").disabled = True
    try:
        method = processor.v1.payment_methods.create(
            params={"type": "card", "card": {"number": CARD, "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
        )
    finally:
        logging.getLogger("stripe").disabled = False
    portal = login_client(agency, "owner@card.example")
    saved = portal.post("/portal/payment-method/", {"payment_method_id": method.id})
    assert saved.status_code == 302, saved.content[:2000]
    responses.append(portal.get("/portal/payment-method/").content.decode())

    # An API token on its page, then used to register a webhook endpoint (its signing secret, once).
    http = login_client(agency, admin.email)
    with schema_context("alpha"):
        page = http.post("/settings/api-tokens/", {"name": "CRM sync", "owner": str(admin.pk)})
    token = re.search(r"\babk_[A-Za-z0-9_\-]{20,}", page.content.decode()).group()
    api = {"HTTP_AUTHORIZATION": f"Bearer {token}", "content_type": "application/json"}
    from django.test import Client as HttpClient

    api_client = HttpClient(HTTP_HOST="alpha.localhost")
    created = api_client.post(
        "/api/v1/webhook-endpoints/",
        json.dumps(
            {
                "url": f"http://127.0.0.1:{webhook_receiver.server_port}/hooks",
                "event_kinds": ["charge.paid", "invoice.finalized"],
            }
        ),
        HTTP_IDEMPOTENCY_KEY="endpoint-1",
        **api,
    )
    assert created.status_code == 201, created.content
    signing_secret = created.json()["secret"]
    responses += [
        api_client.get(path, **api).content.decode()
        for path in ("/api/v1/api-tokens/", "/api/v1/webhook-endpoints/", "/api/v1/me/")
    ]
    api_client.post(
        "/api/v1/webhook-endpoints/",
        json.dumps({"url": "http://127.0.0.1:1/x", "event_kinds": ["charge.paid"]}),
        HTTP_IDEMPOTENCY_KEY="endpoint-1",
        **api,
    )  # a replay: the stored response has no secret
    api_client.get("/api/v1/clients/", HTTP_AUTHORIZATION="Bearer abk_wrong_token_for_the_logs")

    # The billing day: invoices, the card charged at the processor, emails, webhook deliveries.
    with django_capture_on_commit_callbacks(execute=True):
        billing_run(agency=agency, today=date(2027, 1, 1))
    with django_capture_on_commit_callbacks(execute=True), tenant_context(agency):
        summary = collect_due(today=date(2027, 1, 1))
    with schema_context("alpha"):
        assert client.charges.get().status == "PAID", summary
    assert smtp_server.messages and webhook_receiver.received
    responses.append(http.get(f"/clients/{client.public_id}/").content.decode())

    dump = database_dump("public", "alpha")
    logs = "\n".join(every_log_at_debug.lines)
    emails = "\n".join(m.as_string() for m in smtp_server.messages)
    deliveries = b"\n".join(webhook_receiver.received).decode()
    never_anywhere = {
        "SECRET_KEY": settings.SECRET_KEY,
        "Stripe secret key": settings.STRIPE_SECRET_KEY,
        "Stripe webhook secret": settings.STRIPE_WEBHOOK_SECRET,
        "API token": token,
    }
    places = {
        "database": dump,
        "logs": logs,
        "emails": emails,
        "webhook deliveries": deliveries,
        "pages after creation": "\n".join(responses),
    }
    problems = [
        f"{what} in {where}"
        for where, text in places.items()
        for what, value in never_anywhere.items()
        if value in text
    ]
    problems += [
        f"webhook signing secret in {where}"
        for where, text in places.items()
        if where != "database" and signing_secret in text
    ]
    problems += [f"card number {number} in {where}" for where, text in places.items() for number in card_numbers(text)]
    problems += [f"Stripe key {key} in {where}" for where, text in places.items() for key in STRIPE_KEY.findall(text)]
    assert not problems, problems
    assert len(dump) > 10_000 and len(logs) > 1_000  # the scan saw a real day
    # The webhook secret is in the database (the product signs with it), only there.
    assert signing_secret in dump

    files = repository_data_files()
    from billing.providers.sandbox import TEST_CARDS

    published = stripe_test_cards()
    assert {number for number, *_ in TEST_CARDS.values()} <= published  # the sandbox knows test cards only
    repo_problems = []
    for path in files:
        text = path.read_text(errors="replace")
        for number in card_numbers(text) - published:
            repo_problems.append(f"card-like number {number} in {path.relative_to(ROOT)}")
        for key in STRIPE_KEY.findall(text):
            repo_problems.append(f"Stripe key {key[:12]}… in {path.relative_to(ROOT)}")
        if settings.SECRET_KEY in text and not settings.SECRET_KEY.startswith("insecure-"):
            repo_problems.append(f"SECRET_KEY in {path.relative_to(ROOT)}")
    assert not repo_problems, repo_problems
    record_figures(
        "r7_secret_scan",
        {
            "database_bytes": len(dump),
            "log_records": len(every_log_at_debug.lines),
            "emails": len(smtp_server.messages),
            "webhook_deliveries": len(webhook_receiver.received),
            "repository_files_scanned": len(files),
            "secrets_checked": len(never_anywhere) + 1,
            "findings": 0,
            "webhook_signing_secret_storage": "clear (needed to sign), scanned in logs and outputs only",
        },
    )
