"""Client billing data (agency schema): settings, usage, invoices, ledger, billing runs."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models

from billing.base_models import (
    AbstractAttempt,
    AbstractCharge,
    AbstractChargeEvent,
    AbstractInvoice,
    AbstractInvoiceLine,
    AbstractLedgerEntry,
    AbstractPaymentMethod,
)
from billing.statuses import CreditOutcome, DisputeStatus, RefundStatus
from core.categories import DEFAULT_CATEGORY_ORDER, BillingCategory
from core.models import BaseModel


def default_category_order() -> list[str]:
    return list(DEFAULT_CATEGORY_ORDER)


class BillingSettings(models.Model):
    """The agency's Billing Setup (one row per agency schema)."""

    singleton = models.BooleanField(default=True, unique=True, editable=False)
    category_order = ArrayField(models.CharField(max_length=20), default=default_category_order)
    grace_period_days = models.PositiveSmallIntegerField(default=10)
    overdue_threshold_minor = models.BigIntegerField(default=0)
    statement_days_before = models.PositiveSmallIntegerField(default=10)
    statement_second_after_days = models.PositiveSmallIntegerField(null=True, blank=True)
    statement_third_after_days = models.PositiveSmallIntegerField(null=True, blank=True)
    overdue_second_after_days = models.PositiveSmallIntegerField(null=True, blank=True)
    overdue_third_after_days = models.PositiveSmallIntegerField(null=True, blank=True)
    retries_enabled = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(singleton=True), name="billing_settings_singleton"),
            models.CheckConstraint(condition=models.Q(overdue_threshold_minor__gte=0), name="threshold_gte_0"),
        ]


class UsageRecord(BaseModel):
    """Usage of a product (PLAN-3) by the agency itself (client null) or by one client."""

    client = models.ForeignKey(
        "clients.Client", null=True, blank=True, on_delete=models.PROTECT, related_name="usage_records"
    )
    product_code = models.SlugField(max_length=40)
    quantity = models.BigIntegerField()
    occurred_at = models.DateTimeField()
    idempotency_key = models.CharField(max_length=120, unique=True)
    # Billed once on each side, whenever it was recorded: the client invoice that carried it (its own cycle's, or
    # the next one when recorded after its cycle was invoiced) and the agency invoice (public schema, by id).
    client_invoice = models.ForeignKey(
        "Invoice", null=True, blank=True, on_delete=models.PROTECT, related_name="usage_records"
    )
    agency_invoice_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["occurred_at"]
        indexes = [
            models.Index(fields=["occurred_at", "client"]),
            models.Index(
                fields=["client", "occurred_at"], condition=models.Q(client_invoice__isnull=True), name="usage_unbilled"
            ),
            models.Index(
                fields=["occurred_at"], condition=models.Q(agency_invoice_id__isnull=True), name="usage_agency_unbilled"
            ),
        ]
        constraints = [models.CheckConstraint(condition=models.Q(quantity__gt=0), name="usage_quantity_gt_0")]


class InvoiceSequence(models.Model):
    """Next client-invoice number of this agency. Taken under a row lock in the same transaction that
    writes the invoices, so numbers are sequential without gaps (INV-1)."""

    singleton = models.BooleanField(default=True, unique=True, editable=False)
    next_number = models.PositiveBigIntegerField(default=1)


class Invoice(AbstractInvoice):
    """A client invoice: the cycle that starts, in advance, plus the closed cycle's usage (CYC-2 b)."""

    client = models.ForeignKey("clients.Client", on_delete=models.PROTECT, related_name="invoices")
    agency_invoiced = models.BooleanField(default=False)
    # Credit on the account (credit notes kept as credit, overpayments) used by this invoice when it was built
    # (COR-1): its charges collect `total_minor - credit_applied_minor`. Written once, with the invoice.
    credit_applied_minor = models.BigIntegerField(default=0, db_default=0)

    class Meta:
        ordering = ["-period_start", "number"]
        indexes = [models.Index(fields=["period_start"])]
        constraints = [
            # CYC-3: one invoice per client and cycle, whatever reruns or races.
            models.UniqueConstraint(fields=["client", "period_start"], name="invoice_once_per_client_period"),
            models.CheckConstraint(
                condition=models.Q(credit_applied_minor__gte=0, credit_applied_minor__lte=models.F("total_minor")),
                name="invoice_credit_applied_within_total",
            ),
        ]


