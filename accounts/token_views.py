"""The API tokens page (/settings/api-tokens/ on an agency and on the platform): create a token, see its secret
once, revoke. Administrators on an agency, billing support on the platform (ROLE-1)."""

from __future__ import annotations

import uuid

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from accounts.tokens import api_token_create, api_token_list, api_token_revoke, can_manage_tokens, token_owner_choices
from core.errors import ApplicationError


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, label="Name")
    owner = forms.ChoiceField(label="Acts as")

    def __init__(self, *args, owners, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].choices = [(str(u.pk), f"{u.email} · {u.get_role_display()}") for u in owners]


@login_required
@require_http_methods(["GET", "POST"])
def api_tokens(request: HttpRequest) -> HttpResponse:
    actor = request.user
    if not can_manage_tokens(actor):  # type: ignore[arg-type]
        raise PermissionDenied
    owners = list(token_owner_choices(actor=actor))  # type: ignore[arg-type]
    form = TokenForm(initial={"owner": str(actor.pk)}, owners=owners)
    created_secret = None
    if request.method == "POST" and request.POST.get("action") == "revoke":
        try:  # a revoke of anything but one of the listed tokens' ids is "not found", never an error
            public_id = uuid.UUID(str(request.POST.get("token", "")))
        except ValueError:
            raise Http404 from None
        token = get_object_or_404(api_token_list(actor=actor), public_id=public_id)  # type: ignore[arg-type]
        if request.POST.get("confirm") != "yes":  # asked first (web/confirm.py explains the two ways)
            return render(
                request,
                "ui/confirm.html",
                {
                    "title": f"Revoke “{token.name}”?",
                    "message": "Every integration using this token stops working at once. This cannot be undone.",
                    "action_label": "Revoke token",
                    "cancel_url": request.path,
                    "danger": True,
                    "fields": [("action", "revoke"), ("token", str(token.public_id))],
                    "action_url": request.path,
                },
            )
        api_token_revoke(actor=actor, token=token, now=timezone.now())  # type: ignore[arg-type]
        messages.success(request, f"Token “{token.name}” revoked. It no longer works.")
        return redirect("api-tokens")
    if request.method == "POST":
        form = TokenForm(request.POST, owners=owners)
        if form.is_valid():
            owner = next(u for u in owners if str(u.pk) == form.cleaned_data["owner"])
            try:
                token, created_secret = api_token_create(
                    actor=actor,
                    name=form.cleaned_data["name"],  # type: ignore[arg-type]
                    owner=owner,
                )
            except ApplicationError as exc:
                for field, errors in exc.fields.items():
                    for error in errors:
                        form.add_error(field if field in form.fields else None, error)
            else:
                form = TokenForm(initial={"owner": str(actor.pk)}, owners=owners)
    tokens = api_token_list(actor=actor)  # type: ignore[arg-type]
    status = 400 if request.method == "POST" and form.errors else 200
    return render(
        request,
        "settings/api_tokens.html",
        {"form": form, "tokens": tokens, "created_secret": created_secret},
        status=status,
    )
