"""The base of every API view: authentication, ROLE-1 per method, throttling, idempotent POSTs, ETags.

One view per URL; each HTTP method on it is one operation with its own nested input/output serializers and the
capabilities (any of) that ROLE-1 requires for it. A method without an entry in `capabilities` is refused.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

from django.http import HttpResponse
from rest_framework import permissions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from accounts.permissions import Capability, has_capability
from api.idempotency import idempotent


class CapabilityPermission(permissions.BasePermission):
    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        method = request.method.lower()
        if method in ("head", "options"):
            method = "get"
        if not hasattr(view, method):
            return True  # DRF answers 405 Method Not Allowed
        required = view.capabilities.get(method)
        if required is None:
            return False
        return not required or any(has_capability(request.user, capability) for capability in required)


class ApiView(APIView):
    permission_classes = [permissions.IsAuthenticated, CapabilityPermission]
    # method → capabilities, any of which allows it; () means any signed-in user of this host.
    capabilities: ClassVar[dict[str, tuple[Capability, ...]]] = {}
    # Operations that commit before calling a payment provider claim their idempotency key in its own transaction.
    idempotency_atomic: ClassVar[bool] = True
    # Response fields never kept for replays (secrets shown once).
    idempotency_redact: ClassVar[tuple[str, ...]] = ()
    schema_tags: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "post" in cls.__dict__:
            cls.post = idempotent(
                cls.__dict__["post"],
                atomic=cls.idempotency_atomic,  # type: ignore[attr-defined]
                redact=cls.idempotency_redact,
            )

    @property
    def user(self) -> User:
        return self.request.user  # type: ignore[return-value]

    def can(self, capability: Capability) -> bool:
        return has_capability(self.user, capability)


def if_none_match(request, etag: str) -> bool:
    header = request.headers.get("If-None-Match", "")
    candidates = {part.strip().removeprefix("W/") for part in header.split(",")}
    return etag in candidates or "*" in candidates


def with_etag(request, data: Any) -> HttpResponse:
    """200 with an ETag (a digest of the JSON it sends), or 304 when the client already has this representation.
    The body is rendered once, for the digest and the response alike; `data` may be the JSON body already."""
    content = data if isinstance(data, bytes) else JSONRenderer().render(data)
    etag = f'"{hashlib.sha256(content).hexdigest()[:32]}"'
    if if_none_match(request, etag):
        return Response(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    return HttpResponse(content, content_type="application/json", headers={"ETag": etag})
