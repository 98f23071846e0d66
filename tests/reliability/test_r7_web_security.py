"""R7 — web security: `check --deploy` clean in production settings, CSRF on every form (generated from the URL
resolvers of both hosts), secure cookies, CSP and the security headers on every page, sign-in throttling,
passwords hashed by Django's hasher. The secret scan is in test_r7_secret_scan.py."""

from __future__ import annotations

import importlib
import re
import time
import uuid
from collections import Counter
from datetime import date

import pytest
from django.conf import settings
from django.contrib.auth.hashers import check_password, identify_hasher
from django.db import connection
from django.test import Client as HttpClient
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from django_tenants.utils import schema_context

from accounts.invitations import invitation_issue
from accounts.login import REFUSED_MESSAGE
from accounts.models import Role, User
from billing.platform.models import SandboxPaymentIntent
from clients.models import ClientUser, TaxRate
from tests.api.bodies import table_digests
from tests.conftest import login_client, make_user
from tests.integration.test_configuration import _manage
from tests.reliability.harness import record_figures
from tests.ui_helpers import billed_agency

PW = "pw-correct-horse-9"
PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "agencybilling.settings.production",
    "SECRET_KEY": "k3y-" + "x9Qz" * 16,
    "BASE_DOMAIN": "billing.example.com",
}


# --- check --deploy and cookies ---------------------------------------------------------------------------


def test_R7_check_deploy_is_clean_with_production_settings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0 and "no issues" in result.stdout, result.stdout + result.stderr
    record_figures("r7_check_deploy", {"check_deploy_issues": 0, "fail_level": "WARNING"})


def _production_settings(monkeypatch):
    for name, value in PRODUCTION_ENV.items():
        monkeypatch.setenv(name, value)
    import agencybilling.settings.production as production

    return importlib.reload(production)


@pytest.mark.django_db
def test_R7_session_and_csrf_cookies_are_secure_httponly_and_samesite(agency_a, settings, monkeypatch):
    """The cookies as a browser receives them, with the production settings' cookie flags."""
    production = _production_settings(monkeypatch)
    flags = {
        name: getattr(production, name)
        for name in (
            "SESSION_COOKIE_SECURE",
            "CSRF_COOKIE_SECURE",
            "SESSION_COOKIE_HTTPONLY",
            "SESSION_COOKIE_SAMESITE",
            "CSRF_COOKIE_SAMESITE",
        )
    }
    assert flags == {
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "CSRF_COOKIE_SAMESITE": "Lax",
    }
    assert production.SECURE_SSL_REDIRECT and production.SECURE_HSTS_SECONDS >= 31536000
    for name, value in flags.items():
        setattr(settings, name, value)
    make_user(agency_a, "admin@alpha.test", Role.ADMINISTRATOR)
    http = HttpClient(HTTP_HOST="alpha.localhost", enforce_csrf_checks=True)
    page = http.get("/login/", secure=True)
    csrf = page.cookies["csrftoken"]
    assert csrf["secure"] and csrf["samesite"] == "Lax"
    signed_in = http.post(
        "/login/",
        {"username": "admin@alpha.test", "password": PW, "csrfmiddlewaretoken": csrf.value},
        secure=True,
        HTTP_REFERER="https://alpha.localhost/login/",
    )
    assert signed_in.status_code == 302
    session = signed_in.cookies["sessionid"]
    assert session["secure"] and session["httponly"] and session["samesite"] == "Lax"
    record_figures("r7_cookies", {"cookies_checked": 2, **flags})


# --- CSRF on every form -----------------------------------------------------------------------------------

SAMPLE_ARGS = {
    "uuid": lambda: str(uuid.uuid4()),
    "int": lambda: "1",
    "slug": lambda: "alpha",
    "str": lambda: "PAYMENT_FAILED",
    "path": lambda: "x",
}
# Not cookie-authenticated, so not forgeable by a third-party page: Stripe's webhook (signature-checked) and the
# REST API (DRF: token calls carry no cookie; session calls are CSRF-checked by SessionAuthentication).
CSRF_EXEMPT_BY_DESIGN = ("webhooks/stripe", "api/v1/")