class InvoiceLine(AbstractInvoiceLine):
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="lines")

    class Meta(AbstractInvoiceLine.Meta):
        constraints = [models.UniqueConstraint(fields=["invoice", "position"], name="line_position_unique")]


class LedgerEntry(AbstractLedgerEntry):
    client = models.ForeignKey("clients.Client", on_delete=models.PROTECT, related_name="ledger_entries")
    invoice = models.ForeignKey(Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_entries")

    class Meta(AbstractLedgerEntry.Meta):
        indexes = [
            models.Index(fields=["client", "category"]),
            # Which clients may hold credit on account: only a credit note creates it (COR-1). The billing run
            # reads this small index for each batch instead of every client's whole ledger.
            models.Index(fields=["client"], condition=models.Q(entry_type="CREDIT"), name="ledger_credit_by_client"),
        ]


class Allocation(models.Model):
    """Which charge a payment or credit paid, and how much (COL-6)."""

    payment = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="allocations_made")
    charge = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="allocations_received")
    amount_minor = models.BigIntegerField()

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(amount_minor__gt=0), name="alloc_gt_0")]


class RunStatus(models.TextChoices):
    STARTED = "STARTED", "Started"
    DONE = "DONE", "Done"
    FAILED = "FAILED", "Done without a step that kept failing"


class StepStatus(models.TextChoices):
    STARTED = "STARTED", "Started"
    DONE = "DONE", "Done"
    FAILED = "FAILED", "Failed"


class BillingRun(models.Model):
    """One billing step of one agency day (CYC-2/3): started, then done, with its counts."""

    run_date = models.DateField(unique=True)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.STARTED)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    invoices_built = models.PositiveIntegerField(default=0)
    agency_invoice_built = models.BooleanField(default=False)
    totals = models.JSONField(default=dict)


class PaymentMethod(AbstractPaymentMethod):
    """A client's saved payment method. Card numbers never reach the server: only the provider's
    reference, brand, last four digits and fingerprint are kept."""

    client = models.ForeignKey("clients.Client", on_delete=models.PROTECT, related_name="payment_methods")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["client"],
                condition=models.Q(removed_at__isnull=True),
                name="one_active_payment_method_per_client",
            ),
        ]


class Charge(AbstractCharge):
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="charges")
    client = models.ForeignKey("clients.Client", on_delete=models.PROTECT, related_name="charges")
    # The invoice's period_start, copied when the charge is built (an invoice never changes, MON-3): the
    # Billing Overview groups and filters a year of charges by billing month without joining every one of
    # them to its invoice (docs/performance.md, P3).
    period_start = models.DateField(help_text="The billing month's invoice period start (its invoice's).")

    class Meta:
        ordering = ["due_on", "id"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "installment"], name="charge_once_per_installment"),
        ]
        indexes = [
            models.Index(fields=["status", "due_on"]),
            models.Index(fields=["status", "next_retry_on"]),
            # Covering: the twelve-month totals and a month's summary read these three columns of a
            # year of charges with an index-only scan (docs/performance.md, P3).
            models.Index(
                fields=["period_start", "status"], include=["amount_minor"], name="charge_month_status_amount"
            ),
        ]


class ChargeAttempt(AbstractAttempt):
    charge = models.ForeignKey(Charge, on_delete=models.PROTECT, related_name="attempts")

    class Meta(AbstractAttempt.Meta):
        constraints = [models.UniqueConstraint(fields=["charge", "number"], name="attempt_once_per_number")]


class ChargeEvent(AbstractChargeEvent):
    charge = models.ForeignKey(Charge, on_delete=models.PROTECT, related_name="events")

    class Meta(AbstractChargeEvent.Meta):
        indexes = [
            # The platform's reconciliation reads the charges collected on a range of days: their moves to Paid.
            models.Index(fields=["business_date"], condition=models.Q(to_status="PAID"), name="charge_paid_on_day"),
        ]


