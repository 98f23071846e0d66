"""The billing step of a day (CYC-2, CYC-3): agency invoice in arrears, client invoices in advance.

Exactly once: each invoice is protected by a unique constraint (account, period start). Invoices are
written under a lock on the agency's number sequence, so two runs of the same day serialize: the second
finds the invoices of the first and builds nothing, and numbers stay gap-free (INV-1). Each batch of
accounts is one transaction: an account's invoice, lines and ledger entries are all written or none.

One account never stops the others (MON-1, `billing/holds.py`): an invoice whose amounts are out of bounds is not
built and its account is held with the reason; a batch that fails to be written anyway is written again one account
per transaction, and the account that still fails is held. Held accounts are checked again on every later run.
Only a failure of the database itself (connection lost, deadlock, timeout) fails the step, to be run again.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Max
from django.utils import timezone
from django_tenants.utils import tenant_context

from billing import bulk
from billing.base_models import EntryType
from billing.corrections import credit_apply_to_invoices, credit_available
from billing.drafting import (
    DraftLine,
    InvoiceDraft,
    ProductPrice,
    TaxSpec,
    draft_agency_invoice,
    draft_client_invoice,
    usage_by_cycle,
    usage_lines,
)
from billing.holds import draft_problem, invoice_hold_record, invoice_holds_due, invoice_holds_release
from billing.models import BillingRun, Charge, Invoice, InvoiceLine, InvoiceSequence, LedgerEntry, RunStatus
from billing.outbound import invoices_finalized
from billing.platform.models import (
    AgencyCharge,
    AgencyInvoice,
    AgencyInvoiceLine,
    AgencyInvoiceSequence,
    AgencyLedgerEntry,
)
from billing.selectors import (
    ClientTerms,
    billed_agency_usage,
    billed_client_usage,
    billing_settings,
    client_period_at,
    client_terms,
    clients_active_during,
    clients_due,
    invoiced_clients,
    invoiced_periods,
    plan_prices,
    unbilled_agency_usage,
    unbilled_client_usage,
)
from billing.statuses import ChargeStatus
from billing.usage import usage_mark_billed
from clients.models import AgencyServiceLine, Client
from core.calendar import Period, add_months, agency_period_due, autopay_dates, cycle_closed_by, cycle_starting
from core.money import split_evenly
from tenants.models import Agency

logger = logging.getLogger(__name__)

# Clients per transaction. Each batch has a fixed cost (the sequence lock, ~10 reads, a commit); at 10,000
# clients, batches of 2,000 ran 10-25 % faster than batches of 500, and 5,000 gained little more
# (docs/performance.md, P1). A batch is what a crash rolls back and a rerun redoes.
BATCH_SIZE = 2000


@dataclass
class BillingRunResult:
    agency: str
    run_date: date
    already_done: bool = False
    agency_invoice_number: str | None = None
    agency_invoice_existed: bool = False
    invoices_built: int = 0
    invoices_existing: int = 0
    skipped_nothing_to_bill: int = 0
    invoices_held: int = 0
    holds_released: int = 0
    batches_split: int = 0
    totals: dict[str, int] = field(default_factory=dict)

    def add_total(self, currency: str, amount: int) -> None:
        self.totals[currency] = self.totals.get(currency, 0) + amount

    def merge(self, part: BillingRunResult) -> None:
        """Add what one committed batch did."""
        for name in (
            "invoices_built",
            "invoices_existing",
            "skipped_nothing_to_bill",
            "invoices_held",
            "holds_released",
        ):
            setattr(self, name, getattr(self, name) + getattr(part, name))
        self.holds_released += part.holds_released
        for currency, amount in part.totals.items():
            self.add_total(currency, amount)


# A failure of the database itself, not of the data: the step fails and is run again, nothing is held for it.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)


# --- drafting from the database ----------------------------------------------------------------------


def _client_draft(*, terms: ClientTerms, period: Period, currency: str, usage: list[DraftLine]) -> InvoiceDraft:
    return draft_client_invoice(
        currency=currency,
        period=period,
        license_price_minor=terms.license_price_minor,
        services=terms.services,
        usage=usage,
        taxes=terms.taxes,
    )


def _client_usage(
    *, client_ids: list[int], window: Period, prices: dict[str, ProductPrice], time_zone: str
) -> tuple[dict[int, list[DraftLine]], dict[int, list[int]]]:
    """Each account's usage lines and the records they carry: every record not yet on one of its invoices that
    occurred before the window's end — the closed cycle's, then, each under a line naming its cycle, usage of
    earlier cycles recorded after they were invoiced (their tiers continued from what was billed). Nothing
    recorded is left out (PLAN-3)."""
    items = unbilled_client_usage(client_ids=client_ids, before=window.end, time_zone=time_zone)
    late_accounts = [aid for aid, its in items.items() if any(i.day < window.start for i in its)]
    periods = invoiced_periods(since=date.min, client_ids=late_accounts) if late_accounts else {}
    lines: dict[int, list[DraftLine]] = {}
    records: dict[int, list[int]] = {}
    for account_id, account_items in items.items():
        current, late = usage_by_cycle(
            ((i.product_code, i.quantity, i.day) for i in account_items),
            window=window,
            cycles=periods.get(account_id, []),
        )
        account_lines = usage_lines(prices, current)
        for cycle in sorted(late, key=lambda p: p.start):
            already = billed_client_usage(account_id=account_id, period=cycle, time_zone=time_zone)
            account_lines += usage_lines(prices, late[cycle], already=already, cycle=cycle)
        lines[account_id] = account_lines
        records[account_id] = [i.record_id for i in account_items]
    return lines, records


def invoice_preview(*, agency: Agency, client: Client, billing_date: date) -> InvoiceDraft:
    """The invoice `billing_run` would build for this client on `billing_date` (Upcoming Statement)."""
    return invoice_previews(agency=agency, client_ids=[client.pk], billing_date=billing_date)[client.pk]


def invoice_previews(
    *,
    agency: Agency,
    client_ids: list[int],
    billing_date: date,
    period: Period | None = None,
    usage_window: Period | None = None,
) -> dict[int, InvoiceDraft]:
    """The invoices `billing_run` would build on `billing_date`, per client id, in a few queries (the usage
    recorded so far): a full cycle from `billing_date` carrying the closed cycle's usage, or — a bridging invoice
    (CYC-1) — the `period` given, prorated, carrying `usage_window`'s."""
    prices = plan_prices(agency.plan)
    usage, _ = _client_usage(
        client_ids=client_ids,
        window=usage_window or cycle_closed_by(billing_date),
        prices=prices,
        time_zone=agency.time_zone,
    )
    return {
        terms.client_id: _client_draft(
            terms=terms,
            period=period or cycle_starting(billing_date),
            currency=agency.currency,
            usage=usage.get(terms.client_id, []),
        )
        for terms in client_terms(client_ids)
    }