def _routes(resolver: URLResolver, prefix: str = ""):
    """(path with sample arguments, view) of every URL pattern, includes followed."""
    for entry in resolver.url_patterns:
        route = str(entry.pattern)
        concrete = re.sub(r"<(?:(\w+):)?(\w+)>", lambda m: SAMPLE_ARGS[m.group(1) or "str"](), route)
        if isinstance(entry, URLResolver):
            yield from _routes(entry, prefix + concrete)
        elif isinstance(entry, URLPattern):
            yield "/" + prefix + concrete, entry.callback


def _csrf_targets(urlconf: str):
    targets, exempt = [], []
    for path, view in _routes(get_resolver(urlconf)):
        if getattr(view, "csrf_exempt", False):
            exempt.append(path)
        else:
            targets.append(path)
    return targets, exempt


def _support_client() -> HttpClient:
    make_user(None, "support@platform.test", Role.BILLING_SUPPORT)
    http = HttpClient(HTTP_HOST="localhost", enforce_csrf_checks=True)
    with schema_context("public"):
        assert http.login(email="support@platform.test", password=PW)
    return http


@pytest.mark.django_db
def test_R7_every_post_without_a_csrf_token_is_refused_and_changes_nothing(agency_a):
    scenario = billed_agency(agency_a)
    agency_http = HttpClient(HTTP_HOST="alpha.localhost", enforce_csrf_checks=True)
    with schema_context("alpha"):
        assert agency_http.login(email=scenario.admin.email, password=PW)
    platform_http = _support_client()
    before = table_digests("public", "alpha")
    checked, exempt_seen = Counter(), []
    for urlconf, http in ((settings.ROOT_URLCONF, agency_http), (settings.PUBLIC_SCHEMA_URLCONF, platform_http)):
        targets, exempt = _csrf_targets(urlconf)
        assert all(path.lstrip("/").startswith(CSRF_EXEMPT_BY_DESIGN) for path in exempt), exempt
        exempt_seen += exempt
        for path in targets:
            response = http.post(
                path,
                {
                    "reason": "forged",
                    "role": "SALESPERSON",
                    "active": "0",
                    "license_price": "1.00",
                    "description": "forged",
                    "amount": "1",
                },
            )
            assert response.status_code == 403 and b"CSRF" in response.content, (urlconf, path, response.status_code)
            checked[urlconf] += 1
    assert table_digests("public", "alpha") == before
    # The same POST with the token goes through CSRF (whatever the view then answers).
    token = agency_http.get("/clients/").cookies.get("csrftoken") or agency_http.cookies["csrftoken"]
    passed = agency_http.post(
        "/email-templates/PAYMENT_FAILED/preview", {"subject": "x", "body": "y"}, HTTP_X_CSRFTOKEN=token.value
    )
    assert passed.status_code == 200
    record_figures(
        "r7_csrf",
        {
            "post_targets_refused_without_token": sum(checked.values()),
            "agency_targets": checked[settings.ROOT_URLCONF],
            "platform_targets": checked[settings.PUBLIC_SCHEMA_URLCONF],
            "exempt_by_design": len(exempt_seen),
            "rows_changed": 0,
        },
    )


@pytest.mark.django_db
def test_R7_session_authenticated_api_writes_need_the_csrf_token(agency_a):
    admin = make_user(agency_a, "admin@alpha.test", Role.ADMINISTRATOR)
    http = HttpClient(HTTP_HOST="alpha.localhost", enforce_csrf_checks=True)
    with schema_context("alpha"):
        assert http.login(email=admin.email, password=PW)
    before = table_digests("public", "alpha")
    forged = http.post("/api/v1/tax-rates/", {"name": "VAT", "rate_bp": 2000}, content_type="application/json")
    assert forged.status_code == 403 and "CSRF" in forged.json()["message"]
    assert table_digests("public", "alpha") == before
    http.get("/login/")  # a page sets the CSRF cookie, as a browser would have it
    allowed = http.post(
        "/api/v1/tax-rates/",
        {"name": "VAT", "rate_bp": 2000},
        content_type="application/json",
        HTTP_X_CSRFTOKEN=http.cookies["csrftoken"].value,
    )
    assert allowed.status_code == 201


# --- CSP and security headers on every page ---------------------------------------------------------------


