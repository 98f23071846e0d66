"""One error shape for every API failure: {"code", "message", "fields"}.

`code` is stable and machine-readable; `message` is a sentence for people; `fields` maps a field path
("records[2].quantity") to its messages. Domain errors (core.errors.ApplicationError) and DRF's own exceptions
are mapped here, in one place.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from core.errors import ApplicationError

logger = logging.getLogger(__name__)

# DRF exception class → stable code.
CODES: dict[type[exceptions.APIException], str] = {
    exceptions.ParseError: "malformed_request",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ValidationError: "invalid",
}


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class IdempotencyConflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "idempotency_key_reused"


class PreconditionFailed(exceptions.APIException):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_code = "precondition_failed"


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error structure → {"a.b[0].c": ["message", ...]}."""
    fields: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            if isinstance(key, int):  # a list item's errors (ListField)
                path = f"{prefix}[{key}]"
            else:
                name = "" if key == "non_field_errors" else str(key)
                path = f"{prefix}.{name}" if prefix and name else (prefix or name)
            for sub, messages in flatten_errors(value, path).items():
                fields.setdefault(sub, []).extend(messages)
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            fields.setdefault(prefix or "non_field_errors", []).extend(str(item) for item in detail)
        else:
            for index, item in enumerate(detail):
                for sub, messages in flatten_errors(item, f"{prefix}[{index}]").items():
                    fields.setdefault(sub, []).extend(messages)
    else:
        fields.setdefault(prefix or "non_field_errors", []).append(str(detail))
    return {key: value for key, value in fields.items() if value}


def _printable(text: str) -> str:
    """Messages may quote the input: never echo a lone surrogate or NUL back (it cannot even be encoded)."""
    return str(text).encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def error_response(
    *, code: str, message: str, status_code: int, fields: dict | None = None, headers: dict | None = None
) -> Response:
    clean = {_printable(name): [_printable(m) for m in messages] for name, messages in (fields or {}).items()}
    return Response(
        {"code": code, "message": _printable(message), "fields": clean}, status=status_code, headers=headers
    )


def _message(detail: Any, default: str) -> str:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list) and len(detail) == 1 and isinstance(detail[0], str):
        return detail[0]
    return default


def exception_handler(exc: Exception, context: dict) -> Response | None:
    set_rollback()  # whatever went wrong, nothing the request wrote is kept
    if isinstance(exc, ApplicationError):
        return error_response(code=exc.code, message=exc.message, status_code=exc.status, fields=exc.fields)
    if isinstance(exc, IntegrityError):
        # A rule the database enforces (a unique constraint, most often) refused a write that the checks before it
        # let through: a concurrent request wrote first. The one place such errors are answered: 409, never 500.
        logger.warning("integrity error answered 409: %s", exc)
        return error_response(
            code="conflict",
            message="Another request changed the same data at the same time: read it again, then retry if needed.",
            status_code=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        logger.exception("unhandled API error", exc_info=exc)
        return error_response(
            code="server_error", message="Something went wrong on our side; it was logged.", status_code=500
        )
    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    if getattr(exc, "wait", None) is not None:
        headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]
    codes = exc.get_codes()
    code = CODES.get(type(exc)) or (codes if isinstance(codes, str) else exc.default_code)
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_errors(exc.detail)
        message = "Please correct the fields listed." if fields else _message(exc.detail, "The request is not valid.")
        if set(fields) == {"non_field_errors"}:
            message = fields["non_field_errors"][0]
        return error_response(code=code, message=message, status_code=exc.status_code, fields=fields, headers=headers)
    detail = exc.detail
    message = _message(detail, str(exc.default_detail))
    if isinstance(exc, exceptions.PermissionDenied) and message.startswith("CSRF Failed"):
        code = "csrf_failed"
    if isinstance(exc, exceptions.NotFound):
        message = "Not found."  # never say whether the object exists elsewhere (TEN-2)
    if isinstance(exc, exceptions.ParseError):
        code = "malformed_json" if "JSON" in message else code
    return error_response(code=code, message=message, status_code=exc.status_code, headers=headers)
