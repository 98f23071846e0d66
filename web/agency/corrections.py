"""Credit notes on the invoice page (COR-1): issuing one, its PDF, and what the invoice page shows of credit
notes, refunds and disputes (COR-2)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from billing.corrections import credit_note_issue
from billing.models import Charge, CreditNote, Invoice
from billing.pdf import credit_note_pdf, credit_note_pdf_filename
from billing.statuses import CreditOutcome, RefundStatus
from clients.selectors import client_visibility
from core.errors import ApplicationError
from core.money import format_minor
from web.access import business_today, shows_amounts, staff_view, visible_invoices
from web.agency.common import SEE_BILLING, C, pdf_response
from web.agency.invoices import (
    CREDIT_NOTE_FORM,
    CREDIT_NOTE_SOURCES,
    TIMELINE_SOURCES,
    TimelineItem,
    invoice_detail,
)
from web.forms import CreditNoteForm


def credit_note_form(invoice: Invoice, data=None) -> CreditNoteForm:
    lines = [
        (line.position, f"{line.description} — {format_minor(line.amount_minor, invoice.currency)}")
        for line in invoice.lines.all()
    ]
    return CreditNoteForm(data, currency=invoice.currency, lines=lines)


@require_POST
@staff_view(C.EDIT_CLIENT_CONFIG)
def credit_note_new(request, public_id):
    """Issue a credit note from the invoice page; errors next to their fields, nothing changed."""
    invoice = get_object_or_404(visible_invoices(request.user).select_related("client"), public_id=public_id)
    form = credit_note_form(invoice, request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            note = credit_note_issue(
                invoice=invoice,
                user=request.user,
                reason=data["reason"],
                outcome=data["outcome"],
                line_positions=[int(p) for p in data["lines"]] if data["lines"] else None,
                amount_minor=data["amount"] if not data["lines"] else None,
                today=business_today(request.tenant),
            )
        except ApplicationError as exc:
            form.apply_error(exc)
        else:
            refund = note.refunds.order_by("-id").first() if note.outcome == CreditOutcome.REFUND else None
            words = {
                RefundStatus.SUCCEEDED: "refunded",
                RefundStatus.PENDING: "refund pending until the bank debit settles",
                RefundStatus.STARTED: "refund sent; the processor's answer is awaited",
                RefundStatus.FAILED: "the refund failed: kept as credit on the account",
            }
            outcome = words[refund.status] if refund else "kept as credit on the account"  # type: ignore[index]
            messages.success(request, f"Credit note {note.number} issued: {outcome}.")
            return redirect("invoice-detail", public_id=invoice.public_id)
    return invoice_detail(request, public_id, credit_form=form, status=400)


@staff_view(SEE_BILLING)
def credit_note_pdf_view(request, public_id):
    if not shows_amounts(request.user):
        raise PermissionDenied
    note = get_object_or_404(
        CreditNote.objects.filter(client_visibility(user=request.user, path="client__")).select_related(
            "client", "invoice"
        ),
        public_id=public_id,
    )
    return pdf_response(credit_note_pdf(credit_note=note, agency=request.tenant), credit_note_pdf_filename(note))


# --- what the invoice page shows -------------------------------------------------------------------------------

_REFUND_WORDS = {
    RefundStatus.STARTED: ("plain", "Refund of {amount} sent", "The processor's answer is awaited; it is asked again."),
    RefundStatus.PENDING: ("info", "Refund of {amount} pending", "A bank-debit refund: it settles in a few days."),
    RefundStatus.SUCCEEDED: ("ok", "Refunded {amount}", ""),
    RefundStatus.FAILED: ("bad", "Refund of {amount} failed", "Kept as credit on the account for the next invoice."),
}


def _refund_items(invoice: Invoice, charge: Charge, amounts: bool) -> list[TimelineItem]:
    items = []
    for refund in charge.refunds.select_related("credit_note").order_by("id"):
        tone, title, detail = _REFUND_WORDS[RefundStatus(refund.status)]
        amount = f"{format_minor(refund.amount_minor, refund.currency)} {refund.currency}" if amounts else ""
        title = title.format(amount=amount).replace("  ", " ")
        detail = f"Credit note {refund.credit_note.number}. {detail}".strip()
        if refund.failure_reason:
            detail += f" ({refund.failure_reason.replace('_', ' ')})"
        day = refund.settled_on or refund.credit_note.issued_on
        items.append(TimelineItem(day, refund.updated_at, tone, title, detail))
    return items


def _credit_notes(invoice: Invoice) -> list[dict]:
    notes = invoice.credit_notes.prefetch_related("refunds").order_by("issued_on", "id")
    result = []
    for note in notes:
        statuses = {refund.status for refund in note.refunds.all()}
        if note.outcome == CreditOutcome.CREDIT:
            outcome = "kept as credit on the account"
        elif RefundStatus.FAILED in statuses:
            outcome = "refund failed: kept as credit"
        elif statuses & {RefundStatus.STARTED, RefundStatus.PENDING}:
            outcome = "refund pending"
        else:
            outcome = "refunded"
        result.append(
            {
                "number": note.number,
                "issued_on": note.issued_on,
                "amount_minor": note.amount_minor,
                "reason": note.reason,
                "outcome": outcome,
                "url": reverse("credit-note-pdf", args=[note.public_id]),
            }
        )
    return result


TIMELINE_SOURCES.append(_refund_items)
CREDIT_NOTE_SOURCES.append(_credit_notes)
CREDIT_NOTE_FORM.append(credit_note_form)
