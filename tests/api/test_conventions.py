"""API conventions: token authentication (hashed, revocable), session authentication with CSRF, rate limiting per
token in the tenant-prefixed cache, ETags on invoice reads, cursor pagination, JSON 404s, schema and docs served
without a CDN."""

from __future__ import annotations

import hashlib

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client as DjangoClient
from django_tenants.utils import schema_context, tenant_context

from accounts.models import ApiToken, Role
from billing.models import Charge, Invoice
from billing.statuses import ChargeStatus
from billing.support import retry_run
from clients.models import Client
from tests.api.conftest import BILLING_DATE, api, populate, token_for
from tests.conftest import make_user
from tests.ui_helpers import billed_agency

pytestmark = pytest.mark.django_db


def test_tokens_are_stored_as_digests_and_revocation_is_immediate(agency_a):
    secret = token_for(agency_a, "tok-admin@alpha.test", Role.ADMINISTRATOR)
    http = api(agency_a, secret)
    assert http.get("/api/v1/me/").json()["authenticated_by"] == "token"
    with schema_context(agency_a.schema_name):
        token = ApiToken.objects.get(digest=hashlib.sha256(secret.encode()).hexdigest())
        stored = [str(v) for v in ApiToken.objects.filter(pk=token.pk).values().get().values()]
    assert not any(secret in value for value in stored), "the secret itself must never be stored"
    assert token.prefix == secret[:12] and token.last_used_at is not None
    listing = http.get("/api/v1/api-tokens/").json()["results"]
    assert all("secret" not in row for row in listing)
    assert http.delete(f"/api/v1/api-tokens/{token.public_id}/").status_code == 204
    response = http.get("/api/v1/me/")
    assert response.status_code == 401 and response.json()["code"] == "authentication_failed"
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer", "Bearer abk_nope", "Bearer a b", "Basic dXNlcjpwdw==", "Token "])
def test_bad_credentials_are_401_in_the_error_shape(agency_a, header):
    http = api(agency_a)
    response = http.get("/api/v1/clients/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert set(response.json()) == {"code", "message", "fields"}


def test_a_deactivated_user_token_stops_working(agency_a):
    secret = token_for(agency_a, "leaver@alpha.test", Role.COMPANY_MANAGER)
    with schema_context(agency_a.schema_name):
        from accounts.models import User

        User.objects.filter(email="leaver@alpha.test").update(is_active=False)
    assert api(agency_a, secret).get("/api/v1/me/").status_code == 401


def test_session_calls_need_the_csrf_token(agency_a):
    make_user(agency_a, "ui-admin@alpha.test", Role.ADMINISTRATOR)
    browser = DjangoClient(HTTP_HOST="alpha.localhost", enforce_csrf_checks=True)
    with schema_context(agency_a.schema_name):
        assert browser.login(email="ui-admin@alpha.test", password="pw-correct-horse-9")
    me = browser.get("/api/v1/me/")
    assert me.status_code == 200 and me.json()["authenticated_by"] == "session"
    refused = browser.post("/api/v1/tax-rates/", {"name": "VAT", "rate_bp": 100}, content_type="application/json")
    assert refused.status_code == 403 and refused.json()["code"] == "csrf_failed"
    browser.get("/settings/api-tokens/")  # any page sets the CSRF cookie
    csrf = browser.cookies["csrftoken"].value
    accepted = browser.post(
        "/api/v1/tax-rates/", {"name": "VAT", "rate_bp": 100}, content_type="application/json", HTTP_X_CSRFTOKEN=csrf
    )
    assert accepted.status_code == 201


def test_anonymous_calls_are_401(agency_a):
    response = api(agency_a).get("/api/v1/clients/")
    assert response.status_code == 401 and response.json()["code"] == "not_authenticated"


def _forget_rate_counters(schema: str, token_ids) -> None:
    with schema_context(schema):
        for pk in token_ids:
            keys = list(_redis().scan_iter(match=cache.make_key(f"rate:api:token:{pk}") + ":*"))
            if keys:
                _redis().delete(*keys)


def _redis():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL)