def _assert_security_headers(path: str, response) -> None:
    headers = response.headers
    assert headers.get("X-Frame-Options") == "DENY", path
    assert headers.get("X-Content-Type-Options") == "nosniff", path
    assert headers.get("Referrer-Policy") == "same-origin", path
    assert headers.get("Cross-Origin-Opener-Policy") == "same-origin", path
    policy = headers.get("Content-Security-Policy", "")
    directives = dict((part.strip().split(" ", 1) + [""])[:2] for part in policy.split(";") if part.strip())
    assert directives.get("default-src") == "'self'", (path, policy)
    assert directives.get("object-src") == "'none'" and directives.get("frame-ancestors") == "'none'", path
    assert directives.get("base-uri") == "'self'" and directives.get("form-action") == "'self'", path
    assert "unsafe-inline" not in directives.get("script-src", "") and "unsafe-eval" not in policy, (path, policy)
    if "text/html" in headers.get("Content-Type", "") and not path.startswith("/api/v1/"):
        # Every inline block carries this response's nonce; no inline style attribute, no inline handler.
        html = response.content.decode()
        nonce = re.search(r"'nonce-([^']+)'", directives.get("script-src", ""))
        for tag in re.findall(r"<(?:script|style)\b[^>]*>", html):
            assert "src=" in tag or (nonce and f'nonce="{nonce.group(1)}"' in tag), (path, tag)
        assert not re.search(r"\sstyle=\"|\son[a-z]+=\"", html), path


UUID = r"[0-9a-f-]{36}"


def _with_real_ids(path: str, ids: dict[str, str], *, platform: bool) -> str:
    """The sample arguments of _routes() replaced by real objects, so pages render rather than answer 404."""
    path = re.sub(rf"clients/{UUID}/services/{UUID}", f"clients/{ids['paying']}/services/{ids['line']}", path)
    path = re.sub(rf"clients/{UUID}/charges/{UUID}", f"clients/{ids['declining']}/charges/{ids['charge']}", path)
    path = re.sub(rf"clients/{UUID}", f"clients/{ids['paying']}", path)
    path = re.sub(rf"agency-invoices/{UUID}", f"agency-invoices/{ids['agency_invoice']}", path)
    invoice = ids["agency_invoice" if platform and path.startswith("/invoices/") else "invoice"]
    path = re.sub(rf"(?<![-\w])invoices/{UUID}", f"invoices/{invoice}", path)
    path = re.sub(
        r"^/invitations/[^/]+/$", f"/invitations/{ids['platform_invitation' if platform else 'invitation']}/", path
    )
    path = re.sub(rf"taxes/{UUID}", f"taxes/{ids['tax']}", path)
    if not platform:
        path = re.sub(
            r"^/portal/sandbox/authenticate/[^/]+/$", f"/portal/sandbox/authenticate/{ids['sandbox_intent']}/", path
        )
    path = re.sub(rf"webhooks/deliveries/{UUID}", f"webhooks/deliveries/{ids['delivery']}", path)
    path = re.sub(rf"(?<![-\w])credit-notes/{UUID}", f"credit-notes/{ids.get('credit_note', '-')}", path)
    path = re.sub(rf"^/portal/charges/{UUID}", f"/portal/charges/{ids.get('paying_charge', '-')}", path)
    if not platform:
        path = re.sub(rf"^/payouts/{UUID}", f"/payouts/{ids['payout']}", path)
        path = re.sub(r"^/setup/payouts/sandbox/[^/]+/$", f"/setup/payouts/sandbox/{ids['onboarding']}/", path)
    return re.sub(r"users/1/", f"users/{ids['admin']}/", path)


def _get_every_page(urlconf: str, clients: dict[str, HttpClient], ids: dict[str, str], *, platform: bool) -> Counter:
    """GET every URL pattern of a host as the user it is for (the portal's as its client user, the rest as
    staff or billing support), and the sign-in and home pages also signed out; assert the headers on each."""
    statuses: Counter = Counter()
    for path, _view in _routes(get_resolver(urlconf)):
        path = _with_real_ids(path, ids, platform=platform)
        if path.startswith("/logout/"):
            continue  # GET is not allowed and a POST would end the session the other pages need
        http = clients["portal"] if path.startswith("/portal/") else clients["staff"]
        for who in (http, clients["anonymous"]) if path in ("/login/", "/", "/portal/", "/healthz") else (http,):
            response = who.get(path)
            _assert_security_headers(path, response)
            statuses[response.status_code] += 1
            if path.endswith("/api/v1/docs/"):
                script = who.get(path + "?script=")  # the split Swagger set-up script, served from here
                assert script.status_code == 200 and "javascript" in script.headers["Content-Type"]
            if not path.startswith(("/api/", "/branding/")):  # API details with sample ids answer 404
                assert response.status_code in (200, 302, 405), (path, response.status_code)
    return statuses


