"""Password reset by email, on an agency's host (its staff and client users) and on the console (billing support).

- Tenant-aware: users live in their schema, so a request on agency A's host looks the address up in A's users
  only, and the link it sends points at A's host. The token is bound to the schema it was made in, so A's link
  is refused on B's host even where a user of B has the same id.
- Single-use and expiring: the token is Django's HMAC over the user's password hash and last sign-in (setting
  a password spends it) and its own timestamp, accepted for PASSWORD_RESET_LINK_SECONDS (an hour by default).
- Throttled: each request counts against the address asked for (in this schema) and the caller's address;
  past PASSWORD_RESET_PER_EMAIL / PASSWORD_RESET_PER_ADDRESS within PASSWORD_RESET_WINDOW_SECONDS, 429.
- Says nothing about who exists: the same page follows a request for a known or an unknown address.
"""

from __future__ import annotations

import hashlib
import logging

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.contrib.auth.views import PasswordResetConfirmView
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.encoding import force_bytes
from django.utils.http import base36_to_int, urlsafe_base64_encode
from django.views.decorators.http import require_http_methods

from accounts.login import client_address, login_success_record
from core.identifiers import identifier_key
from core.links import site_origin

logger = logging.getLogger(__name__)

THROTTLED_MESSAGE = "Too many password reset requests. Try again in {minutes} minutes."


class PasswordResetTokens(PasswordResetTokenGenerator):
    """Reset links: bound to the schema they were made in, valid for PASSWORD_RESET_LINK_SECONDS (not the
    PASSWORD_RESET_TIMEOUT of invitation links), spent by the password they set."""

    key_salt = "accounts.password_reset.PasswordResetTokens"

    def _make_hash_value(self, user, timestamp) -> str:
        return f"{connection.schema_name}:{super()._make_hash_value(user, timestamp)}"  # type: ignore[attr-defined]

    def check_token(self, user, token) -> bool:
        if not super().check_token(user, token):
            return False
        try:
            made_at = base36_to_int(str(token).split("-", 1)[0])
        except ValueError:
            return False
        return self._num_seconds(self._now()) - made_at <= settings.PASSWORD_RESET_LINK_SECONDS


reset_tokens = PasswordResetTokens()


def _identifier(email: str) -> str:
    return identifier_key(email)


def _counted(request: HttpRequest, email: str) -> bool:
    """Count this request; True when it is over a limit (then nothing is sent)."""
    window = settings.PASSWORD_RESET_WINDOW_SECONDS
    digest = hashlib.sha256(_identifier(email).encode()).hexdigest()[:32]
    over = False
    for key, limit in (
        (f"pwreset:email:{digest}", settings.PASSWORD_RESET_PER_EMAIL),
        (f"pwreset:addr:{client_address(request)}", settings.PASSWORD_RESET_PER_ADDRESS),
    ):
        # The window starts at the first request: add() sets the expiry once, incr() keeps it.
        cache.add(key, 0, timeout=window)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add() and incr()
            cache.set(key, 1, timeout=window)
            count = 1
        over = over or count > limit
    return over


def _site_name(request: HttpRequest) -> str:
    tenant = getattr(request, "tenant", None)
    name = getattr(tenant, "name", "")
    return f"{name} billing" if name else "agencybilling billing support"


def _agency_slug(request: HttpRequest) -> str | None:
    schema = connection.schema_name  # type: ignore[attr-defined]
    return None if schema == settings.PUBLIC_SCHEMA_NAME else schema


def password_reset_link(user, *, agency: str | None) -> str:
    path = reverse(
        "password-reset-confirm",
        kwargs={"uidb64": urlsafe_base64_encode(force_bytes(user.pk)), "token": reset_tokens.make_token(user)},
    )
    return site_origin(agency=agency) + path


def password_reset_send(*, email: str, request: HttpRequest) -> int:
    """Email a reset link to the active user with this address in the current schema; how many were sent (0 or 1).
    Users invited but not yet signed up (no password) may use it to choose one."""
    user = get_user_model().objects.filter(email_key=_identifier(email), is_active=True).first()
    if user is None:
        return 0
    link = password_reset_link(user, agency=_agency_slug(request))
    minutes = max(1, settings.PASSWORD_RESET_LINK_SECONDS // 60)
    site = _site_name(request)
    send_mail(
        f"Reset your password for {site}",
        f"Hello,\n\nSomeone asked to reset the password of {user.email} on {site}.\n"
        f"Choose a new password here:\n\n{link}\n\n"
        f"The link works once and expires in {minutes} minutes. If you did not ask for it, ignore this email: "
        "your password stays as it is.\n",
        None,
        [user.email],
    )
    return 1


class PasswordResetRequestForm(forms.Form):
    email = forms.EmailField(label="Email", max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"}))


@require_http_methods(["GET", "POST"])
def password_reset_request(request: HttpRequest) -> HttpResponse:
    form = PasswordResetRequestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"]
        if _counted(request, email):
            logger.warning(
                "password reset refused: too many requests (schema %s, address %s)",
                connection.schema_name,  # type: ignore[attr-defined]
                client_address(request),
            )
            minutes = max(1, settings.PASSWORD_RESET_WINDOW_SECONDS // 60)
            form.add_error(None, THROTTLED_MESSAGE.format(minutes=minutes))
            response = render(request, "registration/password_reset_form.html", {"form": form}, status=429)
            response["Retry-After"] = str(settings.PASSWORD_RESET_WINDOW_SECONDS)
            return response
        try:
            password_reset_send(email=email, request=request)
        except Exception:  # noqa: BLE001 - the page must not say whether the address exists, even on failure
            logger.exception("password reset email could not be sent")
        return redirect("password-reset-sent")
    return render(request, "registration/password_reset_form.html", {"form": form}, status=400 if form.errors else 200)


def password_reset_sent(request: HttpRequest) -> HttpResponse:
    minutes = max(1, settings.PASSWORD_RESET_LINK_SECONDS // 60)
    return render(request, "registration/password_reset_sent.html", {"minutes": minutes})


class ResetConfirmView(PasswordResetConfirmView):
    template_name = "registration/password_reset_confirm.html"
    token_generator = reset_tokens
    success_url = reverse_lazy("password-reset-done")

    def get_user(self, uidb64):
        user = super().get_user(uidb64)
        return user if user is not None and user.is_active else None

    def form_valid(self, form):
        response = super().form_valid(form)
        # A new password ends the sign-in lock-out of that address (accounts.login), as a successful sign-in does.
        login_success_record(self.request, form.user.email)
        return response


def password_reset_done(request: HttpRequest) -> HttpResponse:
    return render(request, "registration/password_reset_done.html")
