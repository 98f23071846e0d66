"""Absolute links for anything that leaves the site (emails, invitations, password resets, provider return URLs).

Every one is built here from the one setting `SITE_URL` (scheme, host and port of the platform console); an
agency's pages are at `<slug>.<host>` with the same scheme and port. Never from the request's Host header: a
link in an email must not depend on which host name a request happened to arrive under.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings


def site_origin(*, agency: str | None = None) -> str:
    """`scheme://host[:port]` of the platform console, or of the agency with this slug."""
    url = urlsplit(settings.SITE_URL)
    host = url.hostname or settings.BASE_DOMAIN
    if agency:
        host = f"{agency}.{host}"
    return f"{url.scheme}://{host}" + (f":{url.port}" if url.port else "")


def absolute_url(path: str = "/", *, agency: str | None = None) -> str:
    """The absolute address of `path` (which starts with "/") on the platform console or on an agency's host."""
    if not path.startswith("/"):
        raise ValueError(f"a site path starts with '/': {path!r}")
    return site_origin(agency=agency) + path