class FundsTransfer(models.Model):
    """Held funds sent on to the agency (ONB-2): a client charge collected on the platform's account while the
    agency's payouts were not enabled, transferred to its connected account once they are (Stripe's separate
    charges and transfers, `source_transaction` = the charge). One per charge; the row is written before the
    processor is called and its key is the idempotency key, so a charge is never transferred twice."""

    charge = models.OneToOneField(Charge, on_delete=models.PROTECT, related_name="funds_transfer")
    account = models.CharField(max_length=64)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    idempotency_key = models.CharField(max_length=80, unique=True)
    reference = models.CharField(max_length=64, blank=True)
    created_on = models.DateField()
    transferred_on = models.DateField(null=True, blank=True)
    error = models.CharField(max_length=240, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)


class RequestKind(models.TextChoices):
    RETRY = "RETRY", "Retry a charge"
    AGENCY_INVOICED = "AGENCY_INVOICED", "Switch to Agency Invoiced"


class SupportRequest(BaseModel):
    """What the agency asks billing support to do (RET-4, COL-1)."""

    kind = models.CharField(max_length=20, choices=RequestKind.choices)
    client = models.ForeignKey("clients.Client", on_delete=models.PROTECT, related_name="support_requests")
    charge = models.ForeignKey(Charge, null=True, blank=True, on_delete=models.PROTECT)
    requested_by = models.CharField(max_length=254)
    reason = models.TextField(blank=True)
    status = models.CharField(max_length=10, default="OPEN")  # OPEN | DONE | REJECTED
    resolved_by = models.CharField(max_length=254, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # One open request per client, kind and charge: asking twice does not queue the work twice.
            models.UniqueConstraint(
                fields=["kind", "client", "charge"],
                condition=models.Q(status="OPEN"),
                nulls_distinct=False,
                name="support_request_open_once",
            ),
        ]


class AgencyDay(models.Model):
    """One agency-local day of the billing clock; its steps are `AgencyDayStep` rows."""

    day = models.DateField(unique=True)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.STARTED)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)


class DayStep(models.TextChoices):
    """The agency-day pipeline, in the order it runs."""

    NOTICES = "NOTICES", "Notices due"
    BILLING = "BILLING", "Invoices"
    COLLECTION = "COLLECTION", "Collection on the due date"
    RETRIES = "RETRIES", "Retries due"
    PLATFORM_INVOICE = "PLATFORM_INVOICE", "The agency's own invoice: collection and retries"
    SETTLEMENT = "SETTLEMENT", "Bank-debit settlement and payouts"
    OVERDUE = "OVERDUE", "Overdue evaluation"
    NOTICES_SENT = "NOTICES_SENT", "The day's notices sent"


class AgencyDayStep(models.Model):
    """One step of one agency day: started, then done with its counts, or failed with its error. A step
    that is done is not run again when the day is rerun (after a crash, or by hand). `failures` counts the runs that
    failed for a reason of the step's own (not an unavailable database or broker): at `DAY_STEP_MAX_FAILURES` the
    step is given up and the day goes on without it (billing/day.py)."""

    day = models.ForeignKey(AgencyDay, on_delete=models.CASCADE, related_name="steps")
    step = models.CharField(max_length=20, choices=DayStep.choices)
    status = models.CharField(max_length=10, choices=StepStatus.choices, default=StepStatus.STARTED)
    counts = models.JSONField(default=dict)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    failures = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "step"], name="day_step_once")]


# --- corrections (COR-1) and disputes (COR-2) ---------------------------------------------------------------------


class CreditNoteSequence(models.Model):
    """Next credit-note number of this agency, taken under a row lock in the credit note's own transaction: its
    own sequence, without gaps, apart from the invoices' (COR-1)."""

    singleton = models.BooleanField(default=True, unique=True, editable=False)
    next_number = models.PositiveBigIntegerField(default=1)


