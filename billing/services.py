"""The billing step of a day (CYC-2, CYC-3): agency invoice in arrears, client invoices in advance.

Exactly once: each invoice is protected by a unique constraint (account, period start). Invoices are
written under a lock on the agency's number sequence, so two runs of the same day serialize: the second
finds the invoices of the first and builds nothing, and numbers stay gap-free (INV-1). Each batch of
accounts is one transaction: an account's invoice, lines and ledger entries are all written or none.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

from django.db import transaction
from django.db.models import F, Prefetch
from django.utils import timezone
from django_tenants.utils import tenant_context

from billing.base_models import ChargeStatus, EntryType
from billing.drafting import (
    DraftLine,
    InvoiceDraft,
    ProductPrice,
    ServiceSpec,
    TaxSpec,
    draft_agency_invoice,
    draft_client_invoice,
    usage_lines,
)
from billing.models import BillingRun, Charge, Invoice, InvoiceLine, InvoiceSequence, LedgerEntry, RunStatus
from billing.platform.models import (
    AgencyCharge,
    AgencyInvoice,
    AgencyInvoiceLine,
    AgencyInvoiceSequence,
    AgencyLedgerEntry,
)
from billing.selectors import (
    clients_active_during,
    clients_due,
    plan_prices,
    pooled_usage,
    usage_by_account,
)
from clients.models import AgencyServiceLine, Client
from core.calendar import Period, autopay_dates, cycle_closed_by, cycle_starting
from core.money import split_evenly
from tenants.models import Agency

logger = logging.getLogger(__name__)

BATCH_SIZE = 500


@dataclass
class BillingRunResult:
    agency: str
    run_date: date
    already_done: bool = False
    agency_invoice_number: str | None = None
    agency_invoice_existed: bool = False
    invoices_built: int = 0
    invoices_existing: int = 0
    totals: dict[str, int] = field(default_factory=dict)

    def add_total(self, currency: str, amount: int) -> None:
        self.totals[currency] = self.totals.get(currency, 0) + amount


# --- drafting from the database ----------------------------------------------------------------------


def _services(client: Client) -> list[ServiceSpec]:
    return [ServiceSpec(s.description, s.amount_minor, s.taxable, s.recurrence == "ONE_TIME", s.pk)
            for s in client.service_lines.all() if s.removed_at is None]


def _taxes(client: Client) -> list[TaxSpec]:
    return [TaxSpec(t.name, t.rate_bp) for t in sorted(client.taxes.all(), key=lambda t: t.pk)]


def _client_draft(*, client: Client, billing_date: date, currency: str, prices: dict[str, ProductPrice],
                  usage: dict[str, int]) -> InvoiceDraft:
    return draft_client_invoice(
        currency=currency, period=cycle_starting(billing_date), license_price_minor=client.license_price_minor,
        services=_services(client), usage=usage_lines(prices, usage), taxes=_taxes(client))


def _group_usage(client_ids: list[int], period: Period, time_zone: str) -> dict[int, dict[str, int]]:
    """Usage per billed account; members of a group count towards their primary (PLAN-4)."""
    members = dict(Client.objects.filter(group__primary_id__in=client_ids).exclude(id=F("group__primary_id"))
                   .values_list("id", "group__primary_id"))
    per_account = usage_by_account(client_ids=[*client_ids, *members], period=period, time_zone=time_zone)
    merged: dict[int, dict[str, int]] = defaultdict(dict)
    for account_id, products in per_account.items():
        if account_id is None:
            continue
        target = members.get(account_id, account_id)
        for code, quantity in products.items():
            merged[target][code] = merged[target].get(code, 0) + quantity
    return merged


def _with_configuration(ids: Iterable[int]):
    active_services = AgencyServiceLine.objects.filter(removed_at__isnull=True).order_by("id")
    return Client.objects.filter(id__in=list(ids)).prefetch_related(
        "taxes", Prefetch("service_lines", queryset=active_services))


def invoice_preview(*, agency: Agency, client: Client, billing_date: date) -> InvoiceDraft:
    """The invoice `billing_run` would build for this client on `billing_date` (Upcoming Statement)."""
    client = _with_configuration([client.pk]).get()
    usage = _group_usage([client.pk], cycle_closed_by(billing_date), agency.time_zone).get(client.pk, {})
    return _client_draft(client=client, billing_date=billing_date, currency=agency.currency,
                         prices=plan_prices(agency.plan), usage=usage)


# --- writing -----------------------------------------------------------------------------------------


def _ledger_rows(draft: InvoiceDraft) -> list[tuple[str, int]]:
    """One ledger charge per billing category of the invoice (MON-4)."""
    return [(category, amount) for category, amount in draft.by_category().items() if amount]


def _charges_for(invoice: Invoice, client: Client, today: date, billing_date: date) -> list[Charge]:
    """The amounts to collect: one on the billing date, or one per autopay date split evenly with the last
    taking the remainder (CYC-4). Agency Invoiced clients are never charged (COL-1)."""
    status = ChargeStatus.AGENCY_INVOICED if client.agency_invoiced else ChargeStatus.SCHEDULED
    days = sorted(set(client.autopay_days))
    dates = autopay_dates(today.year, today.month, days) if len(days) >= 2 else [billing_date]
    amounts = split_evenly(invoice.total_minor, len(dates))
    return [Charge(invoice=invoice, client=client, installment=index, amount_minor=amount,
                   currency=invoice.currency, billing_date=due, due_on=due, status=status)
            for index, (due, amount) in enumerate(zip(dates, amounts, strict=True), start=1)]


def _line_kwargs(position: int, line: DraftLine) -> dict:
    return {"position": position, "category": line.category, "description": line.description[:240],
            "quantity": line.quantity, "unit_amount_minor": line.unit_amount_minor,
            "amount_minor": line.amount_minor, "taxable": line.taxable}


def _build_client_batch(*, agency: Agency, billing_date: date, client_ids: list[int], today: date,
                        prices: dict[str, ProductPrice], now: datetime, result: BillingRunResult) -> None:
    with transaction.atomic():
        # The row normally exists from the migration; get_or_create keeps a wiped schema working.
        InvoiceSequence.objects.get_or_create(singleton=True)
        sequence = InvoiceSequence.objects.select_for_update().get(singleton=True)
        existing = set(Invoice.objects.filter(client_id__in=client_ids, period_start=billing_date)
                       .values_list("client_id", flat=True))
        result.invoices_existing += len(existing)
        todo = [cid for cid in client_ids if cid not in existing]
        if not todo:
            return
        clients = list(_with_configuration(todo).order_by("id"))
        usage = _group_usage(todo, cycle_closed_by(billing_date), agency.time_zone)
        drafts = [(c, _client_draft(client=c, billing_date=billing_date, currency=agency.currency, prices=prices,
                                    usage=usage.get(c.pk, {}))) for c in clients]
        period = cycle_starting(billing_date)
        first = sequence.next_number
        invoices = [
            Invoice(client=c, number=f"{agency.invoice_prefix}-{first + i:06d}", period_start=period.start,
                    period_end=period.end, issued_on=today, due_on=billing_date, currency=agency.currency,
                    subtotal_minor=d.subtotal_minor, tax_minor=d.tax_minor, total_minor=d.total_minor,
                    agency_invoiced=c.agency_invoiced)
            for i, (c, d) in enumerate(drafts)
        ]
        Invoice.objects.bulk_create(invoices)
        lines, entries, one_time, charges = [], [], [], []
        for invoice, (client, draft) in zip(invoices, drafts, strict=True):
            charges.extend(_charges_for(invoice, client, today, billing_date))
            lines.extend(InvoiceLine(invoice=invoice, **_line_kwargs(pos, line))
                         for pos, line in enumerate(draft.lines, start=1))
            entries.extend(LedgerEntry(client=client, invoice=invoice, entry_type=EntryType.CHARGE, category=cat,
                                       amount_minor=amount, currency=agency.currency, occurred_on=billing_date,
                                       reference=invoice.number) for cat, amount in _ledger_rows(draft))
            one_time.extend((key, invoice.number) for key in draft.one_time_service_keys)
            result.add_total(agency.currency, draft.total_minor)
        InvoiceLine.objects.bulk_create(lines)
        LedgerEntry.objects.bulk_create(entries)
        Charge.objects.bulk_create(charges)
        if one_time:
            # PLAN-2: a one-time service line is billed once, then removed — in the same transaction.
            billed = AgencyServiceLine.objects.in_bulk([key for key, _ in one_time])
            for key, number in one_time:
                billed[key].removed_at, billed[key].billed_on_invoice = now, number
            AgencyServiceLine.objects.bulk_update(billed.values(), ["removed_at", "billed_on_invoice"])
        sequence.next_number = first + len(invoices)
        sequence.save(update_fields=["next_number"])
        result.invoices_built += len(invoices)


def agency_invoice_build(*, agency: Agency, billing_date: date, today: date) -> tuple[AgencyInvoice | None, bool]:
    """Build the agency's invoice for the cycle closed by `billing_date`, in arrears (CYC-2 a).
    Returns (invoice, created). No partner plan → no invoice."""
    plan = agency.plan
    if plan is None:
        return None, False
    period = cycle_closed_by(billing_date)
    with transaction.atomic():
        sequence, _ = AgencyInvoiceSequence.objects.select_for_update().get_or_create(agency=agency)
        existing = AgencyInvoice.objects.filter(agency=agency, period_start=period.start).first()
        if existing is not None:
            return existing, False
        prices = plan_prices(plan)
        draft = draft_agency_invoice(
            currency=plan.currency, period=period, active_clients=clients_active_during(period),
            license_fee_minor=plan.license_fee_minor, package_minimum_minor=plan.package_minimum_minor,
            usage=usage_lines(prices, pooled_usage(period=period, time_zone=agency.time_zone)),
            taxes=[TaxSpec(t.name, t.rate_bp) for t in plan.taxes.all()],
            fees=[(f.name, f.amount_minor) for f in plan.fees.all()])
        invoice = AgencyInvoice.objects.create(
            agency=agency, number=f"P-{agency.invoice_prefix}-{sequence.next_number:06d}",
            period_start=period.start, period_end=period.end, issued_on=today, due_on=billing_date,
            currency=plan.currency, subtotal_minor=draft.subtotal_minor, tax_minor=draft.tax_minor,
            total_minor=draft.total_minor)
        AgencyInvoiceLine.objects.bulk_create(AgencyInvoiceLine(invoice=invoice, **_line_kwargs(pos, line))
                                              for pos, line in enumerate(draft.lines, start=1))
        AgencyLedgerEntry.objects.bulk_create(
            AgencyLedgerEntry(agency=agency, invoice=invoice, entry_type=EntryType.CHARGE, category=cat,
                              amount_minor=amount, currency=plan.currency, occurred_on=billing_date,
                              reference=invoice.number) for cat, amount in _ledger_rows(draft))
        AgencyCharge.objects.create(invoice=invoice, agency=agency, amount_minor=invoice.total_minor,
                                    currency=invoice.currency, billing_date=billing_date, due_on=billing_date)
        sequence.next_number += 1
        sequence.save(update_fields=["next_number"])
    return invoice, True


def billing_run(*, agency: Agency, today: date, batch_size: int = BATCH_SIZE,
                progress: Callable[[int, int], None] | None = None) -> BillingRunResult:
    """The billing step of `today` for one agency. Safe to rerun and to run concurrently (CYC-3)."""
    result = BillingRunResult(agency=agency.schema_name, run_date=today)
    with tenant_context(agency):
        run, _ = BillingRun.objects.get_or_create(run_date=today)
        if run.status == RunStatus.DONE:
            result.already_done = True
            return result
        now = timezone.now()
        if today.day == agency.billing_day:
            invoice, created = agency_invoice_build(agency=agency, billing_date=today, today=today)
            if invoice is not None:
                result.agency_invoice_number = invoice.number
                result.agency_invoice_existed = not created
        due = clients_due(agency=agency, today=today)
        by_date: dict[date, list[int]] = defaultdict(list)
        for item in due:
            by_date[item.billing_date].append(item.client_id)
        prices = plan_prices(agency.plan)
        done = 0
        if progress:
            progress(0, len(due))
        for billing_date, ids in sorted(by_date.items()):
            for start in range(0, len(ids), batch_size):
                batch = ids[start:start + batch_size]
                _build_client_batch(agency=agency, billing_date=billing_date, client_ids=batch, today=today,
                                    prices=prices, now=now, result=result)
                done += len(batch)
                if progress:
                    progress(done, len(due))
        BillingRun.objects.filter(pk=run.pk).update(
            status=RunStatus.DONE, finished_at=timezone.now(),
            invoices_built=F("invoices_built") + result.invoices_built,
            agency_invoice_built=bool(result.agency_invoice_number and not result.agency_invoice_existed))
    logger.info("billing run %s %s: %d built, %d existing", agency.schema_name, today, result.invoices_built,
                result.invoices_existing)
    return result
