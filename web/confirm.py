"""Confirmation before a destructive action (remove, deactivate, revoke, run a retry).

With JavaScript, the button's form carries `data-confirm="…"` (or htmx's `hx-confirm`): the browser asks, and
`static/js/app.js` adds `confirm=yes` to what is sent. Without it, the POST arrives unconfirmed and the view
answers with a page that asks the same question and repeats the POST with `confirm=yes`. Either way nothing
is changed until the person has said yes.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def confirmed(request: HttpRequest) -> bool:
    return request.POST.get("confirm") == "yes"


def confirm_page(
    request: HttpRequest, *, title: str, message: str, action_label: str, cancel_url: str, danger: bool = True
) -> HttpResponse:
    fields = [
        (k, v) for k, values in request.POST.lists() for v in values if k not in ("csrfmiddlewaretoken", "confirm")
    ]
    return render(
        request,
        "ui/confirm.html",
        {
            "title": title,
            "message": message,
            "action_label": action_label,
            "cancel_url": cancel_url,
            "danger": danger,
            "fields": fields,
            "action_url": request.get_full_path(),
        },
    )
