"""OpenAPI conventions shared by every operation: component names from the view, the error shape on every
documented failure, the Idempotency-Key header on every POST."""

from __future__ import annotations

import re

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

ERROR_SCHEMA = {
    "type": "object",
    "required": ["code", "message", "fields"],
    "properties": {
        "code": {"type": "string", "description": "Stable, machine-readable error code."},
        "message": {"type": "string"},
        "fields": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
            "description": "Field path → messages, e.g. records[2].quantity.",
        },
    },
}
COMMON_ERRORS = {
    "400": "Invalid input (wrong types, unknown fields, malformed JSON, a rule refused it).",
    "401": "No valid token or session.",
    "403": "The role of the token's owner does not allow this (ROLE-1).",
    "404": "No such object here (other agencies' and other clients' objects are never visible).",
    "405": "Method not allowed.",
    "406": "Only application/json responses are offered.",
    "409": "Conflict: the object's state does not allow this, or the Idempotency-Key was used with another body.",
    "413": "The request body is too large.",
    "415": "Send application/json.",
    "429": "Too many requests for this token; see Retry-After.",
}

IDEMPOTENCY_PARAMETER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Send the same key to retry safely: the first response is stored and replayed for the same "
    "body; the same key with another body answers 409. 1–255 printable ASCII characters.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"},
}
ETAG_HEADER = {"ETag": {"schema": {"type": "string"}, "description": "Send it back as If-None-Match."}}
ETAG_OPERATIONS = {"invoices_list", "invoices_retrieve", "invoices_pdf"}
IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="An ETag from an earlier read: answers 304 when unchanged.",
)
NOT_MODIFIED = OpenApiResponse(description="Not modified since the ETag you sent.")


class AutoSchema(openapi.AutoSchema):
    def get_serializer_name(self, serializer, direction):
        """`ClientCreateApi.InputSerializer` → `ClientCreateInput`: unique without naming every nested class."""
        qualname = type(serializer).__qualname__
        if "." in qualname:
            return re.sub(r"(Api|Serializer)(?=\.|$)", "", qualname).replace(".", "")
        return super().get_serializer_name(serializer, direction)

    def get_tags(self):
        tags = getattr(self.view, "schema_tags", None)
        return list(tags) if tags else super().get_tags()


def postprocess_conventions(result, generator, request, public):
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            for code, description in COMMON_ERRORS.items():
                if code in ("413", "415") and method in ("get", "delete"):
                    continue
                responses.setdefault(
                    code,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    },
                )
            if operation.get("operationId") in ETAG_OPERATIONS:
                for code in ("200", "304"):
                    if code in responses:
                        responses[code].setdefault("headers", {}).update(ETAG_HEADER)
            if method == "post":
                parameters = operation.setdefault("parameters", [])
                if not any(p.get("name") == "Idempotency-Key" for p in parameters):
                    parameters.append(dict(IDEMPOTENCY_PARAMETER))
    return result


class EmptySerializer(serializers.Serializer):
    """No body."""
