"""The books, read back (MON-4, COL-6, DUN-1): a billing account's ledger entries with their allocations, its balance
now or at the end of a day, what is still open per billing category, and whether it is overdue — for a client (agency
schema) and for the agency's own account with the platform (public schema).

Reads only. The API, the Client Configuration page, the Billing Overview and the client portal all read here, so they
show the same numbers. A balance is the sum of the ledger (charges positive; payments and credits negative; refunds and
chargebacks positive): `charged - paid - credited + refunded + charged back`. What payments and credits are applied to
is every positive entry (COL-6: a refund or a lost dispute reopens what was paid). Days are the agency's calendar
days, as the ledger's.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from django.db.models import BooleanField, Count, ExpressionWrapper, Model, Prefetch, Q, QuerySet, Sum

from billing.base_models import EntryType
from billing.models import Allocation, LedgerEntry
from billing.platform.models import AgencyAllocation, AgencyCharge, AgencyInvoice, AgencyLedgerEntry
from billing.selectors import billing_settings, overdue_due_before, overdue_reached, past_due_by_client
from billing.statuses import STATUS_PRECEDENCE, ChargeStatus
from clients.models import Client
from core.categories import DEFAULT_CATEGORY_ORDER
from tenants.models import Agency


@dataclass(frozen=True, slots=True)
class Balance:
    """A billing account's balance at the end of `as_of` (None: everything recorded so far)."""

    currency: str
    as_of: date | None
    charged_minor: int
    paid_minor: int  # positive: what payments brought in
    credited_minor: int  # positive: credits granted
    refunded_minor: int  # positive: what went back to the payer
    charged_back_minor: int  # positive: payments the payer's bank took back in lost disputes (COR-2)
    balance_minor: int  # charged - paid - credited + refunded + charged back: owed (negative: in credit)
    open_by_category: dict[str, int]  # still open of what is owed, per category, in the account's category order
    unapplied_minor: int  # payments and credits not (yet) applied to a charge, net of refunds

    @property
    def open_minor(self) -> int:
        return sum(self.open_by_category.values())


def _balance(
    *, entries: QuerySet, allocations: QuerySet, as_of: date | None, currency: str, category_order: list[str]
) -> Balance:
    """Two grouped queries: the entries by type and category, and what payments dated up to `as_of` applied to
    charges dated up to `as_of`, by category (an allocation is made with its payment, so it dates from it)."""
    if as_of is not None:
        entries = entries.filter(occurred_on__lte=as_of)
        allocations = allocations.filter(payment__occurred_on__lte=as_of, charge__occurred_on__lte=as_of)
    by_type: dict[str, int] = defaultdict(int)
    charged_by_category: dict[str, int] = defaultdict(int)
    for entry_type, category, owed, amount in (
        entries.order_by()
        .values("entry_type", "category", owed=ExpressionWrapper(Q(amount_minor__gt=0), output_field=BooleanField()))
        .annotate(amount=Sum("amount_minor"))
        .values_list("entry_type", "category", "owed", "amount")
    ):
        by_type[entry_type] += amount
        if owed:
            charged_by_category[category] += amount
    applied = dict(
        allocations.order_by()
        .values("charge__category")
        .annotate(amount=Sum("amount_minor"))
        .values_list("charge__category", "amount")
    )
    open_by_category = {
        category: charged_by_category[category] - applied.get(category, 0)
        for category in [*category_order, *sorted(set(charged_by_category) - set(category_order))]
        if charged_by_category.get(category, 0) - applied.get(category, 0)
    }
    balance = sum(by_type.values())
    return Balance(
        currency=currency,
        as_of=as_of,
        charged_minor=by_type[EntryType.CHARGE],
        paid_minor=-by_type[EntryType.PAYMENT],
        credited_minor=-by_type[EntryType.CREDIT],
        refunded_minor=by_type[EntryType.REFUND],
        charged_back_minor=by_type[EntryType.CHARGEBACK],
        balance_minor=balance,
        open_by_category=open_by_category,
        unapplied_minor=sum(open_by_category.values()) - balance,
    )


def client_balance_summary(*, client: Client, currency: str, as_of: date | None = None) -> Balance:
    """A client's balance (now, or at the end of the agency's day `as_of`), with what is open per category in the
    agency's billing-category order (COL-6). Run in the agency's schema; `currency` is the agency's."""
    return _balance(
        entries=LedgerEntry.objects.filter(client=client),
        allocations=Allocation.objects.filter(charge__client=client),
        as_of=as_of,
        currency=currency,
        category_order=billing_settings().category_order,
    )


