"""The Email Templates page's preview: every variable of a notice kind, filled from one client's real data."""

from __future__ import annotations

from datetime import date

from billing.drafting import notice_line
from billing.invoicing import invoice_preview
from billing.notices import client_context
from billing.plain_words import client_decline_reason, staff_decline_reason
from billing.schedule import month_dates
from billing.selectors import balances, billing_settings, past_due_by_client
from clients.models import Client
from core.calendar import add_months
from core.links import absolute_url
from core.money import format_minor
from notifications.catalog import CATALOG, NoticeKind
from notifications.rendering import sample_context
from tenants.selectors import current_agency


def notice_preview_context(*, client: Client, kind: str, today: date) -> dict:
    """Every documented variable of `kind`, filled from this client's real data where it has any (the
    Email Templates page previews a draft template with it); made-up only where the client has no such
    event yet (e.g. no failed payment)."""
    agency = current_agency()
    assert agency is not None, "notice previews run inside an agency schema"
    currency = agency.currency
    context = {**sample_context(CATALOG[kind].variables), **client_context(agency, client)}
    settings_row = billing_settings()
    for offset in (0, 1):  # this month's invoice, or next month's once this month's billing date has passed
        month = add_months(today.replace(day=1), offset)
        dates = month_dates(
            autopay_days=client.autopay_days,
            billing_day=client.billing_day or agency.billing_day,
            year=month.year,
            month=month.month,
            settings=settings_row,
        )
        if dates.billing_date >= today:
            break
    draft = invoice_preview(agency=agency, client=client, billing_date=dates.billing_date)
    balance = balances([client.pk]).get(client.pk, 0)
    charge = client.charges.select_related("invoice").order_by("-due_on", "-id").first()
    attempt = charge.attempts.order_by("-number").first() if charge else None
    past_due = past_due_by_client(due_before=today, client_ids=[client.pk]).get(client.pk)
    method = client.payment_methods.filter(removed_at__isnull=True).first()
    context.update(
        {
            # The statement is dated the day the invoice is built; the other notices name the billing date.
            "billing_date": (
                dates.build_date if kind == NoticeKind.UPCOMING_STATEMENT else dates.billing_date
            ).isoformat(),
            "statement_total": format_minor(draft.total_minor, currency),
            "open_balance": format_minor(balance, currency),
            "amount_due": format_minor(draft.total_minor + max(balance, 0), currency),
            "lines": [notice_line(line, currency) for line in draft.lines],
            "notice_number": "1",
            "payment_method": str(method) if method else "no payment method on file",
            "past_due": format_minor(past_due.amount_minor if past_due else draft.total_minor, currency),
        }
    )
    context["needs_confirmation"] = ""
    if charge is not None:
        code = (attempt.decline_code or "card_declined") if attempt else "card_declined"
        to_agency = kind in (NoticeKind.AGENCY_CHARGE_FAILED, NoticeKind.AGENCY_CHARGE_UNCOLLECTABLE)
        context.update(
            {
                "amount": format_minor(charge.amount_minor, currency),
                "invoice_number": charge.invoice.number,
                "paid_on": (charge.paid_on or today).isoformat(),
                "next_retry_on": charge.next_retry_on.isoformat() if charge.next_retry_on else "",
                "reason": staff_decline_reason(code) if to_agency else client_decline_reason(code),
                "attempt_number": str(attempt.number if attempt else 1),
                "needs_confirmation": "yes" if code == "authentication_required" else "",
                "pay_url": absolute_url(f"/portal/charges/{charge.public_id}/pay/", agency=agency.schema_name),
                "charge_url": absolute_url(f"/invoices/{charge.invoice.public_id}/", agency=agency.schema_name),
            }
        )
    return {name: context[name] for name in CATALOG[kind].variables}
