"""Credit notes and refunds (COR-1, MON-3): correcting a finalized invoice without changing it.

A credit note credits whole lines or an amount of one invoice, with a reason, under its own gap-free number
sequence, and writes ledger credit entries (MON-4) in the credited lines' categories. Its money goes one of two ways:

- **refunded** to the payment method of the invoice's paid charges, through the processor (a destination charge's
  transfer reversed by the same amount, so the agency returns its share, PAY-1). The ledger records the refund at
  once (the credit allocated to refund entries); a refund that fails later is kept as credit on the account;
- **kept as credit** on the account: allocated at once to what is open, in the agency's billing-category order,
  oldest first (COL-6), the charges still to collect reduced by as much; what is left is used by the next invoice
  when it is built (`credit_available`, `credit_apply_to_invoices`).

Never more than was billed, nor refunded more than was paid: checked under the invoice's row lock, and enforced
again by database triggers (billing/immutability.py). The refund row is committed, with its idempotency key,
before the processor is called; an answer that does not arrive leaves it Started, and it is sent again with the
same key (`refunds_resolve`), so a refund is made once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from django.db import connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from accounts.models import User, audit_record
from accounts.permissions import Capability, has_capability
from billing.base_models import EntryType
from billing.charges import TransitionEffects, charge_transition
from billing.drafting import allocate
from billing.dunning import clients_overdue_refresh
from billing.ledger import open_charges_in_order
from billing.models import (
    Allocation,
    Charge,
    ChargeEvent,
    CreditNote,
    CreditNoteLine,
    CreditNoteSequence,
    Invoice,
    LedgerEntry,
    Refund,
)
from billing.notices import agency_recipients, client_context
from billing.payouts import charge_is_destination_charge
from billing.providers import get_provider
from billing.providers.base import PaymentProvider, RefundOutcome, RefundRequest, RefundResult
from billing.selectors import billing_settings
from billing.statuses import (
    COLLECTED,
    COLLECTIBLE,
    UNRESOLVED_OUTCOMES,
    ChargeStatus,
    CreditOutcome,
    DisputeStatus,
    RefundStatus,
)
from clients.models import Client
from core.categories import BillingCategory
from core.errors import ApplicationError, PermissionDenied
from core.links import absolute_url
from core.money import format_minor
from notifications.catalog import NoticeKind
from notifications.services import NoticeDraft, notices_enqueue
from tenants.models import Agency
from tenants.selectors import current_agency

logger = logging.getLogger(__name__)

REASON_MAX = 500


class CreditNoteInvalid(ApplicationError):
    code = "credit_note_invalid"


class CreditAboveRemaining(ApplicationError):
    code = "credit_above_remaining"


class NothingToRefund(ApplicationError):
    code = "nothing_to_refund"
    status = 409


# --- the arithmetic (pure) ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreditableLine:
    """An invoice line and what is left of it to credit."""

    line_id: int
    position: int
    category: str
    description: str
    amount_minor: int
    taxable: bool
    remaining_minor: int


@dataclass(frozen=True, slots=True)
class CreditDraftLine:
    line_id: int
    position: int
    category: str
    description: str
    amount_minor: int


def _half_up(numerator: int, denominator: int) -> int:
    return int((Decimal(numerator) / Decimal(denominator)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def credit_lines_for_positions(lines: Sequence[CreditableLine], positions: Iterable[int]) -> list[CreditDraftLine]:
    """Whole lines: each chosen line for what is left of it. A chosen taxable line brings its share of each tax
    line not chosen itself (the tax line's amount in proportion to the line's share of the taxable base, half-up);
    once every taxable line is wholly credited, what is left of the tax lines goes too, so taxes are never
    credited more or less than they billed."""
    by_position = {line.position: line for line in lines}
    chosen: list[CreditableLine] = []
    errors: list[str] = []
    for position in positions:
        line = by_position.get(position)
        if line is None:
            errors.append(f"The invoice has no line {position}.")
        elif line in chosen:
            errors.append(f"Line {position} is chosen twice.")
        elif line.remaining_minor <= 0:
            errors.append(f"Line {position} ({line.description}) is already wholly credited.")
        else:
            chosen.append(line)
    if errors:
        raise CreditAboveRemaining(errors[0], fields={"lines": errors})
    if not chosen:
        raise CreditNoteInvalid("Choose the lines to credit.", fields={"lines": ["Choose at least one line."]})
    drafts = [CreditDraftLine(x.line_id, x.position, x.category, x.description, x.remaining_minor) for x in chosen]
    taxable = [x for x in lines if x.taxable]
    base = sum(x.amount_minor for x in taxable)
    credited_now = sum(x.remaining_minor for x in chosen if x.taxable)
    if base > 0 and credited_now > 0:
        all_taxable_done = all(x in chosen or x.remaining_minor == 0 for x in taxable)
        for tax in lines:
            if tax.category != BillingCategory.TAXES_FEES or tax.taxable or tax in chosen or tax.remaining_minor <= 0:
                continue
            share = tax.remaining_minor if all_taxable_done else _half_up(tax.amount_minor * credited_now, base)
            share = min(share, tax.remaining_minor)
            if share > 0:
                drafts.append(CreditDraftLine(tax.line_id, tax.position, tax.category, tax.description, share))
    return drafts


def credit_lines_for_amount(
    lines: Sequence[CreditableLine], amount_minor: int, category_order: Sequence[str], currency: str = "USD"
) -> list[CreditDraftLine]:
    """An amount: spread over what is left of the lines in the agency's billing-category order, line order within
    a category (COL-6)."""
    if type(amount_minor) is not int or amount_minor <= 0:
        raise CreditNoteInvalid(
            "A credit must be a positive whole number of minor units.", fields={"amount_minor": ["Must be > 0."]}
        )
    remaining = sum(line.remaining_minor for line in lines)
    if amount_minor > remaining:
        left = f"{format_minor(remaining, currency)} {currency}"
        raise CreditAboveRemaining(
            f"The credit is more than remains to credit on this invoice ({left}).",
            fields={"amount_minor": [f"More than remains to credit: at most {left}."]},
        )
    rank = {category: index for index, category in enumerate(category_order)}
    ordered = sorted(lines, key=lambda line: (rank.get(line.category, len(rank)), line.position))
    return [
        CreditDraftLine(line.line_id, line.position, line.category, line.description, take)
        for line, take in allocate(amount_minor, [(line, line.remaining_minor) for line in ordered])
    ]


def by_category(items: Iterable[tuple[str, int]], category_order: Sequence[str]) -> list[tuple[str, int]]:
    totals: dict[str, int] = defaultdict(int)
    for category, amount in items:
        totals[category] += amount
    rank = {category: index for index, category in enumerate(category_order)}
    return sorted(((c, a) for c, a in totals.items() if a), key=lambda item: rank.get(item[0], len(rank)))


# --- reads ----------------------------------------------------------------------------------------------------


def creditable_lines(invoice: Invoice) -> list[CreditableLine]:
    lines = invoice.lines.annotate(credited=Sum("credit_lines__amount_minor")).order_by("position")
    return [
        CreditableLine(
            line.pk,
            line.position,
            line.category,
            line.description,
            line.amount_minor,
            line.taxable,
            line.amount_minor - (line.credited or 0),  # type: ignore[attr-defined]
        )
        for line in lines
    ]


def refundable_by_charge(charges: Iterable[Charge]) -> list[tuple[Charge, int]]:
    """(charge, what can still be refunded) for the invoice's charges that collected money, latest installment
    first: paid, not disputed (a chargeback cannot be refunded), less what refunds already returned."""
    charges = [c for c in charges if c.status in COLLECTED and c.paid_reference and c.amount_minor > 0]
    if not charges:
        return []
    refunded = dict(
        Refund.objects.filter(charge__in=charges)
        .exclude(status=RefundStatus.FAILED)
        .values_list("charge")
        .annotate(total=Sum("amount_minor"))
        .order_by()
    )
    disputed = set(
        Charge.objects.filter(pk__in=[c.pk for c in charges], disputes__isnull=False)
        .exclude(disputes__status=DisputeStatus.WON)
        .values_list("pk", flat=True)
    )
    result = [(c, c.amount_minor - refunded.get(c.pk, 0)) for c in charges if c.pk not in disputed]
    return sorted([(c, left) for c, left in result if left > 0], key=lambda item: -item[0].installment)


def credit_available(client_ids: Sequence[int]) -> dict[int, int]:
    """Credit on account per client (COR-1): what negative ledger entries (credits, and what a payment paid beyond
    what was open) have not yet been allocated. Only a credit note creates credit, so only clients with a credit
    entry are read (a partial index), whatever the size of the batch."""
    ids = list(client_ids)
    if not ids:
        return {}
    ledger, allocation = LedgerEntry._meta.db_table, Allocation._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT e.client_id, SUM(-e.amount_minor - COALESCE((SELECT SUM(a.amount_minor) FROM {allocation} a "
            "WHERE a.payment_id = e.id), 0)) "
            f"FROM {ledger} e WHERE e.amount_minor < 0 AND e.client_id IN (SELECT DISTINCT c.client_id FROM {ledger} c "
            "WHERE c.client_id = ANY(%s) AND c.entry_type = %s) GROUP BY e.client_id",
            [ids, EntryType.CREDIT],
        )
        return {client_id: int(total) for client_id, total in cursor.fetchall() if total and total > 0}


def _open_credits(client: Client) -> list[tuple[LedgerEntry, int]]:
    entries = (
        LedgerEntry.objects.filter(client=client, amount_minor__lt=0)
        .annotate(used=Sum("allocations_made__amount_minor"))
        .order_by("occurred_on", "id")
    )
    items = [(entry, -entry.amount_minor - (entry.used or 0)) for entry in entries]  # type: ignore[attr-defined]
    return [(entry, left) for entry, left in items if left > 0]


# --- the ledger -----------------------------------------------------------------------------------------------


def _allocations(credits: list[tuple[LedgerEntry, int]], charges: list[tuple[LedgerEntry, int]]) -> list[Allocation]:
    """Pair credits (oldest first) with open charges (in the order given) until one side runs out."""
    rows: list[Allocation] = []
    credit_items = [[entry, left] for entry, left in credits]
    for charge, open_amount in charges:
        for item in credit_items:
            if open_amount <= 0:
                break
            take = min(item[1], open_amount)
            if take > 0:
                rows.append(Allocation(payment=item[0], charge=charge, amount_minor=take))
                item[1] -= take
                open_amount -= take
    return rows


def _open_charges_in_order(client: Client, category_order: Sequence[str]) -> list[tuple[LedgerEntry, int]]:
    return open_charges_in_order(client, list(category_order))


def _credit_entries(
    *, credit_note: CreditNote, categories: list[tuple[str, int]], today: date, reference: str
) -> list[LedgerEntry]:
    return LedgerEntry.objects.bulk_create(
        LedgerEntry(
            client=credit_note.client,
            invoice=credit_note.invoice,
            entry_type=EntryType.CREDIT,
            category=category,
            amount_minor=-amount,
            currency=credit_note.currency,
            occurred_on=today,
            reference=reference,
        )
        for category, amount in categories
    )


def credit_keep_on_account(
    *, client: Client, invoice: Invoice | None, credits: list[LedgerEntry], today: date, actor: str, why: str
) -> int:
    """Credit kept on the account (COR-1): allocated at once to what is open — the corrected invoice's own open
    charges first, then the others oldest first, each in the agency's category order (COL-6) — and each invoice's
    charges still to collect reduced by what its ledger charges received. What is left stays on the account for the
    next invoice. Returns the amount allocated. Call under the client's lock."""
    items = _open_charges_in_order(client, billing_settings().category_order)
    if invoice is not None:
        items = [i for i in items if i[0].invoice_id == invoice.pk] + [
            i for i in items if i[0].invoice_id != invoice.pk
        ]
    rows = _allocations([(entry, -entry.amount_minor) for entry in credits], items)
    Allocation.objects.bulk_create(rows)
    by_invoice: dict[int, int] = defaultdict(int)
    for row in rows:
        if row.charge.invoice_id is not None:
            by_invoice[row.charge.invoice_id] += row.amount_minor
    for invoice_id, amount in by_invoice.items():
        _charges_reduce(invoice_id=invoice_id, amount_minor=amount, today=today, actor=actor, why=why)
    if rows:
        # What was past due may be covered now: the flag is cleared here, in this transaction, as by a payment (DUN-1).
        clients_overdue_refresh(client_ids=[client.pk], today=today)
    return sum(row.amount_minor for row in rows)