# --- writing -----------------------------------------------------------------------------------------


def _ledger_rows(draft: InvoiceDraft) -> list[tuple[str, int]]:
    """One ledger charge per billing category of the invoice (MON-4)."""
    return [(category, amount) for category, amount in draft.by_category().items() if amount]


def _installments(
    *, total_minor: int, terms: ClientTerms, today: date, billing_date: date
) -> list[tuple[int, date, int]]:
    """(installment, due date, amount) to collect: one on the billing date, or one per autopay date split
    evenly with the last taking the remainder (CYC-4)."""
    days = sorted(set(terms.autopay_days))
    dates = autopay_dates(today.year, today.month, days) if len(days) >= 2 else [billing_date]
    if dates[-1] != billing_date:  # a bridging period's invoice (CYC-1): one charge, on its billing date
        dates = [billing_date]
    amounts = split_evenly(total_minor, len(dates))
    return [(index, due, amount) for index, (due, amount) in enumerate(zip(dates, amounts, strict=True), start=1)]


def _line_kwargs(position: int, line: DraftLine) -> dict:
    return {
        "position": position,
        "category": line.category,
        "description": line.description[:240],
        "quantity": line.quantity,
        "unit_amount_decimal": line.unit_amount,
        "amount_minor": line.amount_minor,
        "taxable": line.taxable,
    }


