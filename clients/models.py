"""The agency's clients and their billing configuration (agency schema, PLAN-2, PLAN-4, CYC-1, CYC-4)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

from core.models import BaseModel
from core.money import format_rate

BILLING_DAYS = list(range(1, 29))


class TaxRate(BaseModel):
    """A tax the agency charges its clients; each client selects the ones that apply to it."""

    name = models.CharField(max_length=120)
    # MON-2: a percentage with up to 4 decimals, stored exactly (8.8750); docs/decisions.md, "Exact rates".
    rate_percent = models.DecimalField(max_digits=7, decimal_places=4, help_text="Percent: 8.875 = 8.875 %.")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(rate_percent__gte=0, rate_percent__lte=100), name="tax_rate_0_100_percent"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({format_rate(self.rate_percent)} %)"


class ClientGroup(BaseModel):
    """Connected client accounts (PLAN-4): billed through the primary's configuration."""

    name = models.CharField(max_length=200)
    primary = models.OneToOneField("Client", on_delete=models.PROTECT, related_name="primary_of")

    def __str__(self) -> str:
        return self.name


class Client(BaseModel):
    name = models.CharField(max_length=200)
    email = models.EmailField()
    salesperson = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="clients"
    )
    # Configuration (PLAN-2)
    license_price_minor = models.BigIntegerField(default=0)
    taxes = models.ManyToManyField(TaxRate, blank=True, related_name="clients")
    # Custom billing day instead of the agency's (CYC-1); several autopay days (CYC-4).
    billing_day = models.PositiveSmallIntegerField(null=True, blank=True)
    autopay_days = ArrayField(models.PositiveSmallIntegerField(), default=list, blank=True)
    group = models.ForeignKey(ClientGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="members")
    # Agency Invoiced (COL-1): never charged, no payment emails. Set only by billing support.
    agency_invoiced = models.BooleanField(default=False)
    agency_invoiced_reason = models.TextField(blank=True)
    provider_customer_id = models.CharField(max_length=64, blank=True)
    # Lifecycle: a client is billable from `activated_on` until `deactivated_on` (exclusive).
    activated_on = models.DateField(default=timezone.localdate)
    deactivated_on = models.DateField(null=True, blank=True)
    # DUN-1: set by the day's overdue evaluation, cleared as soon as the past-due balance drops below the
    # threshold (a payment) or nothing is past due any more.
    overdue_since = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(license_price_minor__gte=0), name="client_price_gte_0"),
            models.CheckConstraint(
                condition=models.Q(billing_day__isnull=True) | models.Q(billing_day__gte=1, billing_day__lte=28),
                name="client_billing_day_1_28",
            ),
            models.CheckConstraint(
                condition=models.Q(autopay_days__contained_by=BILLING_DAYS), name="client_autopay_days_1_28"
            ),
        ]
        # name: the Billing Overview's Client Charges page is sorted by client name; with the index a page
        # of 50 reads ~50 clients in order instead of sorting every charge of the month (docs/performance.md).
        indexes = [models.Index(fields=["salesperson"]), models.Index(fields=["name"])]

    def __str__(self) -> str:
        return self.name

    @property
    def is_group_member(self) -> bool:
        """Billed through another account of its group."""
        return self.group is not None and self.group.primary_id != self.pk


class ServiceRecurrence(models.TextChoices):
    RECURRING = "RECURRING", "Recurring monthly"
    ONE_TIME = "ONE_TIME", "One-time"


class AgencyServiceLine(BaseModel):
    """An "Agency Services" line on the client's invoice (PLAN-2). One-time lines are billed once and then
    removed automatically (`removed_at` set in the same transaction that bills them)."""

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="service_lines")
    description = models.CharField(max_length=200)
    amount_minor = models.BigIntegerField()
    recurrence = models.CharField(max_length=16, choices=ServiceRecurrence.choices, default=ServiceRecurrence.RECURRING)
    taxable = models.BooleanField(default=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    billed_on_invoice = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.CheckConstraint(condition=models.Q(amount_minor__gte=0), name="service_amount_gte_0")]

    def __str__(self) -> str:
        return self.description


class ClientUser(models.Model):
    """A client-portal login: a user of role CLIENT linked to exactly one client account (TEN-2: it sees
    that account only). The user table has no foreign key to tenant tables, so the link lives here."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="client_link")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="portal_users")
    created_at = models.DateTimeField(auto_now_add=True)
