"""Writes for outbound webhooks: endpoints, publishing events, delivering them (with retries) and redelivery.

Publishing happens inside the caller's transaction: the event and its deliveries are stored with the change
that caused them, and the delivery tasks are sent only after commit, so a rolled-back invoice sends nothing.
Each event has a unique key, so publishing the same fact twice (a rerun, a repeated provider event) adds nothing.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import URLValidator
from django.db import connection, transaction
from django.utils import timezone

from core.errors import ApplicationError
from integrations.models import (
    DeliveryAttempt,
    DeliveryStatus,
    EventKind,
    OutboundEvent,
    WebhookDelivery,
    WebhookEndpoint,
)
from integrations.signing import SIGNATURE_HEADER, signature_header

logger = logging.getLogger(__name__)

# Seconds to wait after the 1st, 2nd, … failed attempt. Every delay stays below the broker's visibility timeout
# (6 h) so a waiting retry is never redelivered early. 7 attempts over about 10 hours, then FAILED.
RETRY_DELAYS = (60, 300, 1800, 3600, 3 * 3600, 5 * 3600)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
SECRET_PREFIX = "whsec_"


def _text_ok(value: str) -> bool:
    return "\x00" not in value and value.encode("utf-8", "surrogatepass") == value.encode("utf-8", "replace")


def _url_errors(url: object) -> list[str]:
    """Where we may send: http(s) with a host and no credentials; in production https to a public address only."""
    if not isinstance(url, str) or not url or len(url) > 500 or not _text_ok(url):
        return ["Enter an http(s) URL of at most 500 characters."]
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return ["Enter a valid URL."]
    allow_private = settings.WEBHOOK_ALLOW_PRIVATE_HOSTS
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return ["Enter an http(s) URL with a host name."]
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        return ["Enter a valid URL."]
    if parts.scheme != "https" and not allow_private:
        return ["Use an https URL."]
    if parts.username or parts.password:
        return ["Do not put credentials in the URL; verify our signature instead."]
    if parts.port == 0:
        return ["Use a port between 1 and 65535 (or none)."]
    if not allow_private:
        address, error = _address_to_connect(url)
        if address is None:
            return [error]
    return []


def _address_to_connect(url: str) -> tuple[str | None, str]:
    """(the IP address to connect to, or None and why not). The host name is resolved once and every address
    it has must be public (unless private hosts are allowed); the request then goes to that very address, so a
    name that re-resolves to an internal address between the check and the connection (DNS rebinding) is never
    followed."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = [info[4][0] for info in socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)]
    except (OSError, UnicodeError):
        return None, "The host name cannot be resolved."
    if not addresses:
        return None, "The host name cannot be resolved."
    if not settings.WEBHOOK_ALLOW_PRIVATE_HOSTS and not all(address_public(a) for a in addresses):
        return None, "The URL points at a private, local or special-purpose address."
    return addresses[0], ""


# Special-purpose IPv6 blocks that Python's `is_global` may not know yet (newer than the interpreter's table):
# 3fff::/20 documentation (RFC 9637), 5f00::/16 SRv6 SIDs (RFC 9602), 64:ff9b:1::/48 local-use NAT64 (RFC 8215).
_NOT_GLOBAL = [ipaddress.ip_network(n) for n in ("3fff::/20", "5f00::/16", "64:ff9b:1::/48")]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def address_public(text: str) -> bool:
    """Whether an outbound request may go to this resolved address: globally routable by `ipaddress`'s properties,
    not multicast, and — for the IPv6 forms that carry an IPv4 address (mapped `::ffff:a.b.c.d`, compatible
    `::a.b.c.d`, 6to4 `2002::/16`, Teredo, NAT64 `64:ff9b::/96`) — with that IPv4 address public too: behind a NAT64
    gateway `64:ff9b::a00:1` is 10.0.0.1."""
    try:
        ip = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64:
            # A DNS64 resolver gives every IPv4-only host such an address: it is as public as the one it carries
            # (Python's table files 64:ff9b::/96 under the reserved ::/8, which would refuse them all).
            return address_public(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
        if any(ip in network for network in _NOT_GLOBAL) or ip in _IPV4_COMPATIBLE:
            return False
        embedded = [v4 for v4 in (ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())) if v4 is not None]
        if not all(address_public(str(v4)) for v4 in embedded):
            return False
    return ip.is_global and not (ip.is_multicast or ip.is_unspecified or ip.is_reserved or ip.is_loopback)