def _build_client_batch(
    *,
    agency: Agency,
    billing_date: date,
    period: Period,
    usage_period: Period,
    client_ids: list[int],
    today: date,
    prices: dict[str, ProductPrice],
    now: datetime,
    result: BillingRunResult,
) -> None:
    """Invoices, lines, ledger charges and charges of a batch of clients, in one transaction.

    Written with COPY rather than the ORM: at 10,000 clients the per-row cost of model instances and
    INSERT parameters was most of the run (docs/performance.md, P1). The database still enforces every rule:
    one invoice per client and period (unique), unique numbers, immutability triggers, foreign keys.
    """
    currency = agency.currency
    with transaction.atomic():
        # The row normally exists from the migration; get_or_create keeps a wiped schema working.
        InvoiceSequence.objects.get_or_create(singleton=True)
        sequence = InvoiceSequence.objects.select_for_update().get(singleton=True)
        existing = invoiced_clients(client_ids=client_ids, period_start=billing_date)
        result.invoices_existing += len(existing)
        todo = [cid for cid in client_ids if cid not in existing]
        if not todo:
            return
        usage, usage_records = _client_usage(
            client_ids=todo, window=usage_period, prices=prices, time_zone=agency.time_zone
        )
        first = sequence.next_number
        drafts = []
        for terms in client_terms(todo):
            draft = _client_draft(
                terms=terms,
                period=period,
                currency=currency,
                usage=usage.get(terms.client_id, []),
            )
            problem = draft_problem(draft)
            if problem is not None:
                # MON-1: out of bounds: this account is held with the reason, the batch goes on without it.
                invoice_hold_record(client_id=terms.client_id, billing_date=billing_date, reason=problem, today=today)
                result.invoices_held += 1
            # Nothing to bill (a client that needs setup: no price, no service line, no usage): no invoice, so
            # no 0.00 invoice marked Paid and no invoice number used up (docs/decisions.md, "Needs setup").
            elif draft.total_minor > 0:
                drafts.append((terms, draft))
        result.skipped_nothing_to_bill += len(todo) - len(drafts) - result.invoices_held
        if not drafts:
            return
        # Credit on the account (COR-1) is used by the invoice: its charges collect that much less.
        credit = credit_available([terms.client_id for terms, _ in drafts])
        applied: dict[int, int] = {}
        new_invoice_of: dict[int, int] = {}
        invoice_ids = bulk.ids_reserve(Invoice, len(drafts))
        invoices, lines, entries, charges, one_time = [], [], [], [], []
        carried: dict[int, int] = {}  # usage record → the invoice that carries it (billed once, PLAN-3)
        for offset, (terms, draft) in enumerate(drafts):
            invoice_id, number = invoice_ids[offset], f"{agency.invoice_prefix}-{first + offset:06d}"
            carried.update(dict.fromkeys(usage_records.get(terms.client_id, []), invoice_id))
            total = draft.total_minor
            used = min(credit.get(terms.client_id, 0), total)
            if used:
                applied[terms.client_id], new_invoice_of[terms.client_id] = used, invoice_id
            invoices.append(
                (
                    invoice_id,
                    uuid.uuid4(),
                    now,
                    now,
                    number,
                    period.start,
                    period.end,
                    today,
                    billing_date,
                    currency,
                    draft.subtotal_minor,
                    draft.tax_minor,
                    total,
                    "",
                    terms.agency_invoiced,
                    terms.client_id,
                    used,
                )
            )
            lines.extend(
                (
                    invoice_id,
                    position,
                    line.category,
                    line.description[:240],
                    line.quantity,
                    line.unit_amount,
                    line.amount_minor,
                    line.taxable,
                )
                for position, line in enumerate(draft.lines, start=1)
            )
            entries.extend(
                (terms.client_id, invoice_id, EntryType.CHARGE, category, amount, currency, billing_date, number, now)
                for category, amount in _ledger_rows(draft)
            )
            # Agency Invoiced clients are never charged (COL-1): their charges are built as such.
            status = ChargeStatus.AGENCY_INVOICED if terms.agency_invoiced else ChargeStatus.SCHEDULED
            charges.extend(
                (
                    uuid.uuid4(),
                    now,
                    now,
                    installment,
                    amount,
                    currency,
                    billing_date,  # the invoice's (CYC-4), beside the installment's own due date
                    due,
                    status,
                    "",
                    "",
                    terms.client_id,
                    invoice_id,
                    period.start,
                )
                for installment, due, amount in _installments(
                    total_minor=total - used, terms=terms, today=today, billing_date=billing_date
                )
            )
            one_time.extend((key, number) for key in draft.one_time_service_keys)
            result.add_total(currency, total)
        bulk.copy_rows(Invoice, INVOICE_COLUMNS, invoices)
        bulk.copy_rows(InvoiceLine, LINE_COLUMNS, lines)
        bulk.copy_rows(LedgerEntry, LEDGER_COLUMNS, entries)
        bulk.copy_rows(Charge, CHARGE_COLUMNS, charges)
        usage_mark_billed(client_invoice_of=carried)
        if applied:
            credit_apply_to_invoices(
                applied=applied, invoice_ids=new_invoice_of, order=billing_settings().category_order
            )
        invoices_finalized([row[0] for row in invoices])  # outbound webhooks, sent after commit
        if one_time:
            # PLAN-2: a one-time service line is billed once, then removed — in the same transaction.
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {AgencyServiceLine._meta.db_table} AS s SET removed_at = %s, updated_at = %s, "
                    "billed_on_invoice = v.number FROM unnest(%s::bigint[], %s::text[]) AS v(id, number) "
                    "WHERE s.id = v.id",
                    [now, now, [key for key, _ in one_time], [number for _, number in one_time]],
                )
        sequence.next_number = first + len(invoices)
        sequence.save(update_fields=["next_number"])
        result.invoices_built += len(invoices)
        result.holds_released += invoice_holds_release(
            built={terms.client_id: row[4] for (terms, _), row in zip(drafts, invoices, strict=True)},
            billing_date=billing_date,
            today=today,
        )


