"""Payments and credits applied to open charges (MON-4, COL-6). Append-only: nothing is edited.

The same allocation serves the client ledger (agency schema) and the agency ledger (public schema).
"""

from __future__ import annotations

from datetime import date

from django.db import models, transaction

from billing.base_models import EntryType
from billing.drafting import allocate
from billing.models import Allocation, LedgerEntry
from billing.platform.models import AgencyAllocation, AgencyLedgerEntry
from billing.selectors import billing_settings, open_charges
from clients.models import Client
from core.categories import DEFAULT_CATEGORY_ORDER
from core.errors import ApplicationError
from tenants.models import Agency


def _open_charges(entries: models.QuerySet, category_order: list[str]) -> list[tuple[models.Model, int]]:
    rank = {category: index for index, category in enumerate(category_order)}
    items = open_charges(entries)
    items.sort(key=lambda item: (rank.get(item[0].category, len(rank)), item[0].occurred_on, item[0].pk))
    return items


def open_charges_in_order(client: Client, category_order: list[str]) -> list[tuple[LedgerEntry, int]]:
    """Open charges in the agency's billing-category order, oldest first within a category (COL-6)."""
    return _open_charges(LedgerEntry.objects.filter(client=client), category_order)  # type: ignore[return-value]


def _record(
    *,
    owner_lock: models.QuerySet,
    entries: models.QuerySet,
    entry_model: type[models.Model],
    allocation_model: type[models.Model],
    owner: dict,
    category_order: list[str],
    amount_minor: int,
    currency: str,
    occurred_on: date,
    reference: str,
    entry_type: str,
) -> models.Model:
    if type(amount_minor) is not int or amount_minor <= 0:
        raise ApplicationError(
            "A payment must be a positive whole number of minor units.",
            fields={"amount_minor": ["Must be greater than zero."]},
        )
    if entry_type not in (EntryType.PAYMENT, EntryType.CREDIT):
        raise ApplicationError("Only payments and credits are applied to charges.")
    with transaction.atomic():
        # One allocator at a time per account, so two payments never cover the same open amount.
        owner_lock.select_for_update().get()
        open_items = _open_charges(entries, category_order)
        first_category = open_items[0][0].category if open_items else "OTHER"  # type: ignore[attr-defined]
        payment = entry_model.objects.create(  # type: ignore[attr-defined]
            entry_type=entry_type,
            category=first_category,
            amount_minor=-amount_minor,
            currency=currency,
            occurred_on=occurred_on,
            reference=reference,
            **owner,
        )
        applied = allocate(amount_minor, open_items)
        allocation_model.objects.bulk_create(  # type: ignore[attr-defined]
            allocation_model(payment=payment, charge=charge, amount_minor=amount) for charge, amount in applied
        )
    return payment


def payment_apply(
    *,
    client: Client,
    amount_minor: int,
    currency: str,
    occurred_on: date,
    reference: str,
    entry_type: str = EntryType.PAYMENT,
) -> LedgerEntry:
    """Record a client payment (or credit) and allocate it to open charges; the rest stays as credit."""
    return _record(
        owner_lock=Client.objects.filter(pk=client.pk),
        entries=LedgerEntry.objects.filter(client=client),
        entry_model=LedgerEntry,
        allocation_model=Allocation,
        owner={"client": client},
        category_order=billing_settings().category_order,
        amount_minor=amount_minor,
        currency=currency,
        occurred_on=occurred_on,
        reference=reference,
        entry_type=entry_type,
    )  # type: ignore[return-value]


def payments_apply(
    *, items: list[tuple[Client, int, str, str]], occurred_on: date, category_order: list[str]
) -> list[LedgerEntry]:
    """`payment_apply` for many client payments at once (collection records a batch of successes together):
    (client, amount, currency, reference) each, allocated in the same order and with the same rules, in one
    transaction with a handful of queries whatever the number of payments."""
    for _, amount_minor, _, _ in items:
        if type(amount_minor) is not int or amount_minor <= 0:
            raise ApplicationError(
                "A payment must be a positive whole number of minor units.",
                fields={"amount_minor": ["Must be greater than zero."]},
            )
    if not items:
        return []
    client_ids = sorted({client.pk for client, _, _, _ in items})
    with transaction.atomic():
        # One allocator at a time per account (ids in order, so two batches never deadlock).
        list(Client.objects.select_for_update().filter(pk__in=client_ids).order_by("pk").values_list("pk"))
        open_items: dict[int, list[list]] = {}
        for charge, amount in _open_charges(LedgerEntry.objects.filter(client_id__in=client_ids), category_order):
            open_items.setdefault(charge.client_id, []).append([charge, amount])
        payments, plans = [], []
        for client, amount_minor, currency, reference in items:
            candidates = open_items.get(client.pk, [])
            first_category = next((c.category for c, left in candidates if left > 0), "OTHER")
            applied = allocate(amount_minor, [(entry, entry[1]) for entry in candidates])
            for entry, amount in applied:
                entry[1] -= amount  # a second payment of the same client sees what the first left open
            payments.append(
                LedgerEntry(
                    client=client,
                    entry_type=EntryType.PAYMENT,
                    category=first_category,
                    amount_minor=-amount_minor,
                    currency=currency,
                    occurred_on=occurred_on,
                    reference=reference,
                )
            )
            plans.append([(entry[0], amount) for entry, amount in applied])
        LedgerEntry.objects.bulk_create(payments)
        Allocation.objects.bulk_create(
            Allocation(payment=payment, charge=charge, amount_minor=amount)
            for payment, plan in zip(payments, plans, strict=True)
            for charge, amount in plan
        )
    return payments


def agency_payment_apply(
    *, agency: Agency, amount_minor: int, currency: str, occurred_on: date, reference: str
) -> AgencyLedgerEntry:
    """Record the agency's payment of its own invoices (PAY-3), in the platform's default category order."""
    return _record(
        owner_lock=Agency.objects.filter(pk=agency.pk),
        entries=AgencyLedgerEntry.objects.filter(agency=agency),
        entry_model=AgencyLedgerEntry,
        allocation_model=AgencyAllocation,
        owner={"agency": agency},
        category_order=list(DEFAULT_CATEGORY_ORDER),
        amount_minor=amount_minor,
        currency=currency,
        occurred_on=occurred_on,
        reference=reference,
        entry_type=EntryType.PAYMENT,
    )  # type: ignore[return-value]
