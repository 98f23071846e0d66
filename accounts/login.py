"""Sign-in with throttling: after too many failed attempts for one email (in this agency) or from one address,
sign-in is refused with 429 for the rest of the window, even with the right password. A success clears that
email's counter. Counters live in the default cache, whose keys carry the schema name
(django_tenants.cache.make_key), so an agency's failures never lock anyone out of another agency."""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse

from core.identifiers import identifier_key

logger = logging.getLogger(__name__)

REFUSED_MESSAGE = "Too many failed sign-in attempts. Try again in {minutes} minutes at the latest."


def client_address(request: HttpRequest) -> str:
    """The caller's address: REMOTE_ADDR, or the address the trusted proxies in front of us saw
    (TRUSTED_PROXIES of them, counted from the right of X-Forwarded-For)."""
    proxies = settings.TRUSTED_PROXIES
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if proxies and forwarded:
        return forwarded[-min(proxies, len(forwarded))]
    return request.META.get("REMOTE_ADDR", "")


def _user_key(username: str) -> str | None:
    # The form sign-in looks the user up by (core/identifiers.py): every spelling that reaches the account counts
    # against it, a full-width or mathematical letter included.
    name = identifier_key(username)
    return f"login-fail:user:{hashlib.sha256(name.encode()).hexdigest()[:32]}" if name else None


def _keys(request: HttpRequest, username: str) -> list[tuple[str, int]]:
    keys = [(f"login-fail:addr:{client_address(request)}", settings.LOGIN_FAILURES_PER_ADDRESS)]
    if user_key := _user_key(username):
        keys.insert(0, (user_key, settings.LOGIN_FAILURES_PER_USER))
    return keys


def login_throttled(request: HttpRequest, username: str) -> bool:
    keys = _keys(request, username)
    counts = cache.get_many([key for key, _ in keys])
    return any(counts.get(key, 0) >= limit for key, limit in keys)


def login_failure_record(request: HttpRequest, username: str) -> None:
    for key, _ in _keys(request, username):
        # The window starts at the first failure: add() sets the expiry once, incr() keeps it.
        cache.add(key, 0, timeout=settings.LOGIN_THROTTLE_SECONDS)
        try:
            cache.incr(key)
        except ValueError:  # expired between add() and incr(): this failure opens a new window
            cache.set(key, 1, timeout=settings.LOGIN_THROTTLE_SECONDS)


def login_success_record(request: HttpRequest, username: str) -> None:
    if user_key := _user_key(username):
        cache.delete(user_key)


def _posted_username(request: HttpRequest) -> str:
    return str(request.POST.get("username", ""))[:254]


class ThrottledLoginView(LoginView):
    template_name = "registration/login.html"

    def post(self, request, *args, **kwargs):
        username = _posted_username(request)
        if login_throttled(request, username):
            logger.warning(
                "sign-in refused: too many failures (schema %s, address %s)",
                getattr(request.tenant, "schema_name", "?"),
                client_address(request),
            )
            # Bound without the password: it is never checked while the sign-in is refused.
            form = self.get_form_class()(request, data={"username": username})
            form.is_valid()
            minutes = max(1, settings.LOGIN_THROTTLE_SECONDS // 60)
            form.add_error(None, REFUSED_MESSAGE.format(minutes=minutes))
            response: HttpResponse = self.render_to_response(self.get_context_data(form=form))
            response.status_code = 429
            response["Retry-After"] = str(settings.LOGIN_THROTTLE_SECONDS)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        login_failure_record(self.request, _posted_username(self.request))
        return super().form_invalid(form)

    def form_valid(self, form):
        login_success_record(self.request, _posted_username(self.request))
        return super().form_valid(form)