INVOICE_COLUMNS = (
    "id",
    "public_id",
    "created_at",
    "updated_at",
    "number",
    "period_start",
    "period_end",
    "issued_on",
    "due_on",
    "currency",
    "subtotal_minor",
    "tax_minor",
    "total_minor",
    "pdf",
    "agency_invoiced",
    "client_id",
    "credit_applied_minor",
)
LINE_COLUMNS = (
    "invoice_id",
    "position",
    "category",
    "description",
    "quantity",
    "unit_amount_decimal",
    "amount_minor",
    "taxable",
)
LEDGER_COLUMNS = (
    "client_id",
    "invoice_id",
    "entry_type",
    "category",
    "amount_minor",
    "currency",
    "occurred_on",
    "reference",
    "created_at",
)
CHARGE_COLUMNS = (
    "public_id",
    "created_at",
    "updated_at",
    "installment",
    "amount_minor",
    "currency",
    "billing_date",
    "due_on",
    "status",
    "paid_reference",
    "payout_reference",
    "client_id",
    "invoice_id",
    "period_start",
)


def agency_invoice_build(*, agency: Agency, billing_date: date, today: date) -> tuple[AgencyInvoice | None, bool]:
    """Build the agency's invoice for the period closing on `billing_date` (today, or the day of an invoice held
    then), in arrears (CYC-2 a). Periods are contiguous, so a billing-day change neither bills a day twice nor
    leaves one out (CYC-1, `agency_period_due`). Returns (invoice, created); (None, False) when no period closes
    that day or there is no partner plan. Out of bounds (MON-1) → no invoice: held with the reason (in the
    agency's schema, which must be the current one), the clients are billed as usual."""
    plan = agency.plan
    if plan is None:
        return None, False
    existing = AgencyInvoice.objects.filter(agency=agency, period_end=billing_date).first()
    if existing is not None:
        return existing, False
    if _agency_period(agency=agency, billing_date=billing_date, today=today) is None:
        return None, False
    with transaction.atomic():
        sequence, _ = AgencyInvoiceSequence.objects.select_for_update().get_or_create(agency=agency)
        # Again under the lock: a concurrent run of the same day may have built it meanwhile (CYC-3).
        existing = AgencyInvoice.objects.filter(agency=agency, period_end=billing_date).first()
        if existing is not None:
            return existing, False
        period = _agency_period(agency=agency, billing_date=billing_date, today=today)
        if period is None:
            return None, False
        prices = plan_prices(plan)
        agency_usage, agency_records = _agency_usage(agency=agency, window=period, prices=prices)
        draft = draft_agency_invoice(
            currency=plan.currency,
            period=period,
            active_clients=clients_active_during(period),
            license_fee_minor=plan.license_fee_minor,
            package_minimum_minor=plan.package_minimum_minor,
            usage=agency_usage,
            taxes=[TaxSpec(t.name, t.rate_percent) for t in plan.taxes.all()],
            fees=[(f.name, f.amount_minor) for f in plan.fees.all()],
        )
        problem = draft_problem(draft)
        if problem is not None:
            invoice_hold_record(client_id=None, billing_date=billing_date, reason=problem, today=today)
            return None, False
        invoice = AgencyInvoice.objects.create(
            agency=agency,
            number=f"P-{agency.invoice_prefix}-{sequence.next_number:06d}",
            period_start=period.start,
            period_end=period.end,
            issued_on=today,
            due_on=billing_date,
            currency=plan.currency,
            subtotal_minor=draft.subtotal_minor,
            tax_minor=draft.tax_minor,
            total_minor=draft.total_minor,
        )
        AgencyInvoiceLine.objects.bulk_create(
            AgencyInvoiceLine(invoice=invoice, **_line_kwargs(pos, line))
            for pos, line in enumerate(draft.lines, start=1)
        )
        AgencyLedgerEntry.objects.bulk_create(
            AgencyLedgerEntry(
                agency=agency,
                invoice=invoice,
                entry_type=EntryType.CHARGE,
                category=cat,
                amount_minor=amount,
                currency=plan.currency,
                occurred_on=billing_date,
                reference=invoice.number,
            )
            for cat, amount in _ledger_rows(draft)
        )
        AgencyCharge.objects.create(
            invoice=invoice,
            agency=agency,
            amount_minor=invoice.total_minor,
            currency=invoice.currency,
            billing_date=billing_date,
            due_on=billing_date,
        )
        usage_mark_billed(agency_invoice_id=invoice.pk, record_ids=agency_records)
        sequence.next_number += 1
        sequence.save(update_fields=["next_number"])
        invoice_holds_release(built={None: invoice.number}, billing_date=billing_date, today=today)
    return invoice, True


