"""Agency invoices and the agency ledger: public schema (TEN-1), built in arrears (CYC-2 a)."""

from __future__ import annotations

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
from core.models import BaseModel


class AgencyInvoice(AbstractInvoice):
    agency = models.ForeignKey("tenants.Agency", on_delete=models.PROTECT, related_name="invoices")

    class Meta:
        ordering = ["-period_start"]
        constraints = [
            # CYC-3: one agency invoice per agency and cycle, whatever reruns or races.
            models.UniqueConstraint(fields=["agency", "period_start"], name="agency_invoice_once_per_period"),
        ]


class AgencyInvoiceLine(AbstractInvoiceLine):
    invoice = models.ForeignKey(AgencyInvoice, on_delete=models.PROTECT, related_name="lines")

    class Meta(AbstractInvoiceLine.Meta):
        constraints = [models.UniqueConstraint(fields=["invoice", "position"], name="agency_line_position_unique")]


class AgencyLedgerEntry(AbstractLedgerEntry):
    agency = models.ForeignKey("tenants.Agency", on_delete=models.PROTECT, related_name="ledger_entries")
    invoice = models.ForeignKey(
        AgencyInvoice, null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_entries"
    )

    class Meta(AbstractLedgerEntry.Meta):
        indexes = [models.Index(fields=["agency", "category"])]


class AgencyAllocation(models.Model):
    payment = models.ForeignKey(AgencyLedgerEntry, on_delete=models.PROTECT, related_name="allocations_made")
    charge = models.ForeignKey(AgencyLedgerEntry, on_delete=models.PROTECT, related_name="allocations_received")
    amount_minor = models.BigIntegerField()

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(amount_minor__gt=0), name="agency_alloc_gt_0")]


class AgencyInvoiceSequence(models.Model):
    """Next agency-invoice number per agency; incremented in the invoice's own transaction (gap-free)."""

    agency = models.OneToOneField("tenants.Agency", on_delete=models.CASCADE, related_name="invoice_sequence")
    next_number = models.PositiveBigIntegerField(default=1)


class PaymentMethodFingerprint(models.Model):
    """COL-5: one card or bank account on one billing account, across every agency. The unique constraint
    on `fingerprint` is the rule; the owner columns say who holds it."""

    fingerprint = models.CharField(max_length=128, unique=True)
    schema_name = models.CharField(max_length=63)
    owner_kind = models.CharField(max_length=10)  # client | agency
    owner_public_id = models.UUIDField()
    created_at = models.DateTimeField(auto_now_add=True)


class WebhookStatus(models.TextChoices):
    RECEIVED = "RECEIVED", "Received"
    PROCESSED = "PROCESSED", "Processed"
    IGNORED = "IGNORED", "Ignored"
    FAILED = "FAILED", "Failed"
    DEAD = "DEAD", "Dead letter"  # failed every attempt: kept for billing support to read and replay


class WebhookEvent(models.Model):
    """Inbox of provider webhooks: stored (unique event id) before anything is done with them."""

    event_id = models.CharField(max_length=255, unique=True)
    event_type = models.CharField(max_length=120)
    account = models.CharField(max_length=255, blank=True)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=WebhookStatus.choices, default=WebhookStatus.RECEIVED)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "received_at"])]


# --- The sandbox processor's own books (the demo's "Stripe"), shared by web, worker and beat ------------


class SandboxPaymentMethod(models.Model):
    reference = models.CharField(max_length=64, unique=True)
    customer = models.CharField(max_length=64)
    kind = models.CharField(max_length=20)
    token = models.CharField(max_length=120)
    fingerprint = models.CharField(max_length=128)
    brand = models.CharField(max_length=20, blank=True)
    last4 = models.CharField(max_length=4, blank=True)


class SandboxPaymentIntent(models.Model):
    reference = models.CharField(max_length=64, unique=True)
    idempotency_key = models.CharField(max_length=255, unique=True)
    customer = models.CharField(max_length=64)
    payment_method = models.CharField(max_length=64)
    destination = models.CharField(max_length=64, blank=True)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=24)  # succeeded | processing | failed
    decline_code = models.CharField(max_length=64, blank=True)
    created_on = models.DateField()
    settles_on = models.DateField(null=True, blank=True)
    available_on = models.DateField(null=True, blank=True)
    payout = models.CharField(max_length=64, blank=True)
    transferred_on = models.DateField(null=True, blank=True)  # held funds sent to `destination` later
    metadata = models.JSONField(default=dict)


class SandboxRefund(models.Model):
    """A refund in the sandbox's books: card refunds succeed at once, bank-debit ones settle (or fail) later."""

    reference = models.CharField(max_length=64, unique=True)
    idempotency_key = models.CharField(max_length=255, unique=True)
    payment_intent = models.CharField(max_length=64)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=12)  # pending | succeeded | failed
    reverse_transfer = models.BooleanField(default=False)
    created_on = models.DateField()
    settles_on = models.DateField(null=True, blank=True)
    failure_reason = models.CharField(max_length=64, blank=True)
    metadata = models.JSONField(default=dict)


class SandboxDispute(models.Model):
    """A dispute in the sandbox's books (Stripe's dispute test cards); `reported` is the last status announced."""

    reference = models.CharField(max_length=64, unique=True)
    payment_intent = models.CharField(max_length=64, unique=True)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=40)
    status = models.CharField(max_length=24)  # needs_response | under_review | won | lost
    created_on = models.DateField()
    due_by = models.DateField()
    reported = models.CharField(max_length=24, blank=True)
    recovered = models.CharField(max_length=64, blank=True, help_text="The transfer reversal recovering it.")


