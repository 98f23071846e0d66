"""Idempotency-Key on every POST of both hosts (issue 7), generated over the schema: replaying the same key and
body gives the stored response and stores nothing new; the same key with another body, or on another path, is a
409 and stores nothing; no key, no replay."""

from __future__ import annotations

import pytest

from accounts.models import Role
from tests.api.bodies import agency_bodies, changed, platform_bodies, row_counts
from tests.api.conftest import api, fill, token_for
from tests.api.schemas import AGENCY_DOCUMENT, PLATFORM_DOCUMENT, WRITES, operations

pytestmark = pytest.mark.django_db

AGENCY_POSTS = operations(AGENCY_DOCUMENT, ("post",))
PLATFORM_POSTS = operations(PLATFORM_DOCUMENT, ("post",))


def test_every_write_operation_has_a_body():
    class World:
        ids = {"client_id": "x"}

    assert set(operations(AGENCY_DOCUMENT, WRITES)) == set(agency_bodies(World()))
    assert set(operations(PLATFORM_DOCUMENT, WRITES)) == set(platform_bodies(World(), 1))


def _replay_check(http, url, body, schemas):
    first = http.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="key-0001")
    assert 200 <= first.status_code < 300, first.content
    before = row_counts(*schemas)
    second = http.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="key-0001")
    assert second.status_code == first.status_code
    assert second["Idempotent-Replayed"] == "true"
    expected = first.json() if first.content else None
    if isinstance(expected, dict) and "secret" in expected:
        expected["secret"] = None  # shown once: never stored, so a replay cannot show it again
    assert (second.json() if second.content else None) == expected
    assert not changed(before, row_counts(*schemas)), "a replay stored something"
    other_body = http.post(url, {**body, "replayed": 1}, format="json", HTTP_IDEMPOTENCY_KEY="key-0001")
    assert other_body.status_code == 409 and other_body.json()["code"] == "idempotency_key_reused"
    other_path = http.post("/api/v1/api-tokens/", {"name": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="key-0001")
    assert other_path.status_code == 409
    assert not changed(before, row_counts(*schemas)), "a refused key stored something"
    return first


@pytest.mark.parametrize(("method", "path"), AGENCY_POSTS)
def test_replaying_an_agency_post_creates_nothing_new(shared_world, agency_a, method, path):
    world = shared_world
    http = api(agency_a, token_for(agency_a, "idem-admin@alpha.test", Role.ADMINISTRATOR))
    ids = {**world.ids, "charge_id": world.other_ids["charge_id"]}  # the other charge has no open request yet
    body = agency_bodies(world)[(method, path)]
    _replay_check(http, fill(path, ids), body, ("alpha", "public"))


@pytest.mark.parametrize(("method", "path"), PLATFORM_POSTS)
def test_replaying_a_platform_post_creates_nothing_new(shared_world, agency_a, method, path):
    world = shared_world
    http = api(None, token_for(None, "idem-support@platform.test", Role.BILLING_SUPPORT))
    body = platform_bodies(world, agency_a.plan_id)[(method, path)]
    _replay_check(http, fill(path, world.ids), body, ("alpha", "public"))


def test_without_a_key_each_post_runs(shared_world, agency_a):
    world = shared_world
    http = api(agency_a, token_for(agency_a, "idem-admin@alpha.test", Role.ADMINISTRATOR))
    for _ in range(2):
        assert http.post("/api/v1/tax-rates/", {"name": "VAT", "rate_bp": 2000}, format="json").status_code == 201
    assert [r["name"] for r in http.get("/api/v1/tax-rates/").json()].count("VAT") == 2
    del world


def test_a_refused_request_does_not_keep_the_key(shared_world, agency_a):
    http = api(agency_a, token_for(agency_a, "idem-admin@alpha.test", Role.ADMINISTRATOR))
    bad = http.post("/api/v1/tax-rates/", {"name": "VAT", "rate_bp": 20000}, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    assert bad.status_code == 400
    good = http.post("/api/v1/tax-rates/", {"name": "VAT", "rate_bp": 2000}, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    assert good.status_code == 201


@pytest.mark.parametrize("key", ["", " spaced key", "x" * 256, "naïve"])
def test_a_malformed_key_is_refused(agency_a, key):
    http = api(agency_a, token_for(agency_a, "idem-admin@alpha.test", Role.ADMINISTRATOR))
    before = row_counts("alpha")
    response = http.post(
        "/api/v1/tax-rates/", {"name": "VAT", "rate_bp": 2000}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert response.status_code == 400 and "Idempotency-Key" in response.json()["fields"]
    assert not changed(before, row_counts("alpha"), ignore=("accounts_apitoken",))


def test_keys_belong_to_their_user(agency_a):
    """Two users may use the same key for different requests (keys are scoped per user, like Stripe's per account)."""
    first = api(agency_a, token_for(agency_a, "one@alpha.test", Role.ADMINISTRATOR))
    second = api(agency_a, token_for(agency_a, "two@alpha.test", Role.ADMINISTRATOR))
    a = first.post("/api/v1/tax-rates/", {"name": "A", "rate_bp": 100}, format="json", HTTP_IDEMPOTENCY_KEY="same")
    b = second.post("/api/v1/tax-rates/", {"name": "B", "rate_bp": 200}, format="json", HTTP_IDEMPOTENCY_KEY="same")
    assert (a.status_code, b.status_code) == (201, 201) and a.json()["id"] != b.json()["id"]


def test_keys_expire_after_24_hours_in_every_schema(shared_world, agency_a):
    """A key is remembered 24 hours; the hourly expiry forgets older ones in the platform schema and every
    agency's, and then the same key runs as a new request."""
    from datetime import timedelta

    from django.utils import timezone
    from django_tenants.utils import schema_context

    from api.models import IdempotencyRecord
    from api.tasks import idempotency_expire

    agency = api(agency_a, token_for(agency_a, "idem-admin@alpha.test", Role.ADMINISTRATOR))
    platform = api(None, token_for(None, "idem-support@platform.test", Role.BILLING_SUPPORT))
    body = {"name": "VAT", "rate_bp": 2000}
    assert agency.post("/api/v1/tax-rates/", body, format="json", HTTP_IDEMPOTENCY_KEY="old").status_code == 201
    assert agency.post("/api/v1/tax-rates/", body, format="json", HTTP_IDEMPOTENCY_KEY="new").status_code == 201
    assert (
        platform.post("/api/v1/api-tokens/", {"name": "ci"}, format="json", HTTP_IDEMPOTENCY_KEY="old").status_code
        == 201
    )
    day_ago = timezone.now() - timedelta(hours=24, minutes=1)
    with schema_context("alpha"):
        IdempotencyRecord.objects.filter(key="old").update(created_at=day_ago)
    with schema_context("public"):
        IdempotencyRecord.objects.filter(key="old").update(created_at=day_ago)

    assert idempotency_expire() == {"schemas": 2, "expired": 2}

    with schema_context("alpha"):
        assert sorted(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]
    with schema_context("public"):
        assert not IdempotencyRecord.objects.exists()
    replayed = agency.post("/api/v1/tax-rates/", body, format="json", HTTP_IDEMPOTENCY_KEY="new")
    assert replayed.headers.get("Idempotent-Replayed") == "true"
    again = agency.post("/api/v1/tax-rates/", body, format="json", HTTP_IDEMPOTENCY_KEY="old")
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert [r["name"] for r in agency.get("/api/v1/tax-rates/").json()].count("VAT") == 3