def _agency_usage(
    *, agency: Agency, window: Period, prices: dict[str, ProductPrice]
) -> tuple[list[DraftLine], list[int]]:
    """The agency invoice's usage lines and the records they carry: all usage of the agency and its clients not
    yet on one of its invoices, before the period's end; usage of earlier cycles, recorded after they were
    invoiced, under lines naming their cycle (tiers continued from what was billed)."""
    items = unbilled_agency_usage(before=window.end, time_zone=agency.time_zone)
    cycles = [
        Period(start, end)
        for start, end in AgencyInvoice.objects.filter(agency=agency).values_list("period_start", "period_end")
    ]
    current, late = usage_by_cycle(((i.product_code, i.quantity, i.day) for i in items), window=window, cycles=cycles)
    lines = usage_lines(prices, current)
    for cycle in sorted(late, key=lambda p: p.start):
        already = billed_agency_usage(period=cycle, time_zone=agency.time_zone)
        lines += usage_lines(prices, late[cycle], already=already, cycle=cycle)
    return lines, [i.record_id for i in items]


def _agency_period(*, agency: Agency, billing_date: date, today: date) -> Period | None:
    """The agency invoice's period closing on `billing_date`: from where the previous one ended (CYC-1). A held
    invoice built on a later day (MON-1) keeps the period it had on its own day."""
    last_end = AgencyInvoice.objects.filter(agency=agency, period_end__lt=billing_date).aggregate(
        end=Max("period_end")
    )["end"]
    if billing_date == today:
        return agency_period_due(today=today, billing_day=agency.billing_day, last_end=last_end)
    start = add_months(billing_date, -1)
    if last_end is not None and last_end >= add_months(billing_date, -2):
        start = last_end
    return Period(start, billing_date)


def _batch_build(
    *,
    agency: Agency,
    billing_date: date,
    period: Period,
    usage_period: Period,
    client_ids: list[int],
    today: date,
    prices: dict[str, ProductPrice],
    now: datetime,
    result: BillingRunResult,
) -> None:
    """One batch, and if writing it fails for a reason other than the database being unavailable, the same
    accounts again one transaction each: the account that still fails is held with its error, never the batch."""
    part = BillingRunResult(agency=result.agency, run_date=result.run_date)
    try:
        _build_client_batch(
            agency=agency,
            billing_date=billing_date,
            period=period,
            usage_period=usage_period,
            client_ids=client_ids,
            today=today,
            prices=prices,
            now=now,
            result=part,
        )
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever one account's data does, the others are billed
        if len(client_ids) == 1:
            with transaction.atomic():
                invoice_hold_record(
                    client_id=client_ids[0], billing_date=billing_date, reason=_error_reason(exc), today=today
                )
            result.invoices_held += 1
            return
        logger.warning(
            "billing batch of %d accounts (%s, %s) failed, billing them one by one: %s",
            len(client_ids),
            agency.schema_name,
            billing_date,
            _error_reason(exc),
        )
        result.batches_split += 1
        for client_id in client_ids:
            _batch_build(
                agency=agency,
                billing_date=billing_date,
                period=period,
                usage_period=usage_period,
                client_ids=[client_id],
                today=today,
                prices=prices,
                now=now,
                result=result,
            )
        return
    result.merge(part)


