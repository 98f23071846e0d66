"""JSON answers for paths under /api/ that match no route, in the API's error shape."""

from __future__ import annotations

from django.http import JsonResponse


def not_found(request, exception=None):
    if request.path.startswith("/api/"):
        return JsonResponse({"code": "not_found", "message": "Not found.", "fields": {}}, status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)
