"""The OpenAPI documents the two hosts serve at /api/v1/schema/, generated once per test run (the fuzz test
checks that the served documents are these), and their operations."""

from __future__ import annotations

from drf_spectacular.generators import SchemaGenerator

METHODS = ("get", "post", "put", "patch", "delete")
WRITES = ("post", "put", "patch")


def generated_schema(urlconf: str) -> dict:
    return SchemaGenerator(urlconf=urlconf).get_schema(request=None, public=True)


AGENCY_DOCUMENT = generated_schema("agencybilling.urls_agency")
PLATFORM_DOCUMENT = generated_schema("agencybilling.urls_platform")


def operations(document: dict, methods: tuple[str, ...] = METHODS) -> list[tuple[str, str]]:
    """(method, path) of every operation; DELETEs last, so objects outlive the other operations of a loop."""
    ops = [(m, p) for p, item in document["paths"].items() for m in item if m in methods]
    return sorted(ops, key=lambda op: (op[0] == "delete", op[1], op[0]))
