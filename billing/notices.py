"""The notices a charge's moves send (NOT-4, NOT-6, RET-1, RET-3, COL-2, COL-4), queued in the
transaction of the move itself so a rolled-back move sends nothing and a rerun sends nothing twice."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from django_tenants.utils import tenant_context

from accounts.models import Role, User
from billing.holds import AMOUNT_TOO_LARGE, charge_over_ceiling
from billing.models import Charge
from billing.plain_words import client_decline_reason, staff_decline_reason
from billing.platform.models import AgencyPaymentMethod
from billing.statuses import LATEST_ATTEMPT_UNKNOWN, ChargeStatus
from clients.models import Client
from core.links import absolute_url
from core.money import format_minor
from notifications.catalog import NoticeKind
from notifications.services import NoticeDraft, notices_enqueue
from tenants.models import Agency
from tenants.selectors import current_agency


def agency_recipients(agency: Agency) -> list[str]:
    if agency.email:
        return [agency.email]
    return list(User.objects.filter(role=Role.ADMINISTRATOR, is_active=True).values_list("email", flat=True))


def client_context(agency: Agency, client: Client) -> dict:
    """The variables every client notice has (notifications.catalog.COMMON)."""
    return {
        "agency_name": agency.name,
        "client_name": client.name,
        "currency": agency.currency,
        "portal_url": absolute_url("/portal/", agency=agency.schema_name),
    }


def client_notice_draft(
    *, client: Client, kind: str, period: str, number: int, context: dict, today: date
) -> NoticeDraft:
    """A notice to a client, keyed by the client, kind, period and number (NOT-7)."""
    return NoticeDraft(
        account=str(client.public_id),
        kind=kind,
        period=period,
        number=number,
        to_email=client.email,
        context=context,
        business_date=today,
    )


def client_notice(*, client: Client, kind: str, period: str, number: int, context: dict, today: date) -> bool:
    """Queue one notice to a client (at most once per client, kind, period and number — NOT-7). Returns whether it
    was queued now (False: that key was queued before)."""
    draft = client_notice_draft(client=client, kind=kind, period=period, number=number, context=context, today=today)
    return bool(notices_enqueue(drafts=[draft]))


def charge_notice_drafts(
    charge: Charge,
    *,
    from_status: str,
    to_status: str,
    today: date,
    attempt=LATEST_ATTEMPT_UNKNOWN,
    agency: Agency | None = None,
    recipients: Callable[[], list[str]] | None = None,
) -> list[NoticeDraft]:
    """The notices a charge's move sends, not yet queued. `attempt`: the charge's latest attempt (or None: it has
    none) when the caller has it, else it is read; `agency` and `recipients` (the agency's addresses): when the
    caller records many moves, so they are read once."""
    if not (
        (to_status == ChargeStatus.PAID and charge.amount_minor > 0)
        or to_status in (ChargeStatus.RETRYING, ChargeStatus.UNCOLLECTABLE)
    ):
        return []
    if from_status in (ChargeStatus.PAID, ChargeStatus.PAID_OUT):
        return []  # a lost dispute reopening a paid charge: the dispute's own notice tells the agency (COR-2)
    client = charge.client
    if client.agency_invoiced:
        return []  # COL-1: no payment emails
    agency = agency or current_agency()
    if agency is None:
        return []
    if attempt is LATEST_ATTEMPT_UNKNOWN:
        attempt = charge.attempts.order_by("-number").first()
    if attempt:
        code = attempt.decline_code or "card_declined"
    else:  # no attempt was made: no payment method, or an amount above the per-charge ceiling (MON-1)
        code = AMOUNT_TOO_LARGE if charge_over_ceiling(charge.amount_minor, charge.currency) else ""
    context = {
        **client_context(agency, client),
        "amount": format_minor(charge.amount_minor, charge.currency),
        "invoice_number": charge.invoice.number,
        "paid_on": (charge.paid_on or today).isoformat(),
        "next_retry_on": charge.next_retry_on.isoformat() if charge.next_retry_on else "",
        # The client reads the reason in a cardholder's words, with a link to pay (or confirm, COL-7) at once.
        "reason": client_decline_reason(code) if code else "there is no payment method on file",
        "no_payment_method": "yes" if not code else "",
        "needs_confirmation": "yes" if code == "authentication_required" else "",
        "pay_url": absolute_url(f"/portal/charges/{charge.public_id}/pay/", agency=agency.schema_name),
        "attempt_number": str(attempt.number) if attempt else "",
    }
    # The agency's staff read the processor's reason and get a link to the invoice and its charges.
    agency_context = {
        **context,
        "reason": staff_decline_reason(code) if code else "No payment method on file.",
        "charge_url": absolute_url(f"/invoices/{charge.invoice.public_id}/", agency=agency.schema_name),
    }
    period = f"{charge.invoice.number}/{charge.installment}"
    # Keyed by attempt (NOT-7); a move made without one (no payment method, COL-4) is number 0, so the first attempt
    # made later (a manual retry, RET-4) has a notice of its own.
    number = attempt.number if attempt else 0
    drafts: list[NoticeDraft] = []

    def to_client(kind: str) -> None:
        drafts.append(
            client_notice_draft(client=client, kind=kind, period=period, number=number, context=context, today=today)
        )

    def to_agency(kind: str) -> None:
        for email in (recipients or (lambda: agency_recipients(agency)))():
            drafts.append(
                NoticeDraft(
                    account=f"agency:{email}",
                    kind=kind,
                    period=f"{client.public_id}/{period}",
                    number=number,
                    to_email=email,
                    context=agency_context,
                    business_date=today,
                )
            )

    if to_status == ChargeStatus.PAID and charge.amount_minor > 0:
        to_client(NoticeKind.PAYMENT_RECEIVED)
    elif to_status == ChargeStatus.RETRYING:
        to_client(NoticeKind.PAYMENT_FAILED)
        to_agency(NoticeKind.AGENCY_CHARGE_FAILED)
    elif to_status == ChargeStatus.UNCOLLECTABLE:
        if from_status != ChargeStatus.UNCOLLECTABLE:
            to_client(NoticeKind.PAYMENT_FAILED)
            to_agency(NoticeKind.AGENCY_CHARGE_FAILED)
            to_agency(NoticeKind.AGENCY_CHARGE_UNCOLLECTABLE)
        else:  # a manual retry failed again
            to_client(NoticeKind.PAYMENT_FAILED)
    return drafts


def platform_notices_enqueue(moves: list) -> None:
    """The notices of the agency's own invoice (PAY-3), the same moments as a client's (NOT-4, RET-1, RET-3): paid,
    an attempt failed (with the next attempt's date), uncollectable. They go to the agency's addresses from the
    agency's own outbox (the public schema has none), at most once per invoice, installment and attempt (NOT-7).
    `moves`: (agency charge, from status, to status, business date, latest attempt or LATEST_ATTEMPT_UNKNOWN)."""
    by_agency: dict[int, tuple[Agency, list]] = {}
    for charge, from_status, to_status, today, attempt in moves:
        if to_status == ChargeStatus.PAID and charge.amount_minor > 0:
            kind = NoticeKind.PLATFORM_PAYMENT_RECEIVED
        elif to_status == ChargeStatus.RETRYING or (
            to_status == ChargeStatus.UNCOLLECTABLE and from_status == ChargeStatus.UNCOLLECTABLE
        ):
            kind = NoticeKind.PLATFORM_PAYMENT_FAILED
        elif to_status == ChargeStatus.UNCOLLECTABLE:
            kind = NoticeKind.PLATFORM_PAYMENT_UNCOLLECTABLE
        else:
            continue
        if attempt is LATEST_ATTEMPT_UNKNOWN:
            attempt = charge.attempts.order_by("-number").first()
        by_agency.setdefault(charge.agency_id, (charge.agency, []))[1].append((charge, kind, today, attempt))
    for agency, items in by_agency.values():
        method = AgencyPaymentMethod.objects.filter(agency=agency, removed_at__isnull=True).first()
        with tenant_context(agency):
            drafts = []
            for email in agency_recipients(agency):
                for charge, kind, today, attempt in items:
                    context = {
                        "agency_name": agency.name,
                        "currency": charge.currency,
                        "setup_url": absolute_url("/setup/", agency=agency.schema_name),
                        "amount": format_minor(charge.amount_minor, charge.currency),
                        "invoice_number": charge.invoice.number,
                        "payment_method": str(method) if method else "no payment method on file",
                        "paid_on": (charge.paid_on or today).isoformat(),
                        "reason": (attempt.decline_code or "declined") if attempt else "no payment method on file",
                        "next_retry_on": charge.next_retry_on.isoformat() if charge.next_retry_on else "",
                    }
                    drafts.append(
                        NoticeDraft(
                            account=f"agency:{email}",
                            kind=kind,
                            period=f"{charge.invoice.number}/{charge.installment}",
                            number=attempt.number if attempt else 0,  # as a client's (charge_notice_drafts)
                            to_email=email,
                            context=context,
                            business_date=today,
                        )
                    )
            notices_enqueue(drafts=drafts)
