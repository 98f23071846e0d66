"""Bad input on every write operation of both hosts (issue 7), generated over the schema: malformed JSON, a body
that is not an object, unknown fields, every field with the wrong type, text with NUL or lone surrogates in every
text field, text over its length, a huge payload, a form-encoded body. Each answers 4xx in the error shape and
stores nothing. Exotic but valid Unicode is stored exactly as sent."""

from __future__ import annotations

import json

import pytest

from accounts.models import Role
from tests.api.bodies import agency_bodies, changed, platform_bodies, row_counts
from tests.api.conftest import api, fill, token_for
from tests.api.schemas import AGENCY_DOCUMENT, PLATFORM_DOCUMENT, WRITES, operations

pytestmark = pytest.mark.django_db

WRONG = {
    str: [12, 12.5, True, [], {"a": 1}],
    int: ["12", 12.5, 12.0, True, [], "1e3"],
    bool: ["true", 1, 0, None, []],
    list: ["x", {"a": 1}, 3],
    dict: ["x", [1], 3],
}
HOSTILE_TEXT = ["nul\u0000byte", "lone \ud800 surrogate", "\udfff"]


def _leaves(value, path=()):
    """(path, value) of every leaf of a JSON body."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    else:
        yield path, value


def _replace(body, path, new):
    if not path:
        return new
    copy = json.loads(json.dumps(body))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return copy


def _field_name(path) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


def _bad_requests(body):
    """(label, raw bytes, content type, expected status, field that must be named or None)."""
    yield "malformed JSON", b'{"name": ', "application/json", 400, None
    yield "not an object", b"[1, 2]", "application/json", 400, None
    yield "NaN", b'{"x": NaN}', "application/json", 400, None
    yield "unknown field", json.dumps({**body, "surprise": 1}).encode(), "application/json", 400, "surprise"
    yield "huge", json.dumps({**body, "pad": "x" * 2_000_000}).encode(), "application/json", 413, None
    yield "form", b"name=x", "application/x-www-form-urlencoded", 415, None
    yield "not utf-8", b'{"name": "\xff\xfe"}', "application/json", 400, None
    for path, value in _leaves(body):
        for wrong in WRONG[type(value)]:
            raw = json.dumps(_replace(body, path, wrong)).encode()
            yield f"{_field_name(path)}={wrong!r}", raw, "application/json", 400, _field_name(path)
        if isinstance(value, str):
            for hostile in HOSTILE_TEXT:
                raw = json.dumps(_replace(body, path, hostile)).encode()  # \u escapes: valid JSON, bad text
                yield f"{_field_name(path)} hostile", raw, "application/json", 400, _field_name(path)
            raw = json.dumps(_replace(body, path, "é" * 100_001)).encode()
            yield f"{_field_name(path)} too long", raw, "application/json", 400, _field_name(path)


def _check(http, method, url, body, schemas, ignore=()):
    before = row_counts(*schemas)
    problems = []
    for label, raw, content_type, status, field in _bad_requests(body):
        response = getattr(http, method)(url, data=raw, content_type=content_type)
        try:
            error = response.json()
        except ValueError:
            problems.append((label, response.status_code, "not JSON"))
            continue
        if response.status_code != status or set(error) != {"code", "message", "fields"}:
            problems.append((label, response.status_code, error))
        elif field is not None and not any(
            key == field or key.startswith(field) or field.startswith(key) for key in error["fields"]
        ):
            problems.append((label, "field not named", error["fields"]))
    assert not problems, problems[:10]
    assert not changed(before, row_counts(*schemas), ignore=ignore), "a refused request stored something"


AGENCY_WRITES = operations(AGENCY_DOCUMENT, WRITES)
PLATFORM_WRITES = operations(PLATFORM_DOCUMENT, WRITES)


@pytest.mark.parametrize(("method", "path"), AGENCY_WRITES)
def test_bad_input_on_agency_writes_is_4xx_and_stores_nothing(shared_world, agency_a, method, path):
    world = shared_world
    http = api(agency_a, token_for(agency_a, "bad-admin@alpha.test", Role.ADMINISTRATOR))
    body = agency_bodies(world)[(method, path)]
    if not body:
        body = {}
    _check(http, method, fill(path, world.ids), body, ("alpha", "public"), ignore=("accounts_apitoken",))


@pytest.mark.parametrize(("method", "path"), PLATFORM_WRITES)
def test_bad_input_on_platform_writes_is_4xx_and_stores_nothing(shared_world, agency_a, method, path):
    world = shared_world
    http = api(None, token_for(None, "bad-support@platform.test", Role.BILLING_SUPPORT))
    body = platform_bodies(world, agency_a.plan_id)[(method, path)]
    _check(http, method, fill(path, world.ids), body, ("alpha", "public"), ignore=("accounts_apitoken",))


EXOTIC = "Zoë 🚀 שלום e\u0301 ✓ 中文 \u200b"


@pytest.mark.parametrize(
    ("path", "body", "read", "field"),
    [
        ("/api/v1/clients/", {"name": EXOTIC, "email": "zoe@example.com"}, None, "name"),
        ("/api/v1/tax-rates/", {"name": EXOTIC, "rate_bp": 100}, None, "name"),
        ("/api/v1/api-tokens/", {"name": EXOTIC}, None, "name"),
        (
            "/api/v1/webhook-endpoints/",
            {"url": "https://hooks.example.com/x", "description": EXOTIC},
            None,
            "description",
        ),
    ],
)
def test_valid_unicode_is_stored_exactly(agency_a, path, body, read, field):
    http = api(agency_a, token_for(agency_a, "uni-admin@alpha.test", Role.ADMINISTRATOR))
    response = http.post(path, body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()[field] == EXOTIC.strip()


def test_unicode_in_a_template_round_trips(agency_a):
    http = api(agency_a, token_for(agency_a, "uni-admin@alpha.test", Role.ADMINISTRATOR))
    body = {"subject": f"{EXOTIC} {{{{ client_name }}}}", "body": f"Hallo {{{{ client_name }}}} — {EXOTIC}\n"}
    saved = http.put("/api/v1/email-templates/PAYMENT_FAILED/", body, format="json")
    assert saved.status_code == 200, saved.content
    again = http.get("/api/v1/email-templates/PAYMENT_FAILED/").json()
    assert (again["subject"], again["body"], again["is_default"]) == (body["subject"], body["body"], False)


def test_a_template_reaching_outside_the_sandbox_is_refused_with_its_line(agency_a):
    http = api(agency_a, token_for(agency_a, "uni-admin@alpha.test", Role.ADMINISTRATOR))
    before = row_counts("alpha")
    response = http.put(
        "/api/v1/email-templates/PAYMENT_FAILED/",
        {"subject": "ok", "body": "line one\n{{ ''.__class__.__mro__ }}\n{% if %}"},
        format="json",
    )
    assert response.status_code == 400
    assert "body" in response.json()["fields"] and "Line" in response.json()["fields"]["body"][0]
    assert not changed(before, row_counts("alpha"), ignore=("accounts_apitoken",))
