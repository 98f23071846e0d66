"""The invoice page: an invoice's lines by billing category, its charges, and each charge's timeline — attempts
with their outcome and decline reason in words, notices sent, status history, payouts and, as they come, credit
notes. Reached from the invoice number on the Billing Overview and the client's page (INV-2's click on the client
name still downloads the PDF)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import NoReverseMatch, reverse

from accounts.permissions import has_capability
from billing.models import BillingSettings, Charge, Invoice, RequestKind, SupportRequest
from billing.overview import invoice_status, lines_by_category
from billing.statuses import AttemptOutcome, ChargeStatus
from core.money import format_minor
from notifications.catalog import NoticeKind
from notifications.models import Notice
from web.access import shows_amounts, staff_view, visible_invoices
from web.agency.common import SEE_BILLING, C
from web.wording import decline_reason


@dataclass(frozen=True)
class TimelineItem:
    """One dated entry of a charge's timeline. `tone`: ok, bad, info, payout or plain (the dot's colour)."""

    day: date
    at: datetime | None
    tone: str
    title: str
    detail: str = ""
    link: str = ""
    link_label: str = ""


TimelineSource = Callable[[Invoice, Charge, bool], list[TimelineItem]]


def _money(amount_minor: int, currency: str) -> str:
    return f"{format_minor(amount_minor, currency)} {currency}"


def _attempt_items(invoice: Invoice, charge: Charge, amounts: bool) -> list[TimelineItem]:
    items = []
    for attempt in charge.attempts.all():
        kind = "Automatic" if attempt.kind == "AUTOMATIC" else "Manual"
        amount = f" of {_money(attempt.amount_minor, charge.currency)}" if amounts else ""
        if attempt.outcome == AttemptOutcome.SUCCEEDED:
            tone, title, detail = "ok", f"{kind} attempt {attempt.number}{amount} succeeded", ""
        elif attempt.outcome in (AttemptOutcome.DECLINED, AttemptOutcome.SETTLEMENT_FAILED):
            what = "failed at settlement" if attempt.outcome == AttemptOutcome.SETTLEMENT_FAILED else "was declined"
            tone, title = "bad", f"{kind} attempt {attempt.number}{amount} {what}"
            detail = decline_reason(attempt.decline_code)
        elif attempt.outcome == AttemptOutcome.PENDING:
            tone, title, detail = "info", f"{kind} attempt {attempt.number}{amount}: bank debit awaiting settlement", ""
        else:
            tone, title = "plain", f"{kind} attempt {attempt.number}{amount}: outcome being confirmed"
            detail = "The processor's answer has not arrived yet; it is looked up before any retry."
        if attempt.gateway_reference:
            detail = f"{detail} Reference {attempt.gateway_reference}.".strip()
        items.append(TimelineItem(attempt.attempted_on, attempt.created_at, tone, title, detail))
    return items


_CODE_IN_REASON = re.compile(r" \(([a-z_]+)\)$")


def _status_items(invoice: Invoice, charge: Charge, amounts: bool) -> list[TimelineItem]:
    labels = dict(ChargeStatus.choices)
    items = []
    for event in charge.events.all():
        to = labels.get(event.to_status, event.to_status)
        who = f" by {event.actor}" if event.actor and event.actor != "system" else ""
        if event.from_status == event.to_status and event.reason:
            # Not a move: something that happened to the charge (a credit reducing it, a dispute), in its words.
            items.append(TimelineItem(event.business_date, event.created_at, "info", event.reason, who.strip()))
            continue
        title = f"{labels.get(event.from_status, event.from_status)} → {to}" if event.from_status else f"Now {to}"
        tone = {"PAID": "ok", "PAID_OUT": "payout", "RETRYING": "bad", "UNCOLLECTABLE": "bad"}.get(event.to_status)
        reason = _CODE_IN_REASON.sub(lambda m: f": {decline_reason(m.group(1))}", event.reason)
        items.append(TimelineItem(event.business_date, event.created_at, tone or "info", title, f"{reason}{who}"))
    return items


def _payouts_url() -> str:
    try:
        return reverse("payouts")
    except NoReverseMatch:  # the payouts page is not there yet
        return ""


def _payout_items(invoice: Invoice, charge: Charge, amounts: bool) -> list[TimelineItem]:
    if not charge.paid_out_on:
        return []
    detail = f"Payout {charge.payout_reference}." if charge.payout_reference else ""
    url = _payouts_url()
    return [
        TimelineItem(
            charge.paid_out_on,
            None,
            "payout",
            "Paid out to the agency's bank account",
            detail,
            url,
            "See payouts" if url else "",
        )
    ]


def _notice_items(invoice: Invoice, charge: Charge, amounts: bool) -> list[TimelineItem]:
    if not amounts:  # notices carry amounts: for the roles that see them (as the client page's notice log)
        return []
    client_id = str(invoice.client.public_id)
    period = f"{invoice.number}/{charge.installment}"
    notices = Notice.objects.filter(
        Q(account=client_id, period=period)
        | Q(period=f"{client_id}/{period}")
        | Q(account=client_id, period=charge.due_on.isoformat())
    ).order_by("business_date", "id")
    labels = dict(NoticeKind.choices)
    items = []
    for notice in notices:
        sent = notice.get_status_display().lower()  # type: ignore[attr-defined]
        number = f" ({notice.number})" if notice.number > 1 and notice.kind != NoticeKind.PAYMENT_FAILED else ""
        items.append(
            TimelineItem(
                notice.business_date,
                notice.created_at,
                "plain",
                f"{labels.get(notice.kind, notice.kind)}{number} email to {notice.to_email}",
                f"“{notice.subject}” — {sent}.",
            )
        )
    return items


# Where a charge's timeline comes from. Credit notes and refunds join by appending a source here: a function
# (invoice, charge, shows_amounts) -> [TimelineItem]; the page sorts everything by date.
TIMELINE_SOURCES: list[TimelineSource] = [_status_items, _attempt_items, _notice_items, _payout_items]
# What the invoice page shows under "Credit notes": (invoice) -> list of dicts {number, issued_on, amount_minor,
# reason, url}. Empty until corrections land.
CREDIT_NOTE_SOURCES: list[Callable[[Invoice], list[dict]]] = []


def charge_timeline(invoice: Invoice, charge: Charge, amounts: bool) -> list[TimelineItem]:
    items = [TimelineItem(invoice.issued_on, None, "info", f"Invoice {invoice.number} built", "")]
    for source in TIMELINE_SOURCES:
        items.extend(source(invoice, charge, amounts))
    # Within a day: the invoice first (no time), then what happened in the order it was recorded.
    return sorted(items, key=lambda item: (item.day, item.at is not None, item.at or datetime.min.replace(tzinfo=UTC)))


# The credit-note form of the invoice page (COR-1): (invoice, bound data or None) -> form. Set by
# web.agency.corrections, which owns it.
CREDIT_NOTE_FORM: list[Callable] = []


@staff_view(SEE_BILLING)
def invoice_detail(request: HttpRequest, public_id, *, credit_form=None, status: int = 200) -> HttpResponse:
    user = request.user
    invoice = get_object_or_404(visible_invoices(user).select_related("client"), public_id=public_id)  # type: ignore[arg-type]
    amounts = shows_amounts(user)  # type: ignore[arg-type]
    charges = list(invoice.charges.prefetch_related("attempts", "events", "disputes").order_by("installment"))
    for charge in charges:  # COR-2: the latest dispute's state, shown beside the status
        disputes = sorted(charge.disputes.all(), key=lambda d: (d.opened_on, d.pk))
        charge.dispute_status = disputes[-1].status if disputes else None  # type: ignore[attr-defined]
    can_correct = amounts and has_capability(user, C.EDIT_CLIENT_CONFIG)  # type: ignore[arg-type]
    if can_correct and credit_form is None and CREDIT_NOTE_FORM:
        credit_form = CREDIT_NOTE_FORM[0](invoice)
    order = BillingSettings.objects.values_list("category_order", flat=True).first()
    groups, taxes = lines_by_category(invoice.lines.all(), order)
    retry_requested = set(
        SupportRequest.objects.filter(
            client=invoice.client, status="OPEN", kind=RequestKind.RETRY, charge__in=charges
        ).values_list("charge_id", flat=True)
    )
    credit_notes = [note for source in CREDIT_NOTE_SOURCES for note in source(invoice)]
    return render(
        request,
        "agency/invoice.html",
        {
            "invoice": invoice,
            "client": invoice.client,
            "status": invoice_status(c.status for c in charges),
            "amounts": amounts,
            "currency": invoice.currency,
            "groups": groups,
            "taxes": taxes,
            "charges": [(charge, charge_timeline(invoice, charge, amounts)) for charge in charges],
            "retryable": (ChargeStatus.RETRYING, ChargeStatus.UNCOLLECTABLE),
            "retry_requested": retry_requested,
            "can_request": has_capability(user, C.REQUEST_SUPPORT),  # type: ignore[arg-type]
            "credit_notes": credit_notes,
            "credit_form": credit_form if can_correct else None,
            "amount_due": invoice.total_minor - invoice.credit_applied_minor,
            "month": invoice.period_start.replace(day=1),
        },
        status=status,
    )
