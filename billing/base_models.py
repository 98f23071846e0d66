"""Fields shared by client invoices (agency schema) and agency invoices (public schema)."""

from __future__ import annotations

from django.db import models

from core.categories import BillingCategory
from core.models import BaseModel


class AbstractInvoice(BaseModel):
    """A finalized invoice. Immutable once written (MON-3): a database trigger refuses changes to its
    number, period, currency and totals, and any change to its lines."""

    number = models.CharField(max_length=40, unique=True)
    period_start = models.DateField()
    period_end = models.DateField(help_text="Exclusive: the next cycle's first day.")
    issued_on = models.DateField()
    due_on = models.DateField()
    currency = models.CharField(max_length=3)
    subtotal_minor = models.BigIntegerField()
    tax_minor = models.BigIntegerField()
    total_minor = models.BigIntegerField()
    pdf = models.FileField(upload_to="invoices/%Y/%m/", blank=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.number


class AbstractInvoiceLine(models.Model):
    position = models.PositiveSmallIntegerField()
    category = models.CharField(max_length=20, choices=BillingCategory.choices)
    description = models.CharField(max_length=240)
    quantity = models.BigIntegerField(default=1)
    unit_amount_minor = models.BigIntegerField()
    amount_minor = models.BigIntegerField()
    taxable = models.BooleanField(default=False)

    class Meta:
        abstract = True
        ordering = ["position"]


class EntryType(models.TextChoices):
    CHARGE = "CHARGE", "Charge"
    PAYMENT = "PAYMENT", "Payment"
    CREDIT = "CREDIT", "Credit"
    REFUND = "REFUND", "Refund"


class AbstractLedgerEntry(models.Model):
    """An append-only ledger line (MON-4). Charges are positive (owed), payments and credits negative.
    A balance is the sum of entries; nothing is ever updated in place."""

    entry_type = models.CharField(max_length=10, choices=EntryType.choices)
    category = models.CharField(max_length=20, choices=BillingCategory.choices)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    occurred_on = models.DateField()
    reference = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["occurred_on", "id"]
