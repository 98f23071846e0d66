"""Recording product usage (PLAN-3), idempotent per key."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone as dj_timezone

from billing.drafting import usage_lines
from billing.models import UsageRecord
from billing.selectors import plan_prices
from clients.models import Client
from core.errors import ApplicationError, Conflict
from core.money import charge_ceiling_minor, over_ceiling_message
from tenants.models import Agency


@dataclass(frozen=True, slots=True)
class UsageInput:
    product_code: str
    quantity: int
    occurred_at: datetime
    idempotency_key: str
    client: Client | None = None


def _validate(item: UsageInput, known_codes: set[str], index: int | None) -> dict[str, list[str]]:
    prefix = f"records[{index}]." if index is not None else ""
    errors: dict[str, list[str]] = {}
    if item.product_code not in known_codes:
        errors[f"{prefix}product_code"] = [f"Unknown product {item.product_code!r} for this agency's plan."]
    if type(item.quantity) is not int or item.quantity <= 0:
        errors[f"{prefix}quantity"] = ["The quantity must be a whole number greater than zero."]
    if not isinstance(item.occurred_at, datetime) or dj_timezone.is_naive(item.occurred_at):
        errors[f"{prefix}occurred_at"] = ["Give a date and time with a time zone."]
    if not item.idempotency_key or len(item.idempotency_key) > 120:
        errors[f"{prefix}idempotency_key"] = ["An idempotency key of 1–120 characters is required."]
    return errors


def _bound_errors(agency: Agency, items: list[UsageInput], single: bool) -> dict[str, list[str]]:
    """MON-1: the usage of one request, per account and product, priced as an invoice would price it, may not come
    to more than one charge may carry (a burst of 2^53 − 1 units would otherwise be an invoice no processor takes
    and a sum past bigint). What adds up over several requests is bounded when the invoice is drafted."""
    prices = plan_prices(agency.plan)
    ceiling = charge_ceiling_minor()
    groups: dict[tuple[int | None, str], list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault((item.client.pk if item.client else None, item.product_code), []).append(index)
    errors: dict[str, list[str]] = {}
    for (_, code), indexes in groups.items():
        quantity = sum(items[i].quantity for i in indexes)
        for line in usage_lines(prices, {code: quantity}):
            if line.amount_minor > ceiling:
                field = "quantity" if single else f"records[{indexes[0]}].quantity"
                what = f"{quantity:,} units of {prices[code].name}" + (" in this request" if len(indexes) > 1 else "")
                errors[field] = [over_ceiling_message(what, line.amount_minor, agency.currency, ceiling)]
                break
    return errors


def usage_record_bulk(*, agency: Agency, items: list[UsageInput]) -> tuple[int, int]:
    """Store usage records; returns (created, already present). A key already used with another payload
    refuses the whole batch with 409 and nothing is stored."""
    known = set(agency.plan.products.values_list("code", flat=True)) if agency.plan else set()
    errors: dict[str, list[str]] = {}
    single = len(items) == 1
    for index, item in enumerate(items):
        errors.update(_validate(item, known, None if single else index))
    keys = [item.idempotency_key for item in items]
    if len(set(keys)) != len(keys):
        errors.setdefault("idempotency_key", []).append("The same idempotency key appears twice in one request.")
    if not errors:
        errors.update(_bound_errors(agency, items, single))
    if errors:
        raise ApplicationError("The usage records are not valid.", fields=errors)
    with transaction.atomic():
        inserted = _insert_new(items)
        stored = {r.idempotency_key: r for r in UsageRecord.objects.filter(idempotency_key__in=keys)}
        for item in items:
            record = stored[item.idempotency_key]
            same = (
                record.client_id == (item.client.pk if item.client else None)
                and record.product_code == item.product_code
                and record.quantity == item.quantity
                and record.occurred_at == item.occurred_at
            )
            if not same:
                raise Conflict(
                    f"Idempotency key {item.idempotency_key!r} was already used with a different usage record.",
                    code="idempotency_conflict",
                    fields={"idempotency_key": ["Already used with different data."]},
                )
    return len(inserted), len(items) - len(inserted)


def _insert_new(items: list[UsageInput]) -> set[str]:
    """INSERT … ON CONFLICT DO NOTHING RETURNING: the keys this request stored, exactly. A count taken before the
    insert (as it was) said "created" to every concurrent request carrying the same key; the database says it to one
    (a concurrent insert of the key waits for the first to commit, then stores nothing)."""
    now = dj_timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {UsageRecord._meta.db_table} "
            "(public_id, created_at, updated_at, client_id, product_code, quantity, occurred_at, idempotency_key) "
            "SELECT * FROM unnest(%s::uuid[], %s::timestamptz[], %s::timestamptz[], %s::bigint[], %s::varchar[], "
            "%s::bigint[], %s::timestamptz[], %s::varchar[]) "
            "ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key",
            [
                [uuid.uuid4() for _ in items],
                [now] * len(items),
                [now] * len(items),
                [i.client.pk if i.client else None for i in items],
                [i.product_code for i in items],
                [i.quantity for i in items],
                [i.occurred_at for i in items],
                [i.idempotency_key for i in items],
            ],
        )
        return {row[0] for row in cursor.fetchall()}


def usage_record(*, agency: Agency, item: UsageInput) -> bool:
    """Store one usage record; True when new, False when the same record was already stored."""
    created, _ = usage_record_bulk(agency=agency, items=[item])
    return created == 1