def _a_payout(agency):
    from billing.platform.models import Payout

    payout = Payout.objects.filter(agency=agency).first()
    if payout is None:
        payout = Payout.objects.create(
            agency=agency, reference="po_r7", arrival_on=date(2027, 1, 8), amount_minor=1000, currency="USD"
        )
    return payout


def _an_onboarding_token(agency) -> str:
    """A fresh link to the sandbox's hosted payout onboarding page (ONB-2), made through the product."""
    from billing.payout_accounts import payout_onboarding_link
    from core.links import absolute_url

    link = payout_onboarding_link(
        agency=agency,
        actor="r7",
        return_url=absolute_url("/setup/payouts/return/", agency=agency.schema_name),
        refresh_url=absolute_url("/setup/payouts/refresh/", agency=agency.schema_name),
    )
    return link.url.rstrip("/").rsplit("/", 1)[-1]


@pytest.mark.django_db
def test_R7_every_page_has_csp_and_security_headers(agency_a):
    from billing.corrections import credit_note_issue
    from billing.platform.models import AgencyInvoice
    from billing.statuses import CreditOutcome
    from integrations.models import OutboundEvent, WebhookDelivery, WebhookEndpoint

    scenario = billed_agency(agency_a)
    with schema_context("alpha"):
        endpoint = WebhookEndpoint.objects.create(url="http://127.0.0.1:9/hook", secret="whsec_test")
        event = OutboundEvent.objects.create(kind="invoice.finalized", key="r7-event", payload={"id": "r7"})
        delivery = WebhookDelivery.objects.create(endpoint=endpoint, event=event)
        ids = {
            "delivery": str(delivery.public_id),
            "paying": str(scenario.paying.public_id),
            "declining": str(scenario.declining.public_id),
            "line": str(scenario.paying.service_lines.first().public_id),
            "charge": str(scenario.declining.charges.first().public_id),
            "paying_charge": str(scenario.paying.charges.first().public_id),
            "invoice": str(scenario.paying.invoices.first().public_id),
            "admin": str(scenario.admin.pk),
            "tax": str(TaxRate.objects.first().public_id),
        }
        # A payout of the agency's (PAY-2): the one the month made, or one made here if it made none.
        ids["payout"] = str(_a_payout(agency_a).public_id)
        ids["onboarding"] = _an_onboarding_token(agency_a)
        ids["credit_note"] = str(
            credit_note_issue(
                invoice=scenario.paying.invoices.first(),
                user=scenario.admin,
                reason="R7",
                outcome=CreditOutcome.CREDIT,
                amount_minor=100,
                today=date(2027, 2, 2),
            ).public_id
        )
        invitee = User.objects.create_user("invitee@alpha.test", None, role=Role.SALESPERSON)
        ids["invitation"] = invitation_issue(user=invitee, actor="test", now=timezone.now()).token
    platform_invitee = User.objects.create_user("invitee@platform.test", None, role=Role.BILLING_SUPPORT)
    ids["platform_invitation"] = invitation_issue(user=platform_invitee, actor="test", now=timezone.now()).token
    ids["agency_invoice"] = str(AgencyInvoice.objects.filter(agency=agency_a).first().public_id)
    portal_user = make_user(agency_a, "owner@paying.example", Role.CLIENT)
    with schema_context("alpha"):
        ClientUser.objects.create(user=portal_user, client=scenario.paying)
        portal_charge = scenario.paying.charges.first()
        ids["portal_charge"] = str(portal_charge.public_id)
    # A Pay now of the portal's client waiting for its 3-D Secure confirmation, for the sandbox's page (COL-7).
    ids["sandbox_intent"] = SandboxPaymentIntent.objects.create(
        reference="pi_sbx_r7_3ds",
        idempotency_key="r7-3ds",
        customer="cus_sbx_r7",
        payment_method="pm_sbx_r7",
        amount_minor=portal_charge.amount_minor,
        currency="USD",
        status="requires_action",
        created_on=portal_charge.due_on,
        metadata={"schema": "alpha", "charge": ids["portal_charge"], "kind": "client"},
    ).reference
    agency_statuses = _get_every_page(
        settings.ROOT_URLCONF,
        {
            "staff": login_client(agency_a, scenario.admin.email),
            "portal": login_client(agency_a, portal_user.email),
            "anonymous": HttpClient(HTTP_HOST="alpha.localhost"),
        },
        ids,
        platform=False,
    )
    support = _support_client()
    platform_statuses = _get_every_page(
        settings.PUBLIC_SCHEMA_URLCONF,
        {"staff": support, "portal": support, "anonymous": HttpClient(HTTP_HOST="localhost")},
        ids,
        platform=True,
    )
    all_statuses = agency_statuses + platform_statuses
    assert all_statuses[500] == 0
    assert all_statuses[200] >= 50, all_statuses
    record_figures(
        "r7_headers",
        {
            "responses_checked": sum(all_statuses.values()),
            "agency_responses": sum(agency_statuses.values()),
            "platform_responses": sum(platform_statuses.values()),
            "status_counts": dict(all_statuses),
            "headers_per_response": 5,
        },
    )