def _kinds_errors(kinds: object) -> list[str]:
    if not isinstance(kinds, list | tuple) or any(k not in EventKind.values for k in kinds):
        return [f"Choose event kinds among {', '.join(EventKind.values)} (none means all)."]
    return []


def endpoint_create(
    *, url: str, description: str = "", event_kinds: list[str] | None = None, created_by: str = ""
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; returns it and its signing secret (shown to the agency once)."""
    errors: dict[str, list[str]] = {}
    if url_errors := _url_errors(url):
        errors["url"] = url_errors
    if kinds_errors := _kinds_errors(event_kinds or []):
        errors["event_kinds"] = kinds_errors
    if not isinstance(description, str) or len(description) > 200 or not _text_ok(description):
        errors["description"] = ["At most 200 characters."]
    if errors:
        raise ApplicationError("The webhook endpoint could not be saved.", fields=errors)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    endpoint = WebhookEndpoint.objects.create(
        url=url,
        description=description.strip(),
        event_kinds=sorted(set(event_kinds or [])),
        secret=secret,
        created_by=created_by,
    )
    return endpoint, secret


_UNSET: Any = object()


def endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    url: str = _UNSET,
    description: str = _UNSET,
    event_kinds: list[str] = _UNSET,
    is_active: bool = _UNSET,
) -> WebhookEndpoint:
    errors: dict[str, list[str]] = {}
    if url is not _UNSET and (url_errors := _url_errors(url)):
        errors["url"] = url_errors
    if event_kinds is not _UNSET and (kinds_errors := _kinds_errors(event_kinds)):
        errors["event_kinds"] = kinds_errors
    if description is not _UNSET and (
        not isinstance(description, str) or len(description) > 200 or not _text_ok(description)
    ):
        errors["description"] = ["At most 200 characters."]
    if is_active is not _UNSET and type(is_active) is not bool:
        errors["is_active"] = ["true or false."]
    if errors:
        raise ApplicationError("The webhook endpoint could not be saved.", fields=errors)
    if url is not _UNSET:
        endpoint.url = url
    if description is not _UNSET:
        endpoint.description = description.strip()
    if event_kinds is not _UNSET:
        endpoint.event_kinds = sorted(set(event_kinds))
    if is_active is not _UNSET:
        endpoint.is_active = is_active
    endpoint.save()
    return endpoint


MAX_SECRET_OVERLAP = timedelta(days=7)


def endpoint_secret_roll(
    *, endpoint: WebhookEndpoint, now: datetime, previous_valid_for: timedelta = timedelta(hours=24)
) -> str:
    """Give the endpoint a new signing secret and return it (shown once). The old one keeps signing deliveries
    for `previous_valid_for` (0: stops at once, e.g. after a leak), at most a week; rolling again replaces it."""
    if not timedelta(0) <= previous_valid_for <= MAX_SECRET_OVERLAP:
        raise ApplicationError(
            "The webhook secret could not be rolled.", fields={"previous_valid_for_hours": ["Between 0 and 168 hours."]}
        )
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        locked.previous_secret = locked.secret if previous_valid_for else ""
        locked.previous_secret_expires_at = now + previous_valid_for if previous_valid_for else None
        locked.secret = secret
        locked.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at", "updated_at"])
    endpoint.refresh_from_db()
    return secret


def endpoint_remove(*, endpoint: WebhookEndpoint, now: datetime) -> None:
    """Stop sending to the endpoint; its delivery log stays readable."""
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(removed_at=now, is_active=False)


# --- publishing ---------------------------------------------------------------------------------------------


def endpoints_active() -> list[WebhookEndpoint]:
    """The endpoints events are delivered to (read once by a caller that publishes many kinds in a batch)."""
    return list(WebhookEndpoint.objects.filter(is_active=True, removed_at__isnull=True))


def events_publish(
    *,
    kind: str,
    items: Iterable[tuple[str, dict]] | Callable[[], Iterable[tuple[str, dict]]],
    endpoints: list[WebhookEndpoint] | None = None,
) -> int:
    """Publish events of one kind: `items` are (key, payload), or a function returning them, called only when
    an endpoint listens. `endpoints`: `endpoints_active()` when the caller has read them already. Returns the
    number of deliveries queued.

    Without an active endpoint that wants this kind nothing is stored at all, so the billing run of an agency
    without webhooks pays one query per batch for this."""
    if kind not in EventKind.values:
        raise ValueError(f"unknown event kind {kind!r}")
    endpoints = [e for e in (endpoints_active() if endpoints is None else endpoints) if e.wants(kind)]
    if not endpoints:
        return 0
    items = list(items() if callable(items) else items)
    if not items:
        return 0
    OutboundEvent.objects.bulk_create(
        [OutboundEvent(kind=kind, key=key, payload=payload) for key, payload in items], ignore_conflicts=True
    )
    events = list(OutboundEvent.objects.filter(key__in=[key for key, _ in items]))
    now = timezone.now()
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(endpoint=endpoint, event=event, next_attempt_at=now)
            for event in events
            for endpoint in endpoints
        ],
        ignore_conflicts=True,
    )
    queued = list(
        WebhookDelivery.objects.filter(
            event__in=events, endpoint__in=endpoints, attempt_count=0, status=DeliveryStatus.PENDING
        ).values_list("pk", flat=True)
    )
    schema_name = connection.schema_name  # type: ignore[attr-defined]
    transaction.on_commit(lambda: _send_later(schema_name, queued))
    return len(queued)


def event_publish(*, kind: str, key: str, payload: dict) -> int:
    return events_publish(kind=kind, items=[(key, payload)])


def _send_later(schema_name: str, delivery_pks: list[int], countdown: int = 0, manual: bool = False) -> None:
    # Imported here: the services/tasks idiom (the task calls back into this module).
    from integrations.tasks import webhook_deliver

    for pk in delivery_pks:
        webhook_deliver.apply_async(
            kwargs={"schema_name": schema_name, "delivery_pk": pk, "manual": manual}, countdown=countdown
        )


# --- delivering ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptResult:
    status: str
    retry_in: int | None  # seconds until the next automatic attempt, None when there is none


def event_body(event: OutboundEvent) -> bytes:
    document = {
        "id": str(event.public_id),
        "type": event.kind,
        "created": event.created_at.isoformat(),
        "data": event.payload,
    }
    return json.dumps(document, cls=DjangoJSONEncoder, separators=(",", ":"), sort_keys=True).encode()


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str, str]:
    """(status code or None, error, response excerpt). Redirects are not followed. The connection goes to the
    address checked by `_address_to_connect`; TLS still verifies the certificate against the host name."""
    import certifi
    import urllib3

    if errors := _url_errors(url):
        return None, errors[0], ""
    address, error = _address_to_connect(url)
    if address is None:
        return None, error, ""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    timeout = urllib3.Timeout(total=settings.WEBHOOK_TIMEOUT_SECONDS)
    pool: urllib3.HTTPConnectionPool
    if parts.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address,
            parts.port or 443,
            timeout=timeout,
            retries=False,
            server_hostname=parts.hostname,
            assert_hostname=parts.hostname,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, parts.port or 80, timeout=timeout, retries=False)
    try:
        response = pool.urlopen(
            "POST", target, body=body, headers={**headers, "Host": parts.netloc}, redirect=False, retries=False
        )
    except urllib3.exceptions.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500], ""
    finally:
        pool.close()
    excerpt = response.data[:500].decode("utf-8", "replace").replace("\x00", "")
    return response.status, "", excerpt


def delivery_attempt(*, delivery_pk: int, now: datetime, manual: bool = False) -> AttemptResult:
    """Send one delivery once and record the attempt. A 2xx answer is success; anything else is retried on
    RETRY_DELAYS until MAX_ATTEMPTS automatic attempts have failed. Safe to run twice: a delivery that already
    succeeded is not sent again, and the row is locked while sending so two workers never both send it."""
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint", "event")
            .filter(pk=delivery_pk)
            .first()
        )
        if delivery is None:
            return AttemptResult("busy", None)
        if not manual:
            if delivery.status in (DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED):
                return AttemptResult(delivery.status, None)
            if delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
                return AttemptResult("not due", None)  # a duplicate or early task: the scheduled one will come
        endpoint = delivery.endpoint
        number = delivery.attempt_count + 1
        if not endpoint.is_active or endpoint.removed_at is not None:
            status_code, error, excerpt, elapsed = None, "The endpoint is disabled.", "", 0
        else:
            body = event_body(delivery.event)
            timestamp = int(now.timestamp())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "agencybilling-webhooks/1",
                "Agencybilling-Event-Id": str(delivery.event.public_id),
                "Agencybilling-Event-Type": delivery.event.kind,
                "Agencybilling-Delivery-Id": str(delivery.public_id),
                "Agencybilling-Delivery-Attempt": str(number),
                SIGNATURE_HEADER: signature_header(
                    secrets=endpoint.signing_secrets(now), timestamp=timestamp, body=body
                ),
            }
            started = time.monotonic()
            status_code, error, excerpt = _post(endpoint.url, body, headers)
            elapsed = int((time.monotonic() - started) * 1000)
        succeeded = status_code is not None and 200 <= status_code < 300
        if status_code is not None and not succeeded:
            error = f"HTTP {status_code}"
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=number,
            manual=manual,
            requested_at=now,
            duration_ms=elapsed,
            status_code=status_code,
            error=error,
            response_excerpt=excerpt,
        )
        delivery.attempt_count = number
        delivery.last_status_code, delivery.last_error = status_code, error
        retry_in = None
        if succeeded:
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = DeliveryStatus.SUCCEEDED, now, None
        elif manual:
            # A manual redelivery is one extra attempt: it neither restarts nor cancels the automatic schedule.
            if delivery.status != DeliveryStatus.RETRYING:
                delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
        else:
            failures = delivery.attempts.filter(manual=False).count()
            if failures >= MAX_ATTEMPTS:
                delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
            else:
                retry_in = RETRY_DELAYS[failures - 1]
                delivery.status = DeliveryStatus.RETRYING
                delivery.next_attempt_at = now + timedelta(seconds=retry_in)
        delivery.save(
            update_fields=[
                "status",
                "attempt_count",
                "last_status_code",
                "last_error",
                "delivered_at",
                "next_attempt_at",
                "updated_at",
            ]
        )
    return AttemptResult(delivery.status, retry_in)


def delivery_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again now, whatever its status (the agency's receiver lost it, or was down)."""
    if not delivery.endpoint.is_active or delivery.endpoint.removed_at is not None:
        raise ApplicationError(
            "The endpoint is disabled; enable it before redelivering.",
            code="endpoint_disabled",
            fields={"endpoint": ["Disabled."]},
        )
    schema_name = connection.schema_name  # type: ignore[attr-defined]
    transaction.on_commit(lambda: _send_later(schema_name, [delivery.pk], manual=True))
    return delivery
