"""Recording product usage (PLAN-3), idempotent per key."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.utils import timezone as dj_timezone

from billing.drafting import usage_lines
from billing.models import UsageRecord
from billing.selectors import plan_prices
from clients.models import Client
from core.calendar import cycle_closed_by, local_date, next_billing_date
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


# A usage record may be stamped this far ahead of our clock (the sender's clock may run a little fast).
CLOCK_SKEW = timedelta(minutes=5)


def usage_now(agency: Agency, now: datetime) -> datetime:
    """The instant usage is checked against: now, or — when the billing clock has been run ahead of the wall
    clock (a simulation, the demo) — the end of its last day."""
    if agency.clock_date is None:
        return now
    end_of_clock_day = datetime.combine(agency.clock_date + timedelta(days=1), time.min, ZoneInfo(agency.time_zone))
    return max(now, end_of_clock_day)


def _when_errors(agency: Agency, item: UsageInput, now: datetime, index: int | None) -> dict[str, list[str]]:
    """Usage that no invoice could ever carry is refused: dated in the future (beyond a small clock skew), before
    the client's activation or on or after its deactivation, or — the agency's own — before the agency's first
    cycle (docs/decisions.md, "Usage that cannot be billed")."""
    field = f"records[{index}].occurred_at" if index is not None else "occurred_at"
    day = local_date(item.occurred_at, agency.time_zone)
    if item.occurred_at > now + CLOCK_SKEW:
        return {field: [f"{item.occurred_at.isoformat()} is in the future: record usage once it has happened."]}
    client = item.client
    if client is not None and day < client.activated_on:
        return {field: [f"{day} is before {client.name} was activated ({client.activated_on}): it cannot be billed."]}
    if client is not None and client.deactivated_on is not None and day >= client.deactivated_on:
        return {
            field: [
                f"{day} is on or after {client.name} was deactivated ({client.deactivated_on}): no invoice carries it."
            ]
        }
    if client is None:
        joined = local_date(agency.created_at, agency.time_zone) if agency.created_at else day
        first_cycle = cycle_closed_by(next_billing_date(joined, agency.billing_day)).start
        if day < first_cycle:
            return {field: [f"{day} is before the agency's first billing cycle ({first_cycle}): it cannot be billed."]}
    return {}


def usage_record_bulk(*, agency: Agency, items: list[UsageInput], now: datetime) -> tuple[int, int]:
    """Store usage records; returns (created, already present). A key already used with another payload
    refuses the whole batch with 409 and nothing is stored. `now` is the instant of the request (`usage_now`):
    usage no invoice could carry is refused (PLAN-3). Usage of a cycle already invoiced is accepted and carried
    by the account's next invoice, under a line naming its cycle."""
    known = set(agency.plan.products.values_list("code", flat=True)) if agency.plan else set()
    errors: dict[str, list[str]] = {}
    single = len(items) == 1
    for index, item in enumerate(items):
        item_errors = _validate(item, known, None if single else index)
        errors.update(item_errors or _when_errors(agency, item, now, None if single else index))
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


def usage_record(*, agency: Agency, item: UsageInput, now: datetime) -> bool:
    """Store one usage record; True when new, False when the same record was already stored."""
    created, _ = usage_record_bulk(agency=agency, items=[item], now=now)
    return created == 1


def usage_mark_billed(
    *,
    client_invoice_of: dict[int, int] | None = None,
    agency_invoice_id: int | None = None,
    record_ids: list[int] | None = None,
) -> None:
    """Mark usage records as carried: `client_invoice_of` {record id: client invoice id}, or `record_ids` by the
    agency invoice `agency_invoice_id`. Exactly the records that were billed, by id."""
    with connection.cursor() as cursor:
        if client_invoice_of:
            cursor.execute(
                f"UPDATE {UsageRecord._meta.db_table} AS u SET client_invoice_id = v.invoice_id "
                "FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, invoice_id) WHERE u.id = v.id",
                [list(client_invoice_of), list(client_invoice_of.values())],
            )
        if record_ids and agency_invoice_id is not None:
            cursor.execute(
                f"UPDATE {UsageRecord._meta.db_table} SET agency_invoice_id = %s WHERE id = ANY(%s)",
                [agency_invoice_id, record_ids],
            )