def _charges_reduce(*, invoice_id: int, amount_minor: int, today: date, actor: str, why: str) -> int:
    """Collect less: take `amount_minor` off the invoice's charges still to collect, latest installment first. A
    charge with a bank debit in flight or an attempt whose outcome is unknown is left alone (what it collects beyond
    what is open becomes credit on the account). A charge left with nothing to collect is settled (Paid)."""
    charges = (
        Charge.objects.select_for_update(of=("self",))
        .filter(invoice_id=invoice_id, status__in=COLLECTIBLE, amount_minor__gt=0)
        .exclude(attempts__outcome__in=UNRESOLVED_OUTCOMES)
        .select_related("invoice", "client")
        .order_by("-installment")
    )
    left = amount_minor
    moves = TransitionEffects()
    for charge in charges:
        if left <= 0:
            break
        take = min(left, charge.amount_minor)
        left -= take
        before = charge.amount_minor
        charge.amount_minor = before - take
        Charge.objects.filter(pk=charge.pk).update(amount_minor=charge.amount_minor, updated_at=timezone.now())
        if charge.amount_minor == 0:
            charge_transition(
                charge,
                ChargeStatus.PAID,
                reason=f"Settled by credit ({why})"[:240],
                today=today,
                actor=actor,
                moves=moves,
                paid_on=today,
                next_retry_on=None,
            )
        else:
            after = format_minor(charge.amount_minor, charge.currency)
            ChargeEvent.objects.create(
                charge=charge,
                from_status=charge.status,
                to_status=charge.status,
                reason=f"{why}: {format_minor(before, charge.currency)} → {after} to collect"[:240],
                actor=actor,
                business_date=today,
            )
    moves.flush()
    return amount_minor - left