class CreditNote(BaseModel):
    """A correction of a finalized invoice (MON-3, COR-1): whole lines or an amount, with a reason, refunded to the
    payment method or kept as credit on the account. Immutable once written (database trigger); what it credits can
    never exceed what the invoice billed (trigger on its lines) nor a refund what was paid (trigger on refunds)."""

    number = models.CharField(max_length=40, unique=True)
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    client = models.ForeignKey("clients.Client", on_delete=models.PROTECT, related_name="credit_notes")
    outcome = models.CharField(max_length=10, choices=CreditOutcome.choices)
    reason = models.CharField(max_length=500)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    issued_on = models.DateField()
    issued_by = models.CharField(max_length=254)
    pdf = models.FileField(upload_to="credit-notes/%Y/%m/", blank=True)

    class Meta:
        ordering = ["issued_on", "id"]
        constraints = [models.CheckConstraint(condition=models.Q(amount_minor__gt=0), name="credit_note_amount_gt_0")]

    def __str__(self) -> str:
        return self.number


class CreditNoteLine(models.Model):
    """One credited amount: a part (or all) of one invoice line, in that line's billing category."""

    credit_note = models.ForeignKey(CreditNote, on_delete=models.PROTECT, related_name="lines")
    position = models.PositiveSmallIntegerField()
    invoice_line = models.ForeignKey(InvoiceLine, on_delete=models.PROTECT, related_name="credit_lines")
    category = models.CharField(max_length=20, choices=BillingCategory.choices)
    description = models.CharField(max_length=240)
    amount_minor = models.BigIntegerField()

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["credit_note", "position"], name="credit_line_position_unique"),
            models.CheckConstraint(condition=models.Q(amount_minor__gt=0), name="credit_line_amount_gt_0"),
        ]


class Refund(BaseModel):
    """A credit note's money going back to the payment method of one paid charge (COR-1). Written, with its
    idempotency key, before the processor is called (as an attempt is); resent with the same key until the
    processor's answer is known."""

    credit_note = models.ForeignKey(CreditNote, on_delete=models.PROTECT, related_name="refunds")
    charge = models.ForeignKey(Charge, on_delete=models.PROTECT, related_name="refunds")
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, choices=RefundStatus.choices, default=RefundStatus.STARTED)
    idempotency_key = models.CharField(max_length=80, unique=True)
    reference = models.CharField(max_length=64, blank=True)
    failure_reason = models.CharField(max_length=120, blank=True)
    reverse_transfer = models.BooleanField(default=True)
    settled_on = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount_minor__gt=0), name="refund_amount_gt_0"),
            models.UniqueConstraint(
                fields=["reference"], condition=~models.Q(reference=""), name="refund_reference_unique"
            ),
        ]


class Dispute(BaseModel):
    """A chargeback on a paid charge, as the processor reports it (COR-2): its state, amount and the date a
    response is due. A lost dispute reopens the charge and recovers the amount from the agency, once."""

    charge = models.ForeignKey(Charge, on_delete=models.PROTECT, related_name="disputes")
    reference = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=16, choices=DisputeStatus.choices)
    reason = models.CharField(max_length=60, blank=True)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    opened_on = models.DateField()
    due_by = models.DateField(null=True, blank=True, help_text="Evidence is due by the end of this day (UTC).")
    closed_on = models.DateField(null=True, blank=True)
    recovery_reference = models.CharField(
        max_length=64, blank=True, help_text="The transfer reversal that recovered a lost dispute from the agency."
    )

    class Meta:
        ordering = ["opened_on", "id"]
        constraints = [models.CheckConstraint(condition=models.Q(amount_minor__gt=0), name="dispute_amount_gt_0")]


class InvoiceHold(BaseModel):
    """An invoice that was not built: its amounts are out of bounds (a line, a tax or the total above the per-charge
    ceiling, MON-1) or writing it failed. Only that account is held, with the reason; the rest of the agency is
    billed. Every later billing run checks it again, and builds the invoice once the configuration allows it
    (released). Client null: the agency's own invoice (CYC-2 a). The agency sees it on the client's page, billing
    support on the console's agency page."""

    client = models.ForeignKey(
        "clients.Client", null=True, blank=True, on_delete=models.PROTECT, related_name="invoice_holds"
    )
    billing_date = models.DateField()
    reason = models.TextField()
    held_on = models.DateField()
    last_checked_on = models.DateField()
    checks = models.PositiveIntegerField(default=1)
    released_on = models.DateField(null=True, blank=True)
    invoice_number = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["-billing_date", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["client", "billing_date"], nulls_distinct=False, name="invoice_hold_once_per_account_date"
            ),
        ]
        indexes = [models.Index(fields=["released_on"])]
