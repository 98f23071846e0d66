from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from clients.selectors import client_list_for_user


@login_required
def client_list(request: HttpRequest) -> HttpResponse:
    clients = client_list_for_user(user=request.user)  # type: ignore[arg-type]
    return render(request, "clients/client_list.html", {"clients": clients})


@login_required
def client_detail(request: HttpRequest, public_id) -> HttpResponse:
    # Scoped by schema (the request's agency) and by role; anything else is a plain 404 (TEN-2).
    client = get_object_or_404(client_list_for_user(user=request.user), public_id=public_id)  # type: ignore[arg-type]
    return render(request, "clients/client_detail.html", {"client": client})