def credit_apply_to_invoices(*, applied: dict[int, int], invoice_ids: dict[int, int], order: Sequence[str]) -> None:
    """The billing run's side of credit on account (COR-1): each client's open credits (oldest first) allocated to
    its new invoice's ledger charges in category order, for the amounts `credit_available` gave and the run took
    off the invoices' charges. `applied` and `invoice_ids` by client id; in the run's transaction."""
    if not applied:
        return
    rank = {category: index for index, category in enumerate(order)}
    new_entries: dict[int, list[LedgerEntry]] = defaultdict(list)
    for entry in LedgerEntry.objects.filter(invoice_id__in=[invoice_ids[c] for c in applied], amount_minor__gt=0):
        new_entries[entry.client_id].append(entry)
    rows: list[Allocation] = []
    for client_id, amount in applied.items():
        credits = _open_credits(Client(pk=client_id))
        charges = sorted(new_entries[client_id], key=lambda e: (rank.get(e.category, len(rank)), e.pk))
        plan = _allocations(credits, [(entry, entry.amount_minor) for entry in charges])
        total = 0
        for row in plan:
            take = min(row.amount_minor, amount - total)
            if take <= 0:
                break
            row.amount_minor = take
            rows.append(row)
            total += take
    Allocation.objects.bulk_create(rows)


