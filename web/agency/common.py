"""What the agency pages share: the capability shorthand, the client a page is about, htmx detection, month
parsing, PDF responses."""

from __future__ import annotations

from datetime import date

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404

from accounts.permissions import Capability
from clients.models import Client
from web.access import visible_clients

C = Capability
SEE_BILLING = (C.VIEW_BILLING, C.VIEW_OWN_BILLING)
PAGE_SIZE = 50


def client_for(request: HttpRequest, public_id) -> Client:
    """The client a page is about, among those the user may see (404 otherwise)."""
    return get_object_or_404(
        visible_clients(request.user).select_related("salesperson", "group"),  # type: ignore[arg-type]
        public_id=public_id,
    )


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def parse_month(value: str | None) -> date | None:
    try:
        year, month = (int(part) for part in (value or "").split("-"))
        return date(year, month, 1)
    except ValueError:
        return None


def pdf_response(data: bytes, filename: str, *, inline: bool = False) -> HttpResponse:
    response = HttpResponse(data, content_type="application/pdf")
    response["Content-Disposition"] = f'{"inline" if inline else "attachment"}; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response
