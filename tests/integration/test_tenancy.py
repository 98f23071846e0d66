"""TEN-1 / TEN-2: one schema per agency; requests, sessions and hosts never cross agencies."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from accounts.models import Role
from clients.models import Client
from tests.conftest import host_client, login_client, make_user

pytestmark = pytest.mark.django_db


def _client_named(agency, name):
    with schema_context(agency.schema_name):
        return Client.objects.create(name=name, email=f"{name.lower()}@example.com")


def _logged_in(agency, email="admin@x.test"):
    make_user(agency, email, Role.ADMINISTRATOR)
    return login_client(agency, email)


def test_TEN_1_each_agency_has_its_own_schema(agency_a, agency_b):
    _client_named(agency_a, "OnlyInA")
    with schema_context(agency_b.schema_name):
        assert not Client.objects.filter(name="OnlyInA").exists()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' "
            "AND table_name = 'clients_client'"
        )
        assert cursor.fetchone()[0] == 0, "client data must never live in the public schema"


def test_TEN_2_agency_request_cannot_read_other_agency_rows(agency_a, agency_b):
    mine = _client_named(agency_a, "Mine")
    theirs = _client_named(agency_b, "Theirs")
    http = _logged_in(agency_a)
    listing = http.get("/clients/")
    assert listing.status_code == 200
    assert b"Mine" in listing.content and b"Theirs" not in listing.content
    assert http.get(f"/clients/{mine.public_id}/").status_code == 200
    # The other agency's object is simply not there: 404, nothing about it in the body.
    response = http.get(f"/clients/{theirs.public_id}/")
    assert response.status_code == 404
    assert b"Theirs" not in response.content


def test_TEN_2_session_from_one_agency_is_not_valid_on_another(agency_a, agency_b):
    http = _logged_in(agency_a)
    assert http.get("/clients/").status_code == 200
    session_cookie = http.cookies["sessionid"].value
    # Same email exists in B too: still, A's session key means nothing in B's session table.
    make_user(agency_b, "admin@x.test", Role.ADMINISTRATOR)
    other = host_client(agency_b)
    other.cookies["sessionid"] = session_cookie
    response = other.get("/clients/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_TEN_2_agency_session_is_not_valid_on_platform_console(agency_a):
    http = _logged_in(agency_a)
    console = host_client(None)
    console.cookies["sessionid"] = http.cookies["sessionid"].value
    response = console.get("/")
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize("host", ["nobody.localhost", "alpha.localhost.evil.test", "localhost.test"])
def test_TEN_2_unknown_host_is_404(agency_a, host):
    from django.test import Client as HttpClient

    response = HttpClient(HTTP_HOST=host).get("/login/")
    assert response.status_code == 404


def test_platform_console_requires_billing_support(agency_a):
    make_user(None, "support@platform.test", Role.BILLING_SUPPORT)
    console = login_client(None, "support@platform.test")
    page = console.get("/")
    assert page.status_code == 200 and b"Alpha Agency" in page.content


def test_one_search_path_set_per_agency_request(agency_a):
    http = _logged_in(agency_a)
    _client_named(agency_a, "Counted")
    connection.set_schema_to_public()
    with CaptureQueriesContext(connection) as ctx:
        assert http.get("/clients/").status_code == 200
    sets = [q["sql"] for q in ctx.captured_queries if q["sql"].upper().startswith("SET SEARCH_PATH")]
    assert sets == ['SET search_path = "alpha","public"']


def test_cache_keys_are_tenant_prefixed(agency_a, agency_b):
    from django.core.cache import cache

    with schema_context(agency_a.schema_name):
        cache.set("overview", "A's numbers", 30)
    with schema_context(agency_b.schema_name):
        assert cache.get("overview") is None
        cache.set("overview", "B's numbers", 30)
    with schema_context(agency_a.schema_name):
        assert cache.get("overview") == "A's numbers"
