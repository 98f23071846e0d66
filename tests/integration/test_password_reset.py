"""Password reset by email, through a real SMTP server (aiosmtpd), on two agencies and on the console: the link
works once, expires, stays on the host it was asked on, and requests are throttled (accounts/password_reset.py)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from django_tenants.utils import schema_context

from accounts.models import Role, User
from accounts.password_reset import PasswordResetTokens
from tests.conftest import host_client, make_user

pytestmark = pytest.mark.django_db

SHARED_EMAIL = "sam@shared.test"


def _link(message) -> tuple[str, str]:
    """(origin, path) of the reset link in an email, read as a mail client decodes it."""
    found = re.search(r"(https?://[^/\s]+)(/password-reset/[^\s]+/)", message.get_content())
    assert found, message.get_content()
    return found.group(1), found.group(2)


def _ask(http, email: str):
    return http.post("/password-reset/", {"email": email})


def _set(http, path: str, password: str):
    """Open the link and choose a password; the response of the last step."""
    opened = http.get(path, follow=True)
    if 'name="new_password1"' not in opened.content.decode():
        return opened
    return http.post(opened.redirect_chain[-1][0], {"new_password1": password, "new_password2": password})


@pytest.fixture
def two_agencies(agency_a, agency_b):
    """The same address is a user of both agencies, with different passwords."""
    make_user(agency_a, SHARED_EMAIL, Role.ADMINISTRATOR, "alpha-old-pass-11")
    make_user(agency_b, SHARED_EMAIL, Role.SALESPERSON, "beta-old-pass-22")
    return agency_a, agency_b


def _password_ok(schema: str, email: str, password: str) -> bool:
    with schema_context(schema):
        return User.objects.get(email=email).check_password(password)


def test_reset_on_agency_a_changes_only_a_and_the_link_works_once(two_agencies, smtp_server):
    alpha, beta = (host_client(a) for a in two_agencies)
    assert _ask(alpha, SHARED_EMAIL)["Location"] == "/password-reset/sent/"
    assert len(smtp_server.messages) == 1
    message = smtp_server.messages[0]
    assert message["To"] == SHARED_EMAIL and "Alpha Agency billing" in message["Subject"]
    origin, path = _link(message)
    assert origin == "http://alpha.localhost"  # SITE_URL, on A's host
    # A's link means nothing on B's host, although a user of B has the same id and address.
    refused = _set(beta, path, "stolen-pass-33-x")
    assert "This link no longer works" in refused.content.decode()
    assert _password_ok("beta", SHARED_EMAIL, "beta-old-pass-22")
    done = _set(alpha, path, "alpha-new-pass-44")
    assert done.status_code == 302 and done["Location"] == "/password-reset/done/"
    assert _password_ok("alpha", SHARED_EMAIL, "alpha-new-pass-44")
    assert _password_ok("beta", SHARED_EMAIL, "beta-old-pass-22")
    # Used once: the same link is refused now, and changes nothing.
    again = _set(host_client(two_agencies[0]), path, "alpha-third-pass-55")
    assert "This link no longer works" in again.content.decode()
    assert _password_ok("alpha", SHARED_EMAIL, "alpha-new-pass-44")


def test_reset_on_agency_b_sends_b_s_link_and_a_is_untouched(two_agencies, smtp_server):
    beta = host_client(two_agencies[1])
    _ask(beta, SHARED_EMAIL.upper())  # the address as typed differently
    origin, path = _link(smtp_server.messages[0])
    assert origin == "http://beta.localhost"
    assert _set(beta, path, "beta-new-pass-66")["Location"] == "/password-reset/done/"
    assert _password_ok("beta", SHARED_EMAIL, "beta-new-pass-66")
    assert _password_ok("alpha", SHARED_EMAIL, "alpha-old-pass-11")


def test_an_expired_link_is_refused(two_agencies, smtp_server, monkeypatch, settings):
    alpha = host_client(two_agencies[0])
    _ask(alpha, SHARED_EMAIL)
    _, path = _link(smtp_server.messages[0])
    later = datetime.now() + timedelta(seconds=settings.PASSWORD_RESET_LINK_SECONDS + 60)
    monkeypatch.setattr(PasswordResetTokens, "_now", lambda self: later)
    refused = _set(alpha, path, "too-late-pass-77")
    assert "This link no longer works" in refused.content.decode()
    assert _password_ok("alpha", SHARED_EMAIL, "alpha-old-pass-11")
    monkeypatch.undo()  # within the hour the same link still works: it was the clock that refused it
    assert _set(alpha, path, "in-time-pass-88")["Location"] == "/password-reset/done/"


def test_unknown_and_inactive_addresses_get_the_same_page_and_no_email(agency_a, smtp_server):
    user = make_user(agency_a, "gone@alpha.test", Role.SALESPERSON)
    with schema_context("alpha"):
        User.objects.filter(pk=user.pk).update(is_active=False)
    http = host_client(agency_a)
    for email in ("nobody@alpha.test", "gone@alpha.test"):
        response = _ask(http, email)
        assert response.status_code == 302 and response["Location"] == "/password-reset/sent/"
    assert smtp_server.messages == []
    bad = _ask(http, "not an email")
    assert bad.status_code == 400 and "Enter a valid email address." in bad.content.decode()


def test_requests_are_throttled_per_address_asked_for(two_agencies, smtp_server, settings):
    alpha = host_client(two_agencies[0])
    for _ in range(settings.PASSWORD_RESET_PER_EMAIL):
        assert _ask(alpha, SHARED_EMAIL).status_code == 302
    refused = _ask(alpha, SHARED_EMAIL)
    assert refused.status_code == 429 and "Too many password reset requests" in refused.content.decode()
    assert refused["Retry-After"] == str(settings.PASSWORD_RESET_WINDOW_SECONDS)
    assert len(smtp_server.messages) == settings.PASSWORD_RESET_PER_EMAIL
    # The count is per agency: the same address on B is not held back by A's requests.
    assert _ask(host_client(two_agencies[1]), SHARED_EMAIL).status_code == 302
    assert len(smtp_server.messages) == settings.PASSWORD_RESET_PER_EMAIL + 1


def test_requests_are_throttled_per_caller(agency_a, smtp_server, settings):
    settings.PASSWORD_RESET_PER_ADDRESS = 2
    http = host_client(agency_a)
    assert _ask(http, "one@alpha.test").status_code == 302
    assert _ask(http, "two@alpha.test").status_code == 302
    assert _ask(http, "three@alpha.test").status_code == 429


def test_console_reset_for_billing_support_in_the_public_schema(agency_a, smtp_server):
    make_user(None, "support@platform.test", Role.BILLING_SUPPORT, "support-old-pass-9")
    make_user(agency_a, "support@platform.test", Role.ADMINISTRATOR, "agency-pass-10x")
    console = host_client(None)
    page = console.get("/login/")
    assert 'href="/password-reset/"' in page.content.decode()
    _ask(console, "support@platform.test")
    message = smtp_server.messages[0]
    assert "agencybilling billing support" in message["Subject"]
    origin, path = _link(message)
    assert origin == "http://localhost"
    # The console's link is refused on an agency's host.
    assert "This link no longer works" in _set(host_client(agency_a), path, "x-pass-for-agency-1").content.decode()
    assert _set(console, path, "support-new-pass-2")["Location"] == "/password-reset/done/"
    assert _password_ok("public", "support@platform.test", "support-new-pass-2")
    assert _password_ok("alpha", "support@platform.test", "agency-pass-10x")
    assert console.login(email="support@platform.test", password="support-new-pass-2")


def test_a_new_password_ends_the_sign_in_lock_out(agency_a, smtp_server, settings):
    make_user(agency_a, "locked@alpha.test", Role.ADMINISTRATOR, "forgotten-pass-1")
    http = host_client(agency_a)
    for _ in range(settings.LOGIN_FAILURES_PER_USER):
        http.post("/login/", {"username": "locked@alpha.test", "password": "wrong"})
    assert http.post("/login/", {"username": "locked@alpha.test", "password": "forgotten-pass-1"}).status_code == 429
    _ask(http, "locked@alpha.test")
    _, path = _link(smtp_server.messages[0])
    assert _set(http, path, "remembered-pass-2")["Location"] == "/password-reset/done/"
    signed_in = http.post("/login/", {"username": "locked@alpha.test", "password": "remembered-pass-2"})
    assert signed_in.status_code == 302


def test_sign_in_pages_offer_the_reset_and_a_favicon(agency_a):
    for http in (host_client(agency_a), host_client(None)):
        html = http.get("/login/").content.decode()
        assert "Forgot password?" in html and 'rel="icon"' in html
        icon = http.get("/favicon.ico")
        assert icon.status_code == 200 and icon["Content-Type"] == "image/x-icon"
        assert b"".join(icon.streaming_content)[:4] == b"\x00\x00\x01\x00"  # an ICO file
