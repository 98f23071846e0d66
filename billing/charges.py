"""The charge state machine (SPEC §5): the one place that moves a charge from one status to another.

A move is a conditional UPDATE from the status the charge was read in (a concurrent move makes it fail,
nothing is written), allowed only along `billing.statuses.ALLOWED_TRANSITIONS`, and it writes what goes
with it in the same transaction: the history row, the notices (NOT-4, NOT-6) and the outbound-webhook events.
"""

from __future__ import annotations

import functools
from datetime import date

from django.db import connection, models, transaction

from billing.base_models import AbstractAttempt, AbstractCharge
from billing.models import Charge, ChargeEvent
from billing.notices import agency_recipients, charge_notice_drafts, platform_notices_enqueue
from billing.outbound import charge_events
from billing.platform.models import AgencyChargeEvent
from billing.statuses import ALLOWED_TRANSITIONS, COLLECTIBLE, LATEST_ATTEMPT_UNKNOWN, ChargeStatus
from core.errors import ApplicationError
from integrations.services import endpoints_active, events_publish
from notifications.services import notices_enqueue
from tenants.selectors import current_agency


class IllegalTransition(ApplicationError):
    code = "illegal_transition"
    status = 409


def charge_history_model(charge: AbstractCharge):
    return ChargeEvent if isinstance(charge, Charge) else AgencyChargeEvent


class TransitionEffects:
    """What charge moves write besides the charge row: the history row, the notices (NOT-4, NOT-6) and the
    outbound-webhook events. Gathered while a transaction moves one or many charges, written by `flush` in
    one INSERT per table (and one send task for all the notices) before that transaction commits, so a move
    and its history are still committed together or not at all. Every "only once" rule stays the database's:
    the notices' unique key (NOT-7) and the events' unique key decide what a rerun adds.

    The agency, its notice recipients and its webhook endpoints are read once per batch, not once per move."""

    def __init__(self) -> None:
        self.history: list = []
        self.notices: list = []
        self.events: dict[str, list[tuple[str, dict]]] = {}
        self.platform_moves: list = []

    @functools.cached_property
    def agency(self):
        return current_agency()

    @functools.cached_property
    def recipients(self) -> list[str]:
        return agency_recipients(self.agency)

    @functools.cached_property
    def endpoints(self) -> list:
        return endpoints_active()

    def moved(
        self,
        charge: AbstractCharge,
        *,
        from_status: str,
        to_status: str,
        reason: str,
        actor: str,
        today: date,
        attempt=LATEST_ATTEMPT_UNKNOWN,
    ) -> None:
        self.history.append(
            charge_history_model(charge)(
                charge=charge,
                from_status=from_status,
                to_status=to_status,
                reason=reason,
                actor=actor,
                business_date=today,
            )
        )
        if not isinstance(charge, Charge):
            # The agency's own invoice (PAY-3): its notices go to the agency, from the agency's outbox.
            self.platform_moves.append((charge, from_status, to_status, today, attempt))
            return
        self.notices += charge_notice_drafts(
            charge,
            from_status=from_status,
            to_status=to_status,
            today=today,
            attempt=attempt,
            agency=self.agency,
            recipients=lambda: self.recipients,
        )
        events = charge_events(charge, from_status=from_status, to_status=to_status, attempt=attempt)
        if events and self.endpoints:
            # Payloads are built now: a later move of the same charge in this batch must not change them.
            for kind, items in events:
                if any(endpoint.wants(kind) for endpoint in self.endpoints):
                    self.events.setdefault(kind, []).extend(items())

    def flush(self) -> None:
        by_model: dict[type[models.Model], list] = {}
        for row in self.history:
            by_model.setdefault(type(row), []).append(row)
        for model, rows in by_model.items():
            model._default_manager.bulk_create(rows)
        notices_enqueue(drafts=self.notices)
        for kind, items in self.events.items():
            events_publish(kind=kind, items=items, endpoints=self.endpoints)
        platform_notices_enqueue(self.platform_moves)
        self.history, self.notices, self.events, self.platform_moves = [], [], {}, []


def _check_transition(from_status: str, to_status: str) -> None:
    if to_status not in ALLOWED_TRANSITIONS[from_status]:
        raise IllegalTransition(
            f"A charge cannot go from {ChargeStatus(from_status).label} to {ChargeStatus(to_status).label}."
        )


def charge_transition(
    charge: AbstractCharge,
    to_status: str,
    *,
    reason: str,
    today: date,
    actor: str = "",
    attempt=LATEST_ATTEMPT_UNKNOWN,
    moves: TransitionEffects | None = None,
    **fields,
) -> AbstractCharge:
    """Move a locked charge to `to_status`, writing its history row in the same transaction: at once, or with
    the batch's other moves when `moves` is given (the caller flushes it before its transaction commits)."""
    from_status = charge.status
    _check_transition(from_status, to_status)
    with transaction.atomic(savepoint=False):
        updated = (
            type(charge)._default_manager.filter(pk=charge.pk, status=from_status).update(status=to_status, **fields)
        )
        if updated != 1:
            raise IllegalTransition("The charge changed while it was being updated; nothing was done.")
        charge.status = to_status
        for name, value in fields.items():
            setattr(charge, name, value)
        recorder = moves or TransitionEffects()
        recorder.moved(
            charge,
            from_status=from_status,
            to_status=to_status,
            reason=reason,
            actor=actor,
            today=today,
            attempt=attempt,
        )
        if moves is None:
            recorder.flush()
    return charge


def charges_paid(
    paid: list[tuple[AbstractCharge, AbstractAttempt]], *, today: date, moves: TransitionEffects, actor: str = ""
) -> None:
    """Move a batch of locked charges of one kind to Paid in one statement, each only from the status it was
    locked in (the same conditional update as `charge_transition`, set-based); their moves go to `moves`."""
    if not paid:
        return
    for charge, _ in paid:
        _check_transition(charge.status, ChargeStatus.PAID)
    charge_model = type(paid[0][0])
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {charge_model._meta.db_table} AS c SET status = %s, paid_on = %s, paid_reference = v.reference, "
            "next_retry_on = NULL FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS v(id, from_status, reference) "
            "WHERE c.id = v.id AND c.status = v.from_status",
            [
                ChargeStatus.PAID,
                today,
                [c.pk for c, _ in paid],
                [c.status for c, _ in paid],
                [a.gateway_reference for _, a in paid],
            ],
        )
        if cursor.rowcount != len(paid):
            raise IllegalTransition("A charge changed while it was being updated; nothing was done.")
    for charge, attempt in paid:
        from_status = charge.status
        charge.status, charge.paid_on, charge.paid_reference = ChargeStatus.PAID, today, attempt.gateway_reference
        charge.next_retry_on = None
        moves.moved(
            charge,
            from_status=from_status,
            to_status=ChargeStatus.PAID,
            actor=actor,
            today=today,
            reason=f"Payment received (attempt {attempt.number})",
            attempt=attempt,
        )


def charge_locked(charge: AbstractCharge) -> AbstractCharge:
    # Both concrete charges have an invoice; the abstract base the type checker sees does not.
    return type(charge)._default_manager.select_for_update().select_related("invoice").get(pk=charge.pk)  # type: ignore[misc]


def charge_mark_agency_invoiced(charge: AbstractCharge, *, today: date, actor: str, reason: str) -> None:
    with transaction.atomic():
        locked = charge_locked(charge)
        if locked.status in COLLECTIBLE:
            charge_transition(
                locked, ChargeStatus.AGENCY_INVOICED, reason=reason, today=today, actor=actor, next_retry_on=None
            )