def agency_balance_summary(*, agency: Agency, as_of: date | None = None) -> Balance:
    """The agency's balance with the platform (its platform invoices, PAY-3), in the platform's category order."""
    return _balance(
        entries=AgencyLedgerEntry.objects.filter(agency=agency),
        allocations=AgencyAllocation.objects.filter(charge__agency=agency),
        as_of=as_of,
        currency=agency.currency,
        category_order=list(DEFAULT_CATEGORY_ORDER),
    )


def agency_balance_minor(*, agency: Agency) -> int:
    """What the agency owes the platform now (the sum of its ledger), in one query."""
    return AgencyLedgerEntry.objects.filter(agency=agency).aggregate(total=Sum("amount_minor"))["total"] or 0


def client_balances(*, client_ids: list[int], as_of: date | None = None) -> dict[int, int]:
    """Each client's balance (the sum of its ledger, up to `as_of`), in one query; clients without entries: 0."""
    entries = LedgerEntry.objects.filter(client_id__in=client_ids)
    if as_of is not None:
        entries = entries.filter(occurred_on__lte=as_of)
    found = dict(
        entries.order_by().values("client_id").annotate(total=Sum("amount_minor")).values_list("client_id", "total")
    )
    return {client_id: found.get(client_id, 0) for client_id in client_ids}


# --- overdue (DUN-1) -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OverdueState:
    """Whether an account is flagged overdue, since when, and the numbers DUN-1 decides it from, on `today`."""

    overdue: bool  # the flag, as the day's evaluation (or a payment or credit since) left it
    since: date | None
    past_due_minor: int  # what is still open of charges and chargebacks dated before today minus the grace period
    oldest_past_due_on: date | None  # the date of the oldest of those (billing date, or day a dispute was lost)
    threshold_minor: int
    grace_period_days: int
    reached: bool  # the past-due amount reaches the threshold today (the flag follows at the day's evaluation)
    today: date


def overdue_states(*, clients: list[Client], today: date) -> dict[int, OverdueState]:
    """The overdue state of each of these clients on the agency's day `today`: one query for their past-due amounts.
    Agency Invoiced clients are never past due here (COL-1): they pay the agency directly."""
    settings = billing_settings()
    past_due = past_due_by_client(
        due_before=overdue_due_before(settings, today), client_ids=[client.pk for client in clients]
    )
    result = {}
    for client in clients:
        due = past_due.get(client.pk)
        result[client.pk] = OverdueState(
            overdue=client.overdue_since is not None,
            since=client.overdue_since,
            past_due_minor=due.amount_minor if due else 0,
            oldest_past_due_on=due.oldest if due else None,
            threshold_minor=settings.overdue_threshold_minor,
            grace_period_days=settings.grace_period_days,
            reached=overdue_reached(due, settings),
            today=today,
        )
    return result


def client_overdue_state(*, client: Client, today: date) -> OverdueState:
    return overdue_states(clients=[client], today=today)[client.pk]


# --- ledger entries and their allocations (COL-6) --------------------------------------------------------------


def _entries(
    entries: QuerySet,
    allocation_model: type[Model],
    *,
    date_from: date | None,
    date_to: date | None,
    entry_type: str | None,
    category: str | None,
) -> QuerySet:
    if date_from is not None:
        entries = entries.filter(occurred_on__gte=date_from)
    if date_to is not None:
        entries = entries.filter(occurred_on__lte=date_to)
    if entry_type:
        entries = entries.filter(entry_type=entry_type)
    if category:
        entries = entries.filter(category=category)
    allocations = allocation_model.objects.order_by("id")  # type: ignore[attr-defined]
    return entries.select_related("invoice").prefetch_related(
        Prefetch("allocations_made", queryset=allocations.select_related("charge")),
        Prefetch("allocations_received", queryset=allocations.select_related("payment")),
    )


def client_ledger(
    *,
    client: Client,
    date_from: date | None = None,
    date_to: date | None = None,
    entry_type: str | None = None,
    category: str | None = None,
) -> QuerySet[LedgerEntry]:
    """A client's ledger entries (dates inclusive), each with its allocations prefetched: a charge with the payments
    and credits applied to it (`allocations_received`), a payment or credit with the charges it paid
    (`allocations_made`)."""
    return _entries(
        LedgerEntry.objects.filter(client=client),
        Allocation,
        date_from=date_from,
        date_to=date_to,
        entry_type=entry_type,
        category=category,
    )