@pytest.mark.django_db
def test_R7_portal_allows_stripe_js_only_on_the_payment_page_with_a_key(agency_a, settings):
    scenario = billed_agency(agency_a)
    user = make_user(agency_a, "owner@paying.example", Role.CLIENT)
    with schema_context("alpha"):
        ClientUser.objects.create(user=user, client=scenario.paying)
    portal = login_client(agency_a, "owner@paying.example")
    assert "stripe" not in portal.get("/portal/payment-method/").headers["Content-Security-Policy"]
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_placeholder"
    page = portal.get("/portal/payment-method/")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self' 'nonce-" in policy and "https://js.stripe.com" in policy
    assert "frame-src https://js.stripe.com https://hooks.stripe.com" in policy.replace("'self' ", "")
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
    assert f'<script nonce="{nonce}">' in page.content.decode()
    assert "stripe" not in portal.get("/portal/").headers["Content-Security-Policy"]


# --- sign-in throttling -----------------------------------------------------------------------------------


def _attempt(host: str, email: str, password: str, address: str):
    return HttpClient(HTTP_HOST=host).post("/login/", {"username": email, "password": password}, REMOTE_ADDR=address)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("where", "role"),
    [("alpha", Role.ADMINISTRATOR), ("alpha", Role.CLIENT), (None, Role.BILLING_SUPPORT)],
    ids=["agency-dashboard", "client-portal", "platform-console"],
)
def test_R7_sign_in_is_refused_after_five_failures_even_with_the_right_password(agency_a, agency_b, where, role):
    agency = agency_a if where else None
    host = "alpha.localhost" if where else "localhost"
    email = "person@example.test"
    make_user(agency, email, role)
    make_user(agency_b, email, role if where else Role.ADMINISTRATOR)  # the same email in another agency
    limit = settings.LOGIN_FAILURES_PER_USER
    for attempt in range(limit):
        assert _attempt(host, email, "wrong-password", f"10.0.{attempt}.1").status_code == 200
    refused = _attempt(host, email.upper(), PW, "10.9.9.9")  # right password, other address, other case
    assert refused.status_code == 429 and refused["Retry-After"] == str(settings.LOGIN_THROTTLE_SECONDS)
    minutes = settings.LOGIN_THROTTLE_SECONDS // 60
    assert REFUSED_MESSAGE.format(minutes=minutes) in refused.content.decode()
    assert "_auth_user_id" not in refused.wsgi_request.session
    # Another user of the same host, and the same email in another agency, are not affected.
    other = "other@example.test"
    make_user(agency, other, role)
    assert _attempt(host, other, PW, "10.9.9.9").status_code == 302
    assert _attempt("beta.localhost", email, PW, "10.9.9.9").status_code == 302
    record_figures(
        "r7_login_throttle",
        {
            "failures_per_user": limit,
            "failures_per_address": settings.LOGIN_FAILURES_PER_ADDRESS,
            "window_seconds": settings.LOGIN_THROTTLE_SECONDS,
            "refused_status": 429,
            "logins_covered": 3,
        },
    )


