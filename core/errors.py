"""One error base for the domain; the API and views map it to a stable shape."""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """A domain rule refused an operation. `code` is stable and machine-readable."""

    code = "invalid"
    status = 400

    def __init__(
        self,
        message: str,
        *,
        fields: dict[str, list[str]] | None = None,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        self.extra = extra or {}
        if code:
            self.code = code

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "fields": self.fields}


class NotFound(ApplicationError):
    code = "not_found"
    status = 404


class Conflict(ApplicationError):
    code = "conflict"
    status = 409


class PermissionDenied(ApplicationError):
    code = "permission_denied"
    status = 403
