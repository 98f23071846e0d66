"""What the agency pages share: the capability shorthand, htmx detection, month parsing, PDF responses."""

from __future__ import annotations

from datetime import date

from django.http import HttpRequest, HttpResponse

from accounts.permissions import Capability

C = Capability
SEE_BILLING = (C.VIEW_BILLING, C.VIEW_OWN_BILLING)
PAGE_SIZE = 50


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
