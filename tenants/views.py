from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.models import Role
from tenants.models import Agency


@login_required
def console_home(request: HttpRequest) -> HttpResponse:
    if request.user.role != Role.BILLING_SUPPORT:  # type: ignore[union-attr]
        raise PermissionDenied
    agencies = Agency.objects.prefetch_related("domains")
    return render(request, "console/home.html", {"agencies": agencies})
