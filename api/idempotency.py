"""`Idempotency-Key` on every POST: the same key with the same body gets the stored response and does nothing
again; the same key with another body is a 409. Only successful (2xx) responses are stored: a refused request
stores nothing at all, so the client may correct it and retry with the same key.

Two modes. Atomic (the default): the key is claimed, the operation runs and its response is stored in one
transaction, so a concurrent duplicate waits on the key's unique constraint and then replays. Committed-claim,
for operations that must commit their own rows before calling a payment provider (charge attempts): the key is
claimed and committed first; a duplicate arriving meanwhile is told the first request is still running.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable

from django.db import IntegrityError, transaction
from rest_framework import serializers
from rest_framework.response import Response

from api.exceptions import IdempotencyConflict
from api.models import IdempotencyRecord

HEADER = "Idempotency-Key"
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
STORED_HEADERS = ("Location", "ETag")


class _Discard(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def request_fingerprint(request) -> str:
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    query = "&".join(sorted(f"{k}={v}" for k, values in request.query_params.lists() for v in values))
    return hashlib.sha256(f"{request.method}\n{request.path}?{query}\n{body}".encode()).hexdigest()


def _claim(request, key: str, fingerprint: str) -> tuple[bool, IdempotencyRecord]:
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(
                user=request.user, key=key, fingerprint=fingerprint, method=request.method, path=request.path[:2000]
            )
        return True, record
    except IntegrityError:
        return False, IdempotencyRecord.objects.get(user=request.user, key=key)


def _replay(record: IdempotencyRecord, fingerprint: str) -> Response:
    if record.fingerprint != fingerprint:
        raise IdempotencyConflict(
            "This Idempotency-Key was already used with a different request. Use a new key for a new request."
        )
    if record.status_code is None:
        raise IdempotencyConflict(
            "A request with this Idempotency-Key is still being processed; retry shortly.",
            code="idempotency_key_in_use",
        )
    return Response(record.body, status=record.status_code, headers={**record.headers, "Idempotent-Replayed": "true"})


def _store(record: IdempotencyRecord, response: Response, redact: tuple[str, ...]) -> None:
    record.status_code = response.status_code
    record.body = response.data
    if redact and isinstance(response.data, dict):
        # Secrets are shown once and never stored: a replay says null where the secret was.
        record.body = {key: (None if key in redact else value) for key, value in response.data.items()}
    record.headers = {name: response[name] for name in STORED_HEADERS if response.has_header(name)}
    record.save(update_fields=["status_code", "body", "headers"])


def idempotent(func: Callable, *, atomic: bool = True, redact: tuple[str, ...] = ()) -> Callable:
    @functools.wraps(func)
    def wrapper(view, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return func(view, request, *args, **kwargs)
        if not KEY_PATTERN.match(key):
            raise serializers.ValidationError({HEADER: ["Use 1–255 printable ASCII characters, no spaces."]})
        fingerprint = request_fingerprint(request)
        if atomic:
            try:
                with transaction.atomic():
                    created, record = _claim(request, key, fingerprint)
                    if not created:
                        return _replay(record, fingerprint)
                    response = func(view, request, *args, **kwargs)
                    if not 200 <= response.status_code < 300:
                        raise _Discard(response)
                    _store(record, response, redact)
                    return response
            except _Discard as discarded:
                return discarded.response
        created, record = _claim(request, key, fingerprint)
        if not created:
            return _replay(record, fingerprint)
        try:
            response = func(view, request, *args, **kwargs)
        except BaseException:
            IdempotencyRecord.objects.filter(pk=record.pk).delete()
            raise
        if 200 <= response.status_code < 300:
            _store(record, response, redact)
        else:
            IdempotencyRecord.objects.filter(pk=record.pk).delete()
        return response

    return wrapper
