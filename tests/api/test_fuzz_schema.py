"""Schemathesis against the live schema, in process (WSGI), over every operation of both hosts (issue 7):
zero 5xx and zero responses that break the schema — status codes, content types, bodies, headers — for valid
and deliberately invalid input, which must be refused with a 4xx."""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.models import Role
from tests.api.conftest import api, token_for
from tests.api.schemas import AGENCY_DOCUMENT, PLATFORM_DOCUMENT

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]
# Bounded so the whole run takes about a minute on two shared cores.
FUZZ = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


agency_schema = schemathesis.openapi.from_dict(AGENCY_DOCUMENT)
platform_schema = schemathesis.openapi.from_dict(PLATFORM_DOCUMENT)
agency_schema.app = platform_schema.app = WSGIHandler()


@pytest.fixture(autouse=True)
def _keep_test_connection():
    """Like Django's test client: the WSGI handler must not close the connection holding the test transaction."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def agency_api(shared_worlds, agency_a, agency_b):
    world, _ = shared_worlds  # and another agency with data, so a leak would have something to show
    return token_for(agency_a, "fuzz-admin@alpha.test", Role.ADMINISTRATOR), world


@pytest.fixture
def platform_api(shared_worlds, agency_a):
    world, _ = shared_worlds
    ids = {
        "slug": "alpha",
        "client_id": world.ids["client_id"],
        "charge_id": world.ids["charge_id"],
        "plan_id": str(agency_a.plan_id),
    }
    return token_for(None, "fuzz-support@platform.test", Role.BILLING_SUPPORT), ids


@pytest.mark.parametrize(("agency", "document"), [("alpha", AGENCY_DOCUMENT), (None, PLATFORM_DOCUMENT)])
def test_served_schema_is_the_fuzzed_one(agency_a, agency, document):
    """The documents fuzzed here are generated in process; this proves they are the ones /api/v1/schema/ serves."""
    reader = agency_a if agency else None
    secret = token_for(reader, "schema-reader@example.test", Role.SALESPERSON if agency else Role.BILLING_SUPPORT)
    response = api(reader, secret).get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    assert json.loads(json.dumps(response.json())) == json.loads(json.dumps(document, default=str))
    assert len(document["paths"]) >= (25 if agency else 10)


SEEN: dict[str, Counter] = defaultdict(Counter)
_turn = itertools.count()


@pytest.fixture(scope="module", autouse=True)
def _summary():
    """Status codes seen per operation, written to .local/api-fuzz-summary.json for a look."""
    yield
    from django.conf import settings

    path = settings.BASE_DIR / ".local" / "api-fuzz-summary.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({op: dict(counts) for op, counts in sorted(SEEN.items())}, indent=1))


def _call(case, base_url: str, secret: str, ids: dict[str, str]):
    # Every other case names real objects, so the fuzzer reaches the success paths, not only 404s.
    positive = case.meta is None or case.meta.generation.mode == "positive"
    if positive and next(_turn) % 2 and case.path_parameters:
        case.path_parameters = {name: ids.get(name, value) for name, value in case.path_parameters.items()}
    if positive and case.headers and next(_turn) % 3:
        # Generated keys repeat ("0"), which mostly exercises the 409 of a reused key; drop most of them.
        case.headers = {k: v for k, v in case.headers.items() if k != "Idempotency-Key"}
    response = case.call_and_validate(base_url=base_url, headers={"Authorization": f"Bearer {secret}"}, checks=CHECKS)
    SEEN[f"{case.method} {case.path}"][response.status_code] += 1


@agency_schema.parametrize()
@FUZZ
def test_agency_api_fuzz(case, agency_api):
    secret, world = agency_api
    _call(case, "http://alpha.localhost", secret, world.ids)


@platform_schema.parametrize()
@FUZZ
def test_platform_api_fuzz(case, platform_api):
    secret, ids = platform_api
    _call(case, "http://localhost", secret, ids)
