"""The invitation page (ONB-1), on an agency's host and on the platform's: the link's owner chooses a password
once and is signed in. A used, withdrawn, expired or unknown link says so and changes nothing."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters

from accounts.invitations import InvitationInvalid, invitation_accept, invitation_check
from core.errors import ApplicationError
from web.forms import ServiceForm


class ChoosePasswordForm(ServiceForm):
    password = forms.CharField(
        label="New password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )
    password_again = forms.CharField(
        label="New password again", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )


@never_cache
@sensitive_post_parameters("password", "password_again")
def invitation_page(request: HttpRequest, token: str) -> HttpResponse:
    now = timezone.now()
    try:
        invitation = invitation_check(token, now=now)
    except InvitationInvalid as exc:
        status = 404 if exc.code == "invitation_unknown" else 410
        return render(request, "accounts/invitation.html", {"problem": exc.message}, status=status)
    form = ChoosePasswordForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                user = invitation_accept(
                    token=token,
                    password=form.cleaned_data["password"],
                    password_again=form.cleaned_data["password_again"],
                    now=timezone.now(),
                )
            except InvitationInvalid as exc:
                return render(request, "accounts/invitation.html", {"problem": exc.message}, status=410)
            except ApplicationError as exc:
                form.apply_error(exc)
            else:
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                messages.success(request, "Your password is set. Welcome!")
                return redirect("home")
        status = 400
    # The site-wide Referrer-Policy (same-origin) keeps the link's secret from leaving with a Referer.
    return render(request, "accounts/invitation.html", {"form": form, "invitee": invitation.user}, status=status)
