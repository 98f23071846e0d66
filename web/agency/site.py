"""The agency site's root and its logo."""

from __future__ import annotations

import mimetypes

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect


def agency_logo(request: HttpRequest) -> HttpResponse:
    """The agency's logo, from whatever storage holds it (pages show it before sign-in too)."""
    agency = request.tenant  # type: ignore[attr-defined]
    if not getattr(agency, "logo", None):
        raise Http404
    try:
        with agency.logo.open("rb") as handle:
            data = handle.read()
    except OSError:
        raise Http404 from None
    response = HttpResponse(data, content_type=mimetypes.guess_type(agency.logo.name)[0] or "image/png")
    response["Cache-Control"] = "public, max-age=300"
    # Opened on its own, an image is a document of this origin: it may run nothing and load nothing.
    response["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; sandbox"
    )
    return response


def home(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not user.is_authenticated:
        return redirect("login")
    if user.role == "CLIENT":  # type: ignore[union-attr]
        return redirect("portal")
    return redirect("billing-overview")