# --- issuing a credit note ------------------------------------------------------------------------------------


def _next_number(agency: Agency) -> str:
    CreditNoteSequence.objects.get_or_create(singleton=True)
    sequence = CreditNoteSequence.objects.select_for_update().get(singleton=True)
    number = f"CN-{agency.invoice_prefix}-{sequence.next_number:06d}"
    CreditNoteSequence.objects.filter(pk=sequence.pk).update(next_number=sequence.next_number + 1)
    return number


def _outcome_words(credit_note: CreditNote) -> str:
    if credit_note.outcome == CreditOutcome.CREDIT:
        return "kept as credit on your account and used by your next invoice"
    method = credit_note.client.payment_methods.filter(removed_at__isnull=True).first()
    return f"refunded to {method}" if method else "refunded to the payment method that paid it"


def _invoice_url(agency: Agency, invoice: Invoice) -> str:
    return absolute_url(f"/invoices/{invoice.public_id}/", agency=agency.schema_name)


def _credit_note_notices(credit_note: CreditNote, agency: Agency, today: date) -> None:
    client = credit_note.client
    context = {
        **client_context(agency, client),
        "credit_note_number": credit_note.number,
        "invoice_number": credit_note.invoice.number,
        "amount": format_minor(credit_note.amount_minor, credit_note.currency),
        "reason": credit_note.reason,
        "outcome": _outcome_words(credit_note),
        "issued_on": credit_note.issued_on.isoformat(),
        "issued_by": credit_note.issued_by,
        "invoice_url": _invoice_url(agency, credit_note.invoice),
    }
    drafts = [
        NoticeDraft(
            account=f"agency:{email}",
            kind=NoticeKind.AGENCY_CREDIT_NOTE_ISSUED,
            period=f"{client.public_id}/{credit_note.number}",
            number=1,
            to_email=email,
            context=context,
            business_date=today,
        )
        for email in agency_recipients(agency)
    ]
    if client.email:
        drafts.insert(
            0,
            NoticeDraft(
                account=str(client.public_id),
                kind=NoticeKind.CREDIT_NOTE_ISSUED,
                period=credit_note.number,
                number=1,
                to_email=client.email,
                context=context,
                business_date=today,
            ),
        )
    notices_enqueue(drafts=drafts)


