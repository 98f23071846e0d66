"""Structured logs: every record carries the agency (schema), the request id and the Celery task id it belongs to;
with LOG_FORMAT=json each line is one JSON object (python-json-logger), otherwise plain text (development)."""

from __future__ import annotations

import contextvars
import logging
import re
import uuid

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ContextFilter(logging.Filter):
    """Adds `agency`, `request_id` and `task_id` to every record (empty when there is none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "agency"):
            record.agency = _current_schema()
        record.request_id = getattr(record, "request_id", "") or REQUEST_ID.get()
        if not getattr(record, "task_id", ""):
            record.task_id = _current_task_id()
        return True


def _current_schema() -> str:
    try:
        from django.db import connection

        schema = getattr(connection, "schema_name", "") or ""
    except Exception:  # noqa: BLE001 - logging must never fail because the database layer is not ready
        return ""
    return "" if schema == "public" else schema


def _current_task_id() -> str:
    try:
        from celery import current_task

        return (current_task and current_task.request and current_task.request.id) or ""
    except Exception:  # noqa: BLE001
        return ""


def json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(agency)s %(request_id)s %(task_id)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    )


class RequestIdMiddleware:
    """A request id for every request: the caller's `X-Request-ID` when it is a plain token (a load balancer's),
    a new one otherwise; in the logs of the request and echoed in the response's `X-Request-ID`."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        given = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            REQUEST_ID.reset(token)
        response["X-Request-ID"] = request_id
        return response