@pytest.mark.django_db
def test_R7_a_success_resets_the_count_and_the_window_ends(agency_a, settings):
    settings.LOGIN_THROTTLE_SECONDS = 2
    email = "admin@alpha.test"
    make_user(agency_a, email, Role.ADMINISTRATOR)
    for _ in range(4):
        _attempt("alpha.localhost", email, "wrong", "10.1.1.1")
    assert _attempt("alpha.localhost", email, PW, "10.1.1.1").status_code == 302
    for _ in range(4):
        assert _attempt("alpha.localhost", email, "wrong", "10.1.1.1").status_code == 200
    assert _attempt("alpha.localhost", email, PW, "10.1.1.1").status_code == 302  # 4 since the success
    for _ in range(5):
        _attempt("alpha.localhost", email, "wrong", "10.1.1.1")
    assert _attempt("alpha.localhost", email, PW, "10.1.1.1").status_code == 429
    time.sleep(2.2)
    assert _attempt("alpha.localhost", email, PW, "10.1.1.1").status_code == 302


@pytest.mark.django_db
def test_R7_one_address_trying_many_emails_is_refused(agency_a):
    limit = settings.LOGIN_FAILURES_PER_ADDRESS
    make_user(agency_a, "admin@alpha.test", Role.ADMINISTRATOR)
    for n in range(limit):
        assert _attempt("alpha.localhost", f"guess{n}@alpha.test", "wrong", "10.2.2.2").status_code == 200
    assert _attempt("alpha.localhost", "admin@alpha.test", PW, "10.2.2.2").status_code == 429
    assert _attempt("alpha.localhost", "admin@alpha.test", PW, "10.2.2.3").status_code == 302
    # A forged X-Forwarded-For does not change the address unless proxies are trusted (TRUSTED_PROXIES).
    forged = HttpClient(HTTP_HOST="alpha.localhost").post(
        "/login/",
        {"username": "admin@alpha.test", "password": PW},
        REMOTE_ADDR="10.2.2.2",
        HTTP_X_FORWARDED_FOR="203.0.113.7",
    )
    assert forged.status_code == 429


# --- passwords hashed by Django's hasher ------------------------------------------------------------------


@pytest.mark.django_db
def test_R7_passwords_set_through_the_invitation_are_hashed(
    agency_a, settings, smtp_server, django_capture_on_commit_callbacks, eager_tasks
):
    """The production hasher list (Django's default, PBKDF2 first), a password set through the real invite flow."""
    from django.conf import global_settings

    production_hashers = global_settings.PASSWORD_HASHERS
    settings.PASSWORD_HASHERS = production_hashers
    admin = make_user(agency_a, "admin@alpha.test", Role.ADMINISTRATOR)
    http = login_client(agency_a, admin.email)
    with django_capture_on_commit_callbacks(execute=True):
        assert http.post("/users/", {"email": "new.seller@alpha.test", "role": "SALESPERSON"}).status_code == 302
    content = smtp_server.messages[0].get_body(preferencelist=("plain",)).get_content()
    link = re.search(r"https?://alpha\.localhost(/invitations/[^\s]+/)", content).group(1)
    invitee = HttpClient(HTTP_HOST="alpha.localhost")
    raw = "a-long-secret-77-Quokka"
    assert invitee.post(link, {"password": raw, "password_again": raw}).status_code == 302
    with schema_context("alpha"), connection.cursor() as cursor:
        cursor.execute("SELECT email, password FROM accounts_user")
        stored = dict(cursor.fetchall())
    for email, value in stored.items():
        assert identify_hasher(value).algorithm == "pbkdf2_sha256" or email == admin.email, email
        assert raw not in value
    assert stored["new.seller@alpha.test"].startswith("pbkdf2_sha256$")
    assert check_password(raw, stored["new.seller@alpha.test"])
    assert not check_password("a-long-secret-78-Quokka", stored["new.seller@alpha.test"])
    with schema_context("alpha"):
        assert not User.objects.filter(password__contains=raw).exists()
    record_figures(
        "r7_passwords",
        {
            "hasher": identify_hasher(stored["new.seller@alpha.test"]).algorithm,
            "iterations": int(stored["new.seller@alpha.test"].split("$")[1]),
            "users_checked": len(stored),
        },
    )
