"""Payments and credits applied to open charges (MON-4, COL-6). Append-only: nothing is edited."""

from __future__ import annotations

from datetime import date

from django.db import transaction
from django.db.models import Sum

from billing.base_models import EntryType
from billing.drafting import allocate
from billing.models import Allocation, LedgerEntry
from billing.selectors import billing_settings
from clients.models import Client
from core.errors import ApplicationError


def open_charges_in_order(client: Client, category_order: list[str]) -> list[tuple[LedgerEntry, int]]:
    """Open charges in the agency's billing-category order, oldest first within a category (COL-6)."""
    rank = {category: index for index, category in enumerate(category_order)}
    charges = (LedgerEntry.objects.filter(client=client, amount_minor__gt=0)
               .annotate(paid=Sum("allocations_received__amount_minor")))
    items = [(c, c.amount_minor - (c.paid or 0)) for c in charges]
    items = [(c, amount) for c, amount in items if amount > 0]
    items.sort(key=lambda item: (rank.get(item[0].category, len(rank)), item[0].occurred_on, item[0].pk))
    return items


def payment_apply(*, client: Client, amount_minor: int, currency: str, occurred_on: date, reference: str,
                  entry_type: str = EntryType.PAYMENT) -> LedgerEntry:
    """Record a payment (or credit) and allocate it to open charges. What is left over stays as credit."""
    if type(amount_minor) is not int or amount_minor <= 0:
        raise ApplicationError("A payment must be a positive whole number of minor units.",
                               fields={"amount_minor": ["Must be greater than zero."]})
    if entry_type not in (EntryType.PAYMENT, EntryType.CREDIT):
        raise ApplicationError("Only payments and credits are applied to charges.")
    with transaction.atomic():
        # One allocator at a time per account, so two payments never cover the same open amount.
        Client.objects.select_for_update().filter(pk=client.pk).get()
        order = billing_settings().category_order
        open_items = open_charges_in_order(client, order)
        first_category = open_items[0][0].category if open_items else "OTHER"
        payment = LedgerEntry.objects.create(client=client, entry_type=entry_type, category=first_category,
                                             amount_minor=-amount_minor, currency=currency,
                                             occurred_on=occurred_on, reference=reference)
        applied = allocate(amount_minor, [(charge, amount) for charge, amount in open_items])
        Allocation.objects.bulk_create(Allocation(payment=payment, charge=charge, amount_minor=amount)
                                       for charge, amount in applied)
    return payment