def credit_note_issue(
    *,
    invoice: Invoice,
    user: User,
    reason: str,
    outcome: str,
    today: date,
    line_positions: Sequence[int] | None = None,
    amount_minor: int | None = None,
    provider: PaymentProvider | None = None,
) -> CreditNote:
    """Issue a credit note against a finalized invoice (COR-1): `line_positions` (whole lines) or `amount_minor`,
    with a reason; `outcome` REFUND (to the payment method, through the processor) or CREDIT (kept on the account).
    Roles that edit client configuration may (ROLE-1). Bad input or too much raises and changes nothing."""
    if not has_capability(user, Capability.EDIT_CLIENT_CONFIG):
        raise PermissionDenied("Your role cannot issue credit notes.")
    reason = (reason or "").strip()
    errors: dict[str, list[str]] = {}
    if not reason:
        errors["reason"] = ["Say why the invoice is corrected."]
    elif len(reason) > REASON_MAX:
        errors["reason"] = [f"At most {REASON_MAX} characters."]
    if outcome not in CreditOutcome.values:
        errors["outcome"] = [f"One of {', '.join(CreditOutcome.values)}."]
    if (line_positions is None) == (amount_minor is None):
        errors["lines"] = ["Credit whole lines or an amount, not both."]
    if errors:
        raise CreditNoteInvalid(next(iter(errors.values()))[0], fields=errors)
    agency = current_agency()
    if agency is None:
        raise RuntimeError("credit notes are issued inside an agency schema")
    order = billing_settings().category_order
    with transaction.atomic():
        # One correction of an invoice at a time; the client's lock also orders it with payments (COL-6).
        Client.objects.select_for_update().filter(pk=invoice.client_id).get()
        invoice = Invoice.objects.select_for_update().select_related("client").get(pk=invoice.pk)
        lines = creditable_lines(invoice)
        if line_positions is not None:
            drafts = credit_lines_for_positions(lines, line_positions)
        else:
            assert amount_minor is not None
            drafts = credit_lines_for_amount(lines, amount_minor, order, invoice.currency)
        total = sum(d.amount_minor for d in drafts)
        refunds: list[tuple[Charge, int]] = []
        if outcome == CreditOutcome.REFUND:
            charges = list(Charge.objects.select_for_update().filter(invoice=invoice).order_by("installment"))
            refundable = refundable_by_charge(charges)
            available = sum(left for _, left in refundable)
            if available == 0:
                raise NothingToRefund(
                    "Nothing on this invoice was paid (or what was is disputed or already refunded): there is "
                    "nothing to refund. Keep the credit on the account instead.",
                    fields={"outcome": ["Nothing paid on this invoice is left to refund: keep it as credit instead."]},
                )
            if total > available:
                left = f"{format_minor(available, invoice.currency)} {invoice.currency}"
                raise CreditAboveRemaining(
                    f"The refund is more than remains of what was paid ({left}).",
                    fields={
                        "amount_minor" if amount_minor is not None else "lines": [
                            f"More than remains of what was paid: at most {left}."
                        ]
                    },
                )
            refunds = allocate(total, refundable)
        credit_note = CreditNote.objects.create(
            number=_next_number(agency),
            invoice=invoice,
            client=invoice.client,
            outcome=outcome,
            reason=reason,
            amount_minor=total,
            currency=invoice.currency,
            issued_on=today,
            issued_by=user.email,
        )
        CreditNoteLine.objects.bulk_create(
            CreditNoteLine(
                credit_note=credit_note,
                position=position,
                invoice_line_id=draft.line_id,
                category=draft.category,
                description=draft.description[:240],
                amount_minor=draft.amount_minor,
            )
            for position, draft in enumerate(drafts, start=1)
        )
        categories = by_category(((d.category, d.amount_minor) for d in drafts), order)
        credits = _credit_entries(
            credit_note=credit_note, categories=categories, today=today, reference=credit_note.number
        )
        if outcome == CreditOutcome.REFUND:
            # The ledger says refunded at once; a refund that fails later is credited back (refund_outcome_record).
            returned = LedgerEntry.objects.bulk_create(
                LedgerEntry(
                    client=invoice.client,
                    invoice=invoice,
                    entry_type=EntryType.REFUND,
                    category=category,
                    amount_minor=amount,
                    currency=invoice.currency,
                    occurred_on=today,
                    reference=credit_note.number,
                )
                for category, amount in categories
            )
            Allocation.objects.bulk_create(
                Allocation(payment=credit, charge=refund, amount_minor=refund.amount_minor)
                for credit, refund in zip(credits, returned, strict=True)
            )
            for charge, amount in refunds:
                refund = Refund(
                    credit_note=credit_note,
                    charge=charge,
                    amount_minor=amount,
                    currency=invoice.currency,
                    # A destination charge's transfer to the agency is reversed with it (COR-1); held funds were
                    # the platform's own (ONB-2).
                    reverse_transfer=charge_is_destination_charge(charge),
                )
                refund.idempotency_key = f"rf-{refund.public_id.hex}"
                refund.save()
        else:
            credit_keep_on_account(
                client=invoice.client,
                invoice=invoice,
                credits=credits,
                today=today,
                actor=user.email,
                why=f"Credit note {credit_note.number}",
            )
        audit_record(
            actor=user,
            action="credit_note.issue",
            obj=credit_note,
            after={
                "number": credit_note.number,
                "invoice": invoice.number,
                "outcome": outcome,
                "amount_minor": total,
                "lines": [
                    {"position": d.position, "category": d.category, "amount_minor": d.amount_minor} for d in drafts
                ],
            },
            reason=reason,
        )
        _credit_note_notices(credit_note, agency, today)
    for refund in credit_note.refunds.select_related("charge", "credit_note__client", "credit_note__invoice"):
        refund_submit(refund, today=today, provider=provider)
    return CreditNote.objects.select_related("invoice", "client").get(pk=credit_note.pk)