class SandboxPayout(models.Model):
    reference = models.CharField(max_length=64, unique=True)
    destination = models.CharField(max_length=64)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    arrival_on = models.DateField()
    status = models.CharField(max_length=12, default="paid")  # paid | failed
    failure_code = models.CharField(max_length=64, blank=True)
    intents = models.JSONField(default=list)  # the payment intents it carried, failed or not


class AgencyPaymentMethod(AbstractPaymentMethod):
    """The agency's own payment method on the platform account (PAY-3)."""

    agency = models.ForeignKey("tenants.Agency", on_delete=models.PROTECT, related_name="payment_methods")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["agency"],
                condition=models.Q(removed_at__isnull=True),
                name="one_active_payment_method_per_agency",
            ),
        ]


class AgencyCharge(AbstractCharge):
    invoice = models.ForeignKey(AgencyInvoice, on_delete=models.PROTECT, related_name="charges")
    agency = models.ForeignKey("tenants.Agency", on_delete=models.PROTECT, related_name="charges")

    class Meta:
        ordering = ["due_on", "id"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "installment"], name="agency_charge_once_per_installment"),
        ]


class AgencyChargeAttempt(AbstractAttempt):
    charge = models.ForeignKey(AgencyCharge, on_delete=models.PROTECT, related_name="attempts")

    class Meta(AbstractAttempt.Meta):
        constraints = [models.UniqueConstraint(fields=["charge", "number"], name="agency_attempt_once_per_number")]


class AgencyChargeEvent(AbstractChargeEvent):
    charge = models.ForeignKey(AgencyCharge, on_delete=models.PROTECT, related_name="events")


class PayoutStatus(models.TextChoices):
    """A payout as the processor reports it (Stripe's statuses)."""

    PENDING = "pending", "Pending"
    IN_TRANSIT = "in_transit", "In transit"
    PAID = "paid", "Paid"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"


class Payout(BaseModel):
    """A payout to an agency's connected account (PAY-2, PAY-4), as the processor reported it, with exactly the
    client charges it carries: read from the connected account's balance transactions (Stripe) or the sandbox's
    books, never guessed from dates. `returned_payouts` are earlier failed payouts whose funds came back to the
    balance and that this payout carries again."""

    reference = models.CharField(max_length=64, unique=True)
    agency = models.ForeignKey(
        "tenants.Agency", null=True, blank=True, on_delete=models.PROTECT, related_name="payouts"
    )
    account = models.CharField(max_length=64)
    amount_minor = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3, blank=True)
    arrival_on = models.DateField()
    status = models.CharField(max_length=12, choices=PayoutStatus.choices)
    failure_code = models.CharField(max_length=64, blank=True)
    failure_message = models.CharField(max_length=240, blank=True)
    charge_references = models.JSONField(default=list)
    returned_payouts = models.JSONField(default=list)
    reconciled = models.BooleanField(default=False)

    class Meta:
        ordering = ["-arrival_on", "-id"]
        indexes = [models.Index(fields=["agency", "arrival_on"])]


class PayoutAccountState(models.TextChoices):
    """ONB-2: where the agency's payout account stands, from the processor's account."""

    NOT_STARTED = "NOT_STARTED", "Not started"
    PENDING_VERIFICATION = "PENDING_VERIFICATION", "Pending verification"
    PAYOUTS_ENABLED = "PAYOUTS_ENABLED", "Payouts enabled"
    RESTRICTED = "RESTRICTED", "Restricted"


class PayoutAccount(models.Model):
    """The agency's connected account at the processor (Stripe Connect Express, or the sandbox's) and its
    onboarding state, as last read from the processor (ONB-2). One per agency and one agency per account."""

    agency = models.OneToOneField("tenants.Agency", on_delete=models.PROTECT, related_name="payout_account")
    provider = models.CharField(max_length=20)
    account_id = models.CharField(max_length=64, unique=True)
    state = models.CharField(max_length=24, choices=PayoutAccountState.choices, default=PayoutAccountState.NOT_STARTED)
    details_submitted = models.BooleanField(default=False)
    transfers_enabled = models.BooleanField(default=False)
    payouts_enabled = models.BooleanField(default=False)
    requirements = models.JSONField(default=dict)
    bank_last4 = models.CharField(max_length=4, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    enabled_at = models.DateTimeField(null=True, blank=True)


class SandboxConnectedAccount(models.Model):
    """The sandbox processor's connected accounts (its "Express" accounts) and their onboarding."""

    reference = models.CharField(max_length=64, unique=True)
    email = models.CharField(max_length=254, blank=True)
    name = models.CharField(max_length=200, blank=True)
    state = models.CharField(max_length=24, default="not_started")
    state_since = models.DateField(null=True, blank=True)
    bank_account = models.CharField(max_length=34, blank=True)
    bank_status = models.CharField(max_length=10, default="new")  # new | errored


class SandboxAccountLink(models.Model):
    """A one-time, expiring link to the sandbox's hosted onboarding page (Stripe's Account Links)."""

    token = models.CharField(max_length=64, unique=True)
    account = models.CharField(max_length=64)
    return_url = models.CharField(max_length=500)
    refresh_url = models.CharField(max_length=500)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
