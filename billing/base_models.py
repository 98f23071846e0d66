"""Fields shared by client invoices (agency schema) and agency invoices (public schema)."""

from __future__ import annotations

from django.contrib.postgres.functions import RandomUUID
from django.db import models

from billing.statuses import AttemptKind, AttemptOutcome, ChargeStatus
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
    # Minor units, up to 12 decimals (MON-2): a usage line's unit price may be a fraction of a cent; the line's
    # amount is quantity × this, rounded half-up once.
    unit_amount_decimal = models.DecimalField(max_digits=31, decimal_places=12)
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
    # A lost dispute (COR-2): the payment went back to the card holder, so what it paid is owed again.
    CHARGEBACK = "CHARGEBACK", "Chargeback"


class AbstractLedgerEntry(models.Model):
    """An append-only ledger line (MON-4). Charges are positive (owed), payments and credits negative.
    A balance is the sum of entries; nothing is ever updated in place."""

    # The id the API shows. Filled by PostgreSQL, so the billing run's COPY of entries needs no column for it and
    # rows written before the column existed got one each when it was added.
    public_id = models.UUIDField(db_default=RandomUUID(), unique=True, editable=False)
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


class AbstractPaymentMethod(BaseModel):
    reference = models.CharField(max_length=64)
    kind = models.CharField(max_length=20)
    fingerprint = models.CharField(max_length=128)
    brand = models.CharField(max_length=20, blank=True)
    last4 = models.CharField(max_length=4, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def is_bank_debit(self) -> bool:
        return self.kind in {"sepa_debit", "us_bank_account"}

    def __str__(self) -> str:
        label = {"card": self.brand.title() or "Card", "sepa_debit": "SEPA debit", "us_bank_account": "ACH debit"}.get(
            self.kind, self.kind
        )
        return f"{label} ···· {self.last4}"


class AbstractCharge(BaseModel):
    """One amount to collect for an invoice (an installment when there are several autopay dates)."""

    installment = models.PositiveSmallIntegerField(default=1)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    # CYC-4: an installment of an invoice with several autopay dates is due on its own autopay date, and reports the
    # invoice's billing date (the last autopay date) beside it; with one billing date the two are the same.
    billing_date = models.DateField(help_text="The invoice's billing date (CYC-4: its last autopay date).")
    due_on = models.DateField(help_text="This installment's due date: collected then; retries count from it (RET-2).")
    status = models.CharField(max_length=16, choices=ChargeStatus.choices, default=ChargeStatus.SCHEDULED)
    next_retry_on = models.DateField(null=True, blank=True)
    paid_on = models.DateField(null=True, blank=True)
    paid_reference = models.CharField(max_length=64, blank=True)
    payout_reference = models.CharField(max_length=64, blank=True)
    paid_out_on = models.DateField(null=True, blank=True)

    class Meta:
        abstract = True


class AbstractAttempt(models.Model):
    number = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=10, choices=AttemptKind.choices, default=AttemptKind.AUTOMATIC)
    attempted_on = models.DateField()
    amount_minor = models.BigIntegerField()
    idempotency_key = models.CharField(max_length=80, unique=True)
    payment_method_reference = models.CharField(max_length=64)
    # The connected account the payment went to (a destination charge, PAY-1); empty: the platform's own
    # account — the agency invoice, or a client charge collected before the agency's payouts were enabled (held).
    destination = models.CharField(max_length=64, blank=True)
    outcome = models.CharField(max_length=20, choices=AttemptOutcome.choices, default=AttemptOutcome.STARTED)
    gateway_reference = models.CharField(max_length=64, blank=True)
    decline_code = models.CharField(max_length=64, blank=True)
    message = models.CharField(max_length=240, blank=True)
    # Awaiting authentication (COL-7): the bank's page where the cardholder confirms the payment.
    action_url = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["number"]


class AbstractChargeEvent(models.Model):
    """The charge's status history, with who or what moved it and why."""

    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16)
    reason = models.CharField(max_length=240)
    actor = models.CharField(max_length=254, blank=True)
    business_date = models.DateField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["id"]
