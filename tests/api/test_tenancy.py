"""TEN-2 over the API, generated from the served schema: every operation that names an object answers 404 when
the object belongs to another agency (or, for salespeople, to another salesperson's client), and says nothing
about it; lists never carry another agency's objects. Not hand-picked: a new endpoint is covered by adding it."""

from __future__ import annotations

import json

import pytest

from accounts.models import Role
from tests.api.conftest import api, fill, populate, token_for
from tests.api.schemas import AGENCY_DOCUMENT, PLATFORM_DOCUMENT, operations

pytestmark = pytest.mark.django_db

OPERATIONS = operations(AGENCY_DOCUMENT)
OBJECT_OPERATIONS = [(m, p) for m, p in OPERATIONS if "{" in p and p.replace("{kind}", "").count("{")]
LIST_OPERATIONS = [(m, p) for m, p in OPERATIONS if m == "get" and "{" not in p]


def _call(http, method: str, url: str):
    return getattr(http, method)(url, data={}, format="json") if method != "get" else http.get(url)


def test_operation_lists_are_not_empty():
    assert len(OBJECT_OPERATIONS) >= 15 and len(LIST_OPERATIONS) >= 10


def test_TEN_2_every_object_of_another_agency_is_404(agency_a, agency_b):
    mine, theirs = populate(agency_a), populate(agency_b)
    http = api(agency_a, token_for(agency_a, "ten2-admin@alpha.test", Role.ADMINISTRATOR))
    leaks, misses = [], []
    for method, path in OBJECT_OPERATIONS:
        response = _call(http, method, fill(path, theirs.ids))
        body = response.content.decode()
        if response.status_code != 404 or any(value in body for value in theirs.ids.values()) or agency_b.name in body:
            leaks.append((method, path, response.status_code, body[:200]))
        elif json.loads(body) != {"code": "not_found", "message": "Not found.", "fields": {}}:
            leaks.append((method, path, "body", body[:200]))
        own = _call(http, method, fill(path, mine.ids))
        if own.status_code == 404:
            misses.append((method, path))  # the id mapping must name real objects, or the 404 above proves nothing
    assert not leaks, leaks
    assert not misses, misses


def test_TEN_2_lists_never_show_another_agencys_objects(agency_a, agency_b):
    populate(agency_a)
    theirs = populate(agency_b)
    http = api(agency_a, token_for(agency_a, "ten2-admin@alpha.test", Role.ADMINISTRATOR))
    for method, path in LIST_OPERATIONS:
        for query in (
            "",
            f"?client={theirs.ids['client_id']}",
            f"?invoice={theirs.ids['invoice_id']}",
            f"?endpoint={theirs.ids['endpoint_id']}",
        ):
            response = http.get(path + query)
            assert response.status_code in (200, 400), (path, query, response.status_code)
            body = response.content.decode()
            assert not any(value in body for value in theirs.ids.values() if value not in query), (path, query)
            assert agency_b.name not in body and "beta" not in body.replace("beta.localhost", ""), (path, query)


def test_TEN_2_a_token_works_only_on_the_host_where_it_was_made(agency_a, agency_b):
    secret = token_for(agency_a, "ten2-admin@alpha.test", Role.ADMINISTRATOR)
    assert api(agency_a, secret).get("/api/v1/me/").status_code == 200
    for other in (agency_b, None):
        response = api(other, secret).get("/api/v1/me/")
        assert response.status_code == 401
        assert response.json()["code"] == "authentication_failed"
    support = token_for(None, "ten2-support@platform.test", Role.BILLING_SUPPORT)
    assert api(None, support).get("/api/v1/agencies/").status_code == 200
    assert api(agency_a, support).get("/api/v1/clients/").status_code == 401


@pytest.mark.parametrize("role", [Role.SALESPERSON, Role.JR_SALESPERSON])
def test_TEN_2_a_salesperson_gets_404_for_other_clients_on_every_endpoint(agency_a, role):
    from django_tenants.utils import schema_context

    world = populate(agency_a)
    with_own = dict(world.ids)
    with schema_context(agency_a.schema_name):
        world.salesperson.role = role
        world.salesperson.save(update_fields=["role"])
    secret = token_for(agency_a, world.salesperson.email, role)
    http = api(agency_a, secret)
    others = {**with_own, **world.other_ids}
    nobody = {**with_own, **{name: "00000000-0000-4000-8000-000000000000" for name in world.other_ids}}
    problems = []
    client_operations = [(m, p) for m, p in OBJECT_OPERATIONS if any(f"{{{n}}}" in p for n in world.other_ids)]
    assert len(client_operations) >= 9
    for method, path in client_operations:
        own = _call(http, method, fill(path, with_own))
        other = _call(http, method, fill(path, others))
        random_id = _call(http, method, fill(path, nobody))
        # Whatever the role may do here, another salesperson's client looks exactly like no client at all.
        if (other.status_code, other.content) != (random_id.status_code, random_id.content):
            problems.append((method, path, other.status_code, random_id.status_code))
        if own.status_code != 403 and other.status_code != 404:
            problems.append((method, path, "own allowed but other not 404", other.status_code))
    assert not problems, problems
    listing = http.get("/api/v1/clients/").json()["results"]
    assert [c["id"] for c in listing] == [with_own["client_id"]]
    for path in ("/api/v1/invoices/", "/api/v1/charges/"):
        assert {row["client"]["id"] for row in http.get(path).json()["results"]} == {with_own["client_id"]}


def test_platform_document_is_separate():
    assert not set(PLATFORM_DOCUMENT["paths"]) & {p for p in AGENCY_DOCUMENT["paths"] if "client" in p}