def agency_ledger(
    *,
    agency: Agency,
    date_from: date | None = None,
    date_to: date | None = None,
    entry_type: str | None = None,
    category: str | None = None,
) -> QuerySet[AgencyLedgerEntry]:
    """The agency's own ledger with the platform, as `client_ledger`."""
    return _entries(
        AgencyLedgerEntry.objects.filter(agency=agency),
        AgencyAllocation,
        date_from=date_from,
        date_to=date_to,
        entry_type=entry_type,
        category=category,
    )


@dataclass(frozen=True, slots=True)
class Applied:
    """One allocation seen from one of its two entries: the other entry, and the amount."""

    entry: LedgerEntry | AgencyLedgerEntry
    amount_minor: int


def entry_allocations(entry: LedgerEntry | AgencyLedgerEntry) -> list[Applied]:
    """What an entry of `client_ledger`/`agency_ledger` received (something owed: a charge, a refund, a chargeback)
    or was applied to (a payment or credit), from the prefetched rows."""
    if entry.amount_minor > 0:
        return [Applied(a.payment, a.amount_minor) for a in entry.allocations_received.all()]
    return [Applied(a.charge, a.amount_minor) for a in entry.allocations_made.all()]


def entry_open_minor(entry: LedgerEntry | AgencyLedgerEntry) -> int:
    """Something owed (a charge, a refund, a chargeback): what is still open of it. A payment or credit: what of it is
    applied to nothing."""
    return abs(entry.amount_minor) - sum(a.amount_minor for a in entry_allocations(entry))


# --- the agency's own books: its platform invoices (PAY-3) ---------------------------------------------------


def agency_invoice_status(charges: list[AgencyCharge]) -> str:
    present = {charge.status for charge in charges}
    return next((status for status in STATUS_PRECEDENCE if status in present), ChargeStatus.SCHEDULED)


def agency_invoices(*, agency: Agency, month: date | None = None) -> QuerySet[AgencyInvoice]:
    """The agency's platform invoices (in arrears), with their lines, charges and attempts prefetched: a constant
    number of queries for any number of invoices."""
    invoices = AgencyInvoice.objects.filter(agency=agency)
    if month is not None:
        invoices = invoices.filter(due_on__year=month.year, due_on__month=month.month)
    return invoices.prefetch_related("lines", Prefetch("charges", queryset=agency_charges_with_attempts()))


def agency_charges_with_attempts() -> QuerySet[AgencyCharge]:
    """An invoice's charges in installment order, each with its attempts and their count (`attempt_count`)."""
    return (
        AgencyCharge.objects.order_by("installment")
        .annotate(attempt_count=Count("attempts"))
        .prefetch_related("attempts")
    )


@dataclass(frozen=True, slots=True)
class InvoicePayment:
    """A payment (or credit) and how much of it went to one invoice."""

    entry: AgencyLedgerEntry
    amount_minor: int


def agency_invoice_payments(invoices: list[AgencyInvoice]) -> dict[int, list[InvoicePayment]]:
    """Per invoice id: the payments applied to its ledger charges, oldest first. One query for all of them."""
    found: dict[tuple[int, int], int] = defaultdict(int)
    rows = AgencyAllocation.objects.filter(charge__invoice__in=[invoice.pk for invoice in invoices]).select_related(
        "payment", "charge"
    )
    entries: dict[int, AgencyLedgerEntry] = {}
    for allocation in rows:
        found[(allocation.charge.invoice_id, allocation.payment_id)] += allocation.amount_minor  # type: ignore[index]
        entries[allocation.payment_id] = allocation.payment
    result: dict[int, list[InvoicePayment]] = defaultdict(list)
    for (invoice_id, payment_id), amount in found.items():
        result[invoice_id].append(InvoicePayment(entries[payment_id], amount))
    for payments in result.values():
        payments.sort(key=lambda p: (p.entry.occurred_on, p.entry.pk))
    return {invoice.pk: result.get(invoice.pk, []) for invoice in invoices}


def agency_invoice_open(invoice: AgencyInvoice, payments: list[InvoicePayment]) -> int:
    return invoice.total_minor - sum(payment.amount_minor for payment in payments)