def _agency_invoice(*, agency: Agency, billing_date: date, today: date, result: BillingRunResult) -> None:
    """The agency's own invoice; held like a client's if it cannot be written, so its clients are billed anyway."""
    try:
        invoice, created = agency_invoice_build(agency=agency, billing_date=billing_date, today=today)
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - the clients are billed whatever the agency invoice does
        with transaction.atomic():
            invoice_hold_record(client_id=None, billing_date=billing_date, reason=_error_reason(exc), today=today)
        return
    if invoice is not None and billing_date == today:
        result.agency_invoice_number = invoice.number
        result.agency_invoice_existed = not created


def _error_reason(exc: Exception) -> str:
    return f"The invoice could not be written: {type(exc).__name__}: {exc}"[:2000]


def _holds_recheck(
    *, agency: Agency, today: date, prices: dict[str, ProductPrice], now: datetime, result: BillingRunResult
) -> None:
    """Check the accounts held on earlier days again: build each invoice the configuration now allows."""
    for hold in invoice_holds_due(today=today):
        if hold.client_id is None:
            _agency_invoice(agency=agency, billing_date=hold.billing_date, today=today, result=result)
            continue
        existing = Invoice.objects.filter(client_id=hold.client_id, period_start=hold.billing_date).first()
        if existing is not None:  # built since (a rerun of that day by hand): nothing is held any more
            result.holds_released += invoice_holds_release(
                built={hold.client_id: existing.number}, billing_date=hold.billing_date, today=today
            )
            continue
        period, usage_period = client_period_at(agency=agency, client_id=hold.client_id, billing_date=hold.billing_date)
        _batch_build(
            agency=agency,
            billing_date=hold.billing_date,
            period=period,
            usage_period=usage_period,
            client_ids=[hold.client_id],
            today=today,
            prices=prices,
            now=now,
            result=result,
        )


def billing_run(
    *, agency: Agency, today: date, batch_size: int = BATCH_SIZE, progress: Callable[[int, int], None] | None = None
) -> BillingRunResult:
    """The billing step of `today` for one agency. Safe to rerun and to run concurrently (CYC-3)."""
    result = BillingRunResult(agency=agency.schema_name, run_date=today)
    with tenant_context(agency):
        run, _ = BillingRun.objects.get_or_create(run_date=today)
        if run.status == RunStatus.DONE:
            result.already_done = True
            return result
        now = timezone.now()
        # Every day: the agency's period closes on its billing day, or at a changed schedule's bridge (CYC-1).
        _agency_invoice(agency=agency, billing_date=today, today=today, result=result)
        due = clients_due(agency=agency, today=today)
        # Clients with the same billing date, period and usage cycle are written together.
        by_date: dict[tuple[date, Period, Period], list[int]] = defaultdict(list)
        for item in due:
            by_date[(item.billing_date, item.period, item.usage)].append(item.client_id)
        prices = plan_prices(agency.plan)
        done = 0
        if progress:
            progress(0, len(due))
        _holds_recheck(agency=agency, today=today, prices=prices, now=now, result=result)
        for (billing_date, period, usage_period), ids in sorted(
            by_date.items(), key=lambda item: (item[0][0], item[0][1].end, item[0][2].start)
        ):
            for start in range(0, len(ids), batch_size):
                batch = ids[start : start + batch_size]
                _batch_build(
                    agency=agency,
                    billing_date=billing_date,
                    period=period,
                    usage_period=usage_period,
                    client_ids=batch,
                    today=today,
                    prices=prices,
                    now=now,
                    result=result,
                )
                done += len(batch)
                if progress:
                    progress(done, len(due))
        BillingRun.objects.filter(pk=run.pk).update(
            status=RunStatus.DONE,
            finished_at=timezone.now(),
            invoices_built=F("invoices_built") + result.invoices_built,
            agency_invoice_built=bool(result.agency_invoice_number and not result.agency_invoice_existed),
        )
    logger.info(
        "billing run %s %s: %d built, %d existing, %d held",
        agency.schema_name,
        today,
        result.invoices_built,
        result.invoices_existing,
        result.invoices_held,
    )
    return result