# --- refunds --------------------------------------------------------------------------------------------------


def refund_request(refund: Refund, today: date) -> RefundRequest:
    return RefundRequest(
        payment_reference=refund.charge.paid_reference,
        amount_minor=refund.amount_minor,
        currency=refund.currency,
        idempotency_key=refund.idempotency_key,
        business_date=today,
        reverse_transfer=refund.reverse_transfer,
        metadata={
            "schema": connection.schema_name,  # type: ignore[attr-defined]
            "kind": "client",
            "refund": refund.idempotency_key,
            "credit_note": refund.credit_note.number,
            "charge": str(refund.charge.public_id),
        },
    )


def refund_submit(refund: Refund, *, today: date, provider: PaymentProvider | None = None) -> Refund:
    """Send a Started refund to the processor (again, with its own key, when its answer was lost)."""
    provider = provider or get_provider()
    try:
        result = provider.refund_create(refund_request(refund, today))
    except Exception as exc:  # noqa: BLE001 - a timeout or 5xx: resent with the same key later
        logger.warning("refund %s outcome unknown: %s", refund.idempotency_key, exc)
        return refund
    refund_outcome_record(refund, result, today)
    refund.refresh_from_db()
    return refund


def refund_outcome_record(refund: Refund, result: RefundResult, today: date) -> None:
    """Record the processor's answer, only forward (Started → Pending → Succeeded → Failed). A failed refund's
    money stayed with the agency: it is kept as credit on the client's account, and the agency is told."""
    target = {
        RefundOutcome.SUCCEEDED: RefundStatus.SUCCEEDED,
        RefundOutcome.PENDING: RefundStatus.PENDING,
        RefundOutcome.FAILED: RefundStatus.FAILED,
    }[result.outcome]
    with transaction.atomic():
        locked = (
            Refund.objects.select_for_update()
            .select_related("credit_note__client", "credit_note__invoice", "charge")
            .get(pk=refund.pk)
        )
        # Only forward; a refund that succeeded may still fail later (Stripe: the card could not take it back).
        forward = {
            RefundStatus.STARTED: {RefundStatus.PENDING, RefundStatus.SUCCEEDED, RefundStatus.FAILED},
            RefundStatus.PENDING: {RefundStatus.SUCCEEDED, RefundStatus.FAILED},
            RefundStatus.SUCCEEDED: {RefundStatus.FAILED},
        }
        if target not in forward.get(locked.status, set()):
            if result.reference and not locked.reference:
                Refund.objects.filter(pk=locked.pk).update(reference=result.reference)
            return
        Refund.objects.filter(pk=locked.pk).update(
            status=target,
            reference=result.reference or locked.reference,
            failure_reason=result.failure_reason[:120],
            settled_on=today if target in (RefundStatus.SUCCEEDED, RefundStatus.FAILED) else None,
            updated_at=timezone.now(),
        )
        if target != RefundStatus.FAILED:
            return
        credit_note = locked.credit_note
        client = Client.objects.select_for_update().get(pk=credit_note.client_id)
        order = billing_settings().category_order
        categories = by_category(((line.category, line.amount_minor) for line in credit_note.lines.all()), order)
        # The failed refund's amount, in the credit note's categories in order.
        parts = allocate(locked.amount_minor, categories)
        credits = _credit_entries(
            credit_note=credit_note,
            categories=[(category, amount) for category, amount in parts],
            today=today,
            reference=f"{credit_note.number} refund failed"[:120],
        )
        credit_keep_on_account(
            client=client,
            invoice=None,
            credits=credits,
            today=today,
            actor="",
            why=f"Refund of credit note {credit_note.number} failed",
        )
        agency = current_agency()
        if agency is not None:
            context = {
                **client_context(agency, client),
                "credit_note_number": credit_note.number,
                "invoice_number": credit_note.invoice.number,
                "amount": format_minor(locked.amount_minor, locked.currency),
                "reason": result.failure_reason or result.message or "refused by the processor",
                "invoice_url": _invoice_url(agency, credit_note.invoice),
            }
            notices_enqueue(
                drafts=[
                    NoticeDraft(
                        account=f"agency:{email}",
                        kind=NoticeKind.AGENCY_REFUND_FAILED,
                        period=f"{client.public_id}/{locked.idempotency_key}",
                        number=1,
                        to_email=email,
                        context=context,
                        business_date=today,
                    )
                    for email in agency_recipients(agency)
                ]
            )


def refund_event_apply(*, reference: str, key: str, succeeded: bool, failure_reason: str, today: date) -> str:
    """A refund settling or failing, reported by webhook or by the processor's day (COR-1)."""
    refund = Refund.objects.filter(Q(reference=reference) if not key else Q(idempotency_key=key)).first()
    if refund is None and key and reference:
        refund = Refund.objects.filter(reference=reference).first()
    if refund is None:
        return "unknown refund"
    outcome = RefundOutcome.SUCCEEDED if succeeded else RefundOutcome.FAILED
    refund_outcome_record(refund, RefundResult(outcome, reference, failure_reason), today)
    return "refund succeeded" if succeeded else "refund failed"


def refunds_resolve(*, today: date, provider: PaymentProvider | None = None) -> int:
    """Send again, with their own keys, the refunds whose processor answer never arrived (Started)."""
    done = 0
    for refund in Refund.objects.filter(status=RefundStatus.STARTED).select_related(
        "charge", "credit_note__client", "credit_note__invoice"
    ):
        refund_submit(refund, today=today, provider=provider)
        done += 1
    return done
