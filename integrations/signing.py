"""Signatures on outbound webhooks, in the style of Stripe's: `t=<unix time>,v1=<hex HMAC-SHA256>` over
"<t>.<body>" with the endpoint's secret. Receivers check the HMAC and that `t` is recent (replay protection)."""

from __future__ import annotations

import hashlib
import hmac

from core.parsing import whole_number

SIGNATURE_HEADER = "Agencybilling-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


def signature_compute(*, secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(*, secrets: list[str], timestamp: int, body: bytes) -> str:
    """One v1 per secret (two while a rolled secret's predecessor lasts), as Stripe does during a roll."""
    return ",".join(
        [
            f"t={timestamp}",
            *(f"v1={signature_compute(secret=secret, timestamp=timestamp, body=body)}" for secret in secrets),
        ]
    )


def signature_verify(
    *, header: str, secret: str, body: bytes, now: int, tolerance: int = DEFAULT_TOLERANCE_SECONDS
) -> bool:
    """True when one of the header's v1 signatures matches and its timestamp is within `tolerance` of `now`."""
    timestamp, signatures = None, []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and (parsed := whole_number(value, max_digits=12)) is not None:
            timestamp = parsed
        elif name == "v1":
            signatures.append(value)
    if timestamp is None or not signatures or abs(now - timestamp) > tolerance:
        return False
    expected = signature_compute(secret=secret, timestamp=timestamp, body=body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)