def test_rate_limit_per_token_in_a_tenant_prefixed_cache(agency_a, agency_b, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api": "3/minute"}}
    first = api(agency_a, token_for(agency_a, "rl-one@alpha.test", Role.ADMINISTRATOR))
    second = api(agency_a, token_for(agency_a, "rl-two@alpha.test", Role.ADMINISTRATOR))
    other_agency = api(agency_b, token_for(agency_b, "rl-one@beta.test", Role.ADMINISTRATOR))
    with schema_context(agency_a.schema_name):
        ids_a = list(ApiToken.objects.values_list("pk", flat=True))
    with schema_context(agency_b.schema_name):
        ids_b = list(ApiToken.objects.values_list("pk", flat=True))
    _forget_rate_counters("alpha", ids_a)
    _forget_rate_counters("beta", ids_b)
    statuses = [first.get("/api/v1/me/").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = first.get("/api/v1/me/")
    assert limited.json()["code"] == "throttled" and 0 < int(limited["Retry-After"]) <= 120
    assert second.get("/api/v1/me/").status_code == 200  # per token, not per agency or address
    assert other_agency.get("/api/v1/me/").status_code == 200
    # The counter lives under a key that carries the schema: the same token id in two agencies never collides.
    with schema_context("alpha"):
        key_a = cache.make_key(f"rate:api:token:{ids_a[0]}")
        assert list(_redis().scan_iter(match=key_a + ":*")), "the counter is kept under the schema's key"
    with schema_context("beta"):
        key_b = cache.make_key(f"rate:api:token:{ids_a[0]}")
    assert key_a != key_b and "alpha" in key_a and "beta" in key_b


def test_rate_limit_counts_concurrent_requests_exactly():
    """The window is counted atomically in Redis: 8 threads asking 10 times each under a limit of 25 get exactly
    25 grants (a read-then-write counter lets concurrent requests through on top of the limit)."""
    import threading
    import uuid

    from api.throttling import window_allow

    key = f"test:{uuid.uuid4().hex}"
    grants: list[bool] = []
    lock = threading.Lock()

    def ask() -> None:
        for _ in range(10):
            decision = window_allow(key=key, limit=25, window=60)
            with lock:
                grants.append(decision.allowed)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert grants.count(True) == 25 and len(grants) == 80
    refused = window_allow(key=key, limit=25, window=60)
    # Refusals are not counted, and the wait is at most the rest of this window plus the next one.
    assert not refused.allowed and 0 < refused.wait_seconds <= 120


def test_invoice_list_rows_are_what_the_serializer_writes(agency_a):
    """The list writes its rows without the serializer (performance); the serializer is the documented schema:
    both must agree, for roles that see amounts and for those that see statuses only (ROLE-1)."""
    import json

    from rest_framework.utils.encoders import JSONEncoder

    from api.agency.billing import InvoiceOutput
    from billing.selectors import invoice_list_for_user

    world = populate(agency_a)
    for email, role in (("rows-admin@alpha.test", Role.ADMINISTRATOR), ("rows-jr@alpha.test", Role.JR_SALESPERSON)):
        listed = api(agency_a, token_for(agency_a, email, role)).get("/api/v1/invoices/").json()["results"]
        with tenant_context(agency_a):
            from accounts.models import User

            user = User.objects.get(email=email)
            if role == Role.JR_SALESPERSON:
                Client.objects.filter(pk=world.own_client.pk).update(salesperson=user)
                listed = api(agency_a, token_for(agency_a, email, role)).get("/api/v1/invoices/").json()["results"]
            request = type("Request", (), {"user": user})()
            expected = [
                json.loads(json.dumps(InvoiceOutput(invoice, context={"request": request}).data, cls=JSONEncoder))
                for invoice in invoice_list_for_user(user=user)
            ]
        assert listed and sorted(listed, key=lambda row: row["id"]) == sorted(expected, key=lambda row: row["id"]), role
        assert role != Role.JR_SALESPERSON or all(row["total_minor"] is None for row in listed)


def test_invoice_reads_carry_etags(agency_a):
    world = populate(agency_a)
    http = api(agency_a, token_for(agency_a, "etag-admin@alpha.test", Role.ADMINISTRATOR))
    url = f"/api/v1/invoices/{world.ids['invoice_id']}/"
    first = http.get(url)
    etag = first["ETag"]
    unchanged = http.get(url, HTTP_IF_NONE_MATCH=etag)
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged["ETag"] == etag
    assert http.get(url, HTTP_IF_NONE_MATCH='"other"').status_code == 200
    listing = http.get("/api/v1/invoices/")
    assert http.get("/api/v1/invoices/", HTTP_IF_NONE_MATCH=listing["ETag"]).status_code == 304
    pdf = http.get(url + "pdf/")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf" and pdf.content[:5] == b"%PDF-"
    assert http.get(url + "pdf/", HTTP_IF_NONE_MATCH=pdf["ETag"]).status_code == 304
    # Two manual retries fail again: the third failure makes the charge Uncollectable (RET-3), so the invoice's
    # representation changes, and so does its ETag.
    support = make_user(None, "etag-support@platform.test", Role.BILLING_SUPPORT)
    with tenant_context(agency_a):
        for _ in range(2):
            retry_run(charge=Charge.objects.get(public_id=world.ids["charge_id"]), user=support, today=BILLING_DATE)
        assert Charge.objects.get(public_id=world.ids["charge_id"]).status == ChargeStatus.UNCOLLECTABLE
    changed = http.get(url, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag and changed.json()["status"] == "UNCOLLECTABLE"


def test_INV_1_pdf_etag_is_named_by_what_the_pdf_is_made_of_and_a_304_renders_nothing(agency_a, monkeypatch):
    """The ETag of an invoice PDF comes from its values (status, lines, branding) and the template version, not
    from a fresh render (two renders differ in their creation time); a stored PDF keeps the digest of its bytes."""
    import billing.pdf

    renders = []
    real_render = billing.pdf.render_pdf
    monkeypatch.setattr(
        billing.pdf, "render_pdf", lambda *args, **kwargs: renders.append(1) or real_render(*args, **kwargs)
    )
    scenario = billed_agency(agency_a, months=(BILLING_DATE,))
    http = api(agency_a, token_for(agency_a, "pdf-etag@alpha.test", Role.ADMINISTRATOR))
    with tenant_context(agency_a):
        retrying = Invoice.objects.get(client=scenario.declining)
        paid = Invoice.objects.get(client=scenario.paying)

    # Not settled: rendered on every download, never stored, named by its values.
    url = f"/api/v1/invoices/{retrying.public_id}/pdf/"
    first = http.get(url)
    assert first.status_code == 200 and first.content[:5] == b"%PDF-" and len(renders) == 1
    etag = first["ETag"]
    assert etag != f'"{hashlib.sha256(first.content).hexdigest()[:32]}"'
    again = http.get(url, HTTP_IF_NONE_MATCH='"other"')
    assert again.status_code == 200 and again["ETag"] == etag and len(renders) == 2
    unchanged = http.get(url, HTTP_IF_NONE_MATCH=etag)
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged["ETag"] == etag
    assert len(renders) == 2, "a 304 renders nothing"
    # The branding is part of what it is made of.
    type(agency_a).objects.filter(pk=agency_a.pk).update(brand_color="#aa3300")
    rebranded = http.get(url, HTTP_IF_NONE_MATCH=etag)
    assert rebranded.status_code == 200 and rebranded["ETag"] != etag

    # Settled (Paid): stored on its first download and named by its stored bytes from then on; branding changed
    # afterwards does not touch a stored PDF, nor its ETag.
    url = f"/api/v1/invoices/{paid.public_id}/pdf/"
    stored = http.get(url)
    assert stored.status_code == 200 and stored["ETag"] == f'"{hashlib.sha256(stored.content).hexdigest()[:32]}"'
    with tenant_context(agency_a):
        assert Invoice.objects.get(pk=paid.pk).pdf
    rendered = len(renders)
    type(agency_a).objects.filter(pk=agency_a.pk).update(brand_color="#0033aa")
    assert http.get(url, HTTP_IF_NONE_MATCH=stored["ETag"]).status_code == 304
    served = http.get(url)
    assert served.content == stored.content and served["ETag"] == stored["ETag"] and len(renders) == rendered


def test_cursor_pagination_walks_every_row_once(agency_a):
    populate(agency_a)
    http = api(agency_a, token_for(agency_a, "page-admin@alpha.test", Role.ADMINISTRATOR))
    for index in range(7):
        assert (
            http.post("/api/v1/tax-rates/", {"name": f"Tax {index}", "rate_bp": index}, format="json").status_code
            == 201
        )
        assert (
            http.post(
                "/api/v1/clients/", {"name": f"Client {index:02d}", "email": f"c{index}@example.com"}, format="json"
            ).status_code
            == 201
        )
    seen, url = [], "/api/v1/clients/?limit=3&ordering=-name"
    while url:
        page = http.get(url).json()
        seen.extend(row["name"] for row in page["results"])
        url = page["next"]
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == 9
    assert http.get("/api/v1/clients/?cursor=bogus").status_code == 400
    for limit in ("0", "²", "9" * 5000, "-1", "1.0"):
        assert http.get(f"/api/v1/clients/?limit={limit}").status_code == 400, limit
    assert http.get("/api/v1/clients/?ordering=email").json()["fields"] == {
        "ordering": ["Order by one of: name, created_at (prefix - for descending)."]
    }
    searched = http.get("/api/v1/clients/?search=client 0").json()["results"]
    assert {row["name"] for row in searched} == {f"Client {i:02d}" for i in range(7)}


def test_unknown_api_paths_answer_json(agency_a):
    for host in ("alpha.localhost", "localhost"):
        response = DjangoClient(HTTP_HOST=host).get("/api/v1/no-such-thing/")
        assert response.status_code == 404 and response.json()["code"] == "not_found"


@pytest.mark.parametrize("host", ["alpha.localhost", "localhost"])
def test_schema_and_docs_are_served_without_a_cdn_to_signed_in_readers_only(agency_a, host):
    anonymous = DjangoClient(HTTP_HOST=host)
    refused = anonymous.get("/api/v1/schema/?format=json")
    assert refused.status_code in (401, 403) and refused.json()["code"] == "not_authenticated"
    for page in ("/api/v1/docs/", "/api/v1/redoc/"):
        assert anonymous.get(page).status_code in (401, 403)
    agency = agency_a if host == "alpha.localhost" else None
    secret = token_for(agency, f"docs-reader@{host}.test", Role.BILLING_SUPPORT if agency is None else Role.SALESPERSON)
    browser = DjangoClient(HTTP_HOST=host, HTTP_AUTHORIZATION=f"Bearer {secret}")
    schema = browser.get("/api/v1/schema/?format=json")
    assert schema.status_code == 200 and schema.json()["openapi"].startswith("3.")
    for page in ("/api/v1/docs/", "/api/v1/redoc/"):
        html = browser.get(page).content.decode()
        assert "cdn." not in html and "jsdelivr" not in html and "unpkg" not in html
        assert "/static/drf_spectacular_sidecar/" in html
    asset = browser.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert asset.status_code == 200


def _keyset_page(ordering: str, query: str):
    """One Keyset page of the current schema's clients ordered by `ordering` (activation day), for `query`."""
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from api.pagination import Keyset

    class View:
        ordering_fields = ("activated_on",)
        default_ordering = ordering

    request = Request(APIRequestFactory().get(f"/api/v1/things/?{query}", HTTP_HOST="alpha.localhost"))
    return Keyset.for_request(request, View()).page(Client.objects.all(), value_of=getattr)


def _following(link: str, limit: int) -> str:
    """The query of a next/previous link, with the page size."""
    from urllib.parse import parse_qs, urlsplit

    return f"limit={limit}&cursor=" + parse_qs(urlsplit(link).query)["cursor"][0]


def test_keyset_pages_walk_rows_sharing_their_ordering_value_both_ways(agency_a):
    """Rows that share the ordering value (a month's invoices share their period start) are each shown once,
    forwards through `next` and back through `previous`: the cursor holds the boundary row's value and id."""
    from datetime import date

    from clients.services import client_create

    with tenant_context(agency_a):
        for index in range(8):
            client_create(name=f"Tied {index}", email=f"tied{index}@example.com", activated_on=date(2026, 12, 1))
        client_create(name="Earlier", email="earlier@example.com", activated_on=date(2026, 11, 1))
        expected = list(Client.objects.order_by("-activated_on", "-pk").values_list("pk", flat=True))
        forwards, pages, (rows, next_link, previous_link) = [], [], _keyset_page("-activated_on", "limit=3")
        assert previous_link is None
        while True:
            forwards.extend(row.pk for row in rows)
            pages.append([row.pk for row in rows])
            if next_link is None:
                break
            rows, next_link, previous_link = _keyset_page("-activated_on", _following(next_link, 3))
        assert forwards == expected and len(expected) == 9 and [len(p) for p in pages] == [3, 3, 3]
        backwards = []
        while previous_link is not None:
            rows, _, previous_link = _keyset_page("-activated_on", _following(previous_link, 3))
            backwards.append([row.pk for row in rows])
        assert backwards == pages[-2::-1]


def test_keyset_pages_pass_a_thousand_rows_of_one_value(agency_a):
    """1,250 rows with one ordering value, 200 a page: every row once (an offset past the tied rows stopped at
    1,000)."""
    from datetime import date

    with tenant_context(agency_a):
        Client.objects.bulk_create(
            Client(name=f"Bulk {n}", email=f"bulk{n}@example.com", activated_on=date(2026, 12, 1)) for n in range(1250)
        )
        seen, query = [], "limit=200"
        while query:
            rows, next_link, _ = _keyset_page("activated_on", query)
            seen.extend(row.pk for row in rows)
            query = next_link and _following(next_link, 200)
        assert seen == sorted(seen) and len(set(seen)) == Client.objects.count() == 1250
