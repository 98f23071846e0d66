"""Overdue accounts (DUN-1) and their Account Overdue notices (NOT-4, NOT-5).

An account is overdue when what is still open of charges dated more than the grace period ago reaches the
agency's threshold. The flag (`Client.overdue_since`) is set by the day's evaluation and cleared as soon as
that is no longer true — by the evaluation, or at once by a payment or a credit (`clients_overdue_refresh`). The first
Account Overdue notice goes the day the flag is set; follow-ups go the configured number of days after
the previous one while the flag still holds — a follow-up whose day was missed goes with the next evaluation, only
the latest one due (`overdue_notice_due`). The outbox key is (client, kind, overdue since, number), so
a rerun sends nothing twice and a new overdue episode starts a new series.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from django.db import transaction

from billing.notices import client_context, client_notice
from billing.selectors import billing_settings, overdue_due_before, overdue_reached, past_due_by_client
from clients.models import Client
from core.calendar import follow_up_dates
from core.money import format_minor
from notifications.catalog import NoticeKind
from notifications.selectors import notice_keys_queued
from tenants.models import Agency


@dataclass
class OverdueSummary:
    flagged: int = 0
    cleared: int = 0
    still_overdue: int = 0
    notices: int = 0


def overdue_evaluate(*, agency: Agency, today: date) -> OverdueSummary:
    """Flag, clear and remind overdue accounts of the current agency schema for `today`."""
    settings = billing_settings()
    past_due = past_due_by_client(due_before=overdue_due_before(settings, today))
    overdue_ids = {client_id for client_id, amount in past_due.items() if overdue_reached(amount, settings)}
    summary = OverdueSummary()
    with transaction.atomic():
        summary.cleared = (
            Client.objects.filter(overdue_since__isnull=False).exclude(id__in=overdue_ids).update(overdue_since=None)
        )
        summary.flagged = Client.objects.filter(id__in=overdue_ids, overdue_since__isnull=True).update(
            overdue_since=today
        )
        reminded = list(Client.objects.filter(id__in=overdue_ids, agency_invoiced=False).order_by("id"))
        queued = notice_keys_queued(
            kind=NoticeKind.ACCOUNT_OVERDUE, accounts=[str(client.public_id) for client in reminded]
        )
        for client in reminded:
            assert client.overdue_since is not None
            if client.overdue_since != today:
                summary.still_overdue += 1
            number = overdue_notice_due(
                follow_up_dates(
                    client.overdue_since, settings.overdue_second_after_days, settings.overdue_third_after_days
                ),
                today,
            )
            if number is None or (str(client.public_id), client.overdue_since.isoformat(), number) in queued:
                continue
            if client_notice(
                client=client,
                kind=NoticeKind.ACCOUNT_OVERDUE,
                period=client.overdue_since.isoformat(),
                number=number,
                today=today,
                context={
                    **client_context(agency, client),
                    "past_due": format_minor(past_due[client.pk].amount_minor, agency.currency),
                    "billing_date": past_due[client.pk].oldest.isoformat(),
                    "notice_number": str(number),
                },
            ):
                summary.notices += 1
    return summary


def overdue_notice_due(dates: list[date], today: date) -> int | None:
    """The Account Overdue notice an account still overdue is owed today: the latest of its series (NOT-5) whose day
    has come, also when that day's evaluation was missed (the step given up, the day not run); an earlier one that
    was missed is stale once a later one is due, and is never sent. The outbox key makes it once (NOT-7): on the
    following days the same number is found queued already."""
    due = [number for number, day in enumerate(dates, start=1) if day <= today]
    return due[-1] if due else None


def clients_overdue_refresh(*, client_ids: Iterable[int], today: date) -> set[int]:
    """Clear the overdue flag of those accounts that no longer meet DUN-1 ("paying clears the flag"), in the caller's
    transaction: called wherever what is past due goes down — a payment recorded (`billing.attempts.payments_record`),
    credit kept on the account and allocated to open charges (`billing.corrections.credit_keep_on_account`: a credit
    note, a failed refund), an account switched to Agency Invoiced (`billing.support.agency_invoiced_set`). Returns
    the ids cleared. Setting the flag is left to the day's evaluation: what is past due only grows as days pass."""
    flagged = list(
        Client.objects.filter(pk__in=list(client_ids), overdue_since__isnull=False).values_list("pk", flat=True)
    )
    if not flagged:
        return set()
    settings = billing_settings()
    past_due = past_due_by_client(due_before=overdue_due_before(settings, today), client_ids=flagged)
    cleared = {pk for pk in flagged if not overdue_reached(past_due.get(pk), settings)}
    if cleared:
        Client.objects.filter(pk__in=cleared).update(overdue_since=None)
    return cleared
