"""The API tokens page (ROLE-1: Administrators on an agency, billing support on the platform): a token is shown
once, stored as a digest, works on the API at once, and stops working when revoked; bad input is shown next to
the field with the input kept."""

from __future__ import annotations

import hashlib
import re

import pytest
from django_tenants.utils import schema_context

from accounts.models import ApiToken, AuditEntry, Role
from tests.api.conftest import api
from tests.conftest import login_client, make_user

pytestmark = pytest.mark.django_db


def _secret(html: str) -> str:
    match = re.search(r'<code id="new-token"[^>]*>(abk_[^<]+)</code>', html)
    assert match, "the new token is shown"
    return match.group(1)


@pytest.mark.parametrize("agency_slug", ["alpha", None])
def test_create_use_and_revoke_a_token_from_the_page(agency_a, agency_slug):
    agency = agency_a if agency_slug else None
    role = Role.ADMINISTRATOR if agency else Role.BILLING_SUPPORT
    make_user(agency, "page-admin@x.test", role)
    browser = login_client(agency, "page-admin@x.test")
    page = browser.get("/settings/api-tokens/")
    assert page.status_code == 200 and "No tokens yet." in page.content.decode()
    created = browser.post(
        "/settings/api-tokens/",
        {"action": "create", "name": "CRM sync", "owner": str(page.context["form"].initial["owner"])},
    )
    assert created.status_code == 200
    secret = _secret(created.content.decode())
    with schema_context(agency.schema_name if agency else "public"):
        token = ApiToken.objects.get()
        assert token.digest == hashlib.sha256(secret.encode()).hexdigest() and token.name == "CRM sync"
        assert AuditEntry.objects.filter(action="api_token.created").exists()
    assert api(agency, secret).get("/api/v1/me/").json()["email"] == "page-admin@x.test"
    listing = browser.get("/settings/api-tokens/").content.decode()
    assert secret not in listing and token.prefix in listing  # shown once; afterwards only its start
    asked = browser.post("/settings/api-tokens/", {"action": "revoke", "token": str(token.public_id)})
    assert "Revoke token" in asked.content.decode()  # asked first; nothing revoked yet
    assert api(agency, secret).get("/api/v1/me/").status_code == 200
    revoked = browser.post(
        "/settings/api-tokens/", {"action": "revoke", "token": str(token.public_id), "confirm": "yes"}, follow=True
    )
    assert "revoked" in revoked.content.decode()
    assert api(agency, secret).get("/api/v1/me/").status_code == 401


def test_an_administrator_can_make_a_token_for_a_salesperson_which_acts_as_one(agency_a):
    make_user(agency_a, "page-admin@alpha.test", Role.ADMINISTRATOR)
    seller = make_user(agency_a, "seller@alpha.test", Role.SALESPERSON)
    make_user(agency_a, "portal@alpha.test", Role.CLIENT)
    browser = login_client(agency_a, "page-admin@alpha.test")
    options = browser.get("/settings/api-tokens/").context["form"].fields["owner"].choices
    assert "portal@alpha.test" not in str(options)  # client users get no tokens
    created = browser.post("/settings/api-tokens/", {"action": "create", "name": "Seller CRM", "owner": str(seller.pk)})
    http = api(agency_a, _secret(created.content.decode()))
    assert http.get("/api/v1/me/").json()["role"] == Role.SALESPERSON
    assert http.get("/api/v1/billing-settings/").status_code == 403


def test_bad_input_is_shown_next_to_the_field_and_kept(agency_a):
    make_user(agency_a, "page-admin@alpha.test", Role.ADMINISTRATOR)
    browser = login_client(agency_a, "page-admin@alpha.test")
    owner = str(browser.get("/settings/api-tokens/").context["form"].initial["owner"])
    response = browser.post("/settings/api-tokens/", {"action": "create", "name": "", "owner": owner})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="id_name_error"' in html and "This field is required." in html
    too_long = browser.post("/settings/api-tokens/", {"action": "create", "name": "n" * 101, "owner": owner})
    assert too_long.status_code == 400 and 'value="' + "n" * 101 + '"' in too_long.content.decode()
    with schema_context(agency_a.schema_name):
        assert not ApiToken.objects.exists()


@pytest.mark.parametrize("role", [Role.COMPANY_MANAGER, Role.SALESPERSON, Role.CLIENT])
def test_only_administrators_manage_tokens(agency_a, role):
    make_user(agency_a, "someone@alpha.test", role)
    browser = login_client(agency_a, "someone@alpha.test")
    assert browser.get("/settings/api-tokens/").status_code == 403
    assert browser.post("/settings/api-tokens/", {"action": "create", "name": "x", "owner": "1"}).status_code == 403


def test_the_dashboard_links_to_the_tokens_page_for_administrators_only(agency_a):
    make_user(agency_a, "page-admin@alpha.test", Role.ADMINISTRATOR)
    make_user(agency_a, "manager@alpha.test", Role.COMPANY_MANAGER)
    admin_page = login_client(agency_a, "page-admin@alpha.test").get("/settings/api-tokens/").content.decode()
    assert 'href="/settings/api-tokens/"' in admin_page
    manager_page = login_client(agency_a, "manager@alpha.test").get("/clients/").content.decode()
    assert 'href="/settings/api-tokens/"' not in manager_page
