"""The public schema: agencies (tenants, TEN-1), their domains, and partner plans (PLAN-1)."""

from __future__ import annotations

import zoneinfo

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django_tenants.models import DomainMixin, TenantMixin

slug_validator = RegexValidator(
    r"^[a-z][a-z0-9]{1,39}$",
    "Use 2–40 lowercase letters or digits, starting with a letter.",
)

brand_color_validator = RegexValidator(r"^#[0-9a-fA-F]{6}$", "Use a colour such as #2f5bd3.")


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"Unknown time zone {value!r}.")


class PartnerPlan(models.Model):
    """What the platform charges an agency each month, in arrears (PLAN-1)."""

    name = models.CharField(max_length=120, unique=True)
    currency = models.CharField(max_length=3)
    package_minimum_minor = models.BigIntegerField(default=0)
    license_fee_minor = models.BigIntegerField(default=0, help_text="Per client active during the cycle.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(package_minimum_minor__gte=0), name="plan_minimum_gte_0"),
            models.CheckConstraint(condition=models.Q(license_fee_minor__gte=0), name="plan_license_fee_gte_0"),
        ]

    def __str__(self) -> str:
        return self.name


class PlanProduct(models.Model):
    """A metered product: the first `included_quantity` units of a cycle at `unit_price_decimal`, each unit
    beyond at `overage_unit_price_decimal` (see docs/decisions.md). Prices are minor units with up to 12
    decimals (MON-2, like Stripe's `unit_amount_decimal`): 0.0875 is 0.000875 USD a unit."""

    plan = models.ForeignKey(PartnerPlan, on_delete=models.CASCADE, related_name="products")
    code = models.SlugField(max_length=40)
    name = models.CharField(max_length=120)
    unit_price_decimal = models.DecimalField(max_digits=31, decimal_places=12, default=0)
    included_quantity = models.BigIntegerField(default=0)
    overage_unit_price_decimal = models.DecimalField(max_digits=31, decimal_places=12, default=0)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "code"], name="plan_product_code_unique"),
            models.CheckConstraint(
                condition=models.Q(
                    unit_price_decimal__gte=0, included_quantity__gte=0, overage_unit_price_decimal__gte=0
                ),
                name="plan_product_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class PlanTax(models.Model):
    """A tax or percentage fee on every line of the agency invoice."""

    plan = models.ForeignKey(PartnerPlan, on_delete=models.CASCADE, related_name="taxes")
    name = models.CharField(max_length=120)
    rate_percent = models.DecimalField(max_digits=7, decimal_places=4, help_text="Percent, up to 4 decimals (MON-2).")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(rate_percent__gte=0, rate_percent__lte=100), name="plan_tax_rate_0_100_percent"
            )
        ]


class PlanFee(models.Model):
    """A fixed monthly fee on the agency invoice (Taxes & fees category)."""

    plan = models.ForeignKey(PartnerPlan, on_delete=models.CASCADE, related_name="fees")
    name = models.CharField(max_length=120)
    amount_minor = models.BigIntegerField()

    class Meta:
        ordering = ["id"]
        constraints = [models.CheckConstraint(condition=models.Q(amount_minor__gte=0), name="plan_fee_gte_0")]


class Agency(TenantMixin):
    """A marketing agency: a tenant of the platform. `schema_name` doubles as its slug."""

    name = models.CharField(max_length=200)
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    currency = models.CharField(max_length=3, default="USD")
    billing_day = models.PositiveSmallIntegerField(default=1)
    plan = models.ForeignKey(PartnerPlan, null=True, blank=True, on_delete=models.PROTECT, related_name="agencies")
    # Stripe Connect: the agency's connected account receives its clients' charges (PAY-1); the platform
    # customer pays the agency invoice (PAY-3).
    connected_account_id = models.CharField(max_length=64, blank=True)
    platform_customer_id = models.CharField(max_length=64, blank=True)
    email = models.EmailField(blank=True)
    # Branding on invoices and pages (INV-1): logo, one brand colour, postal address.
    logo = models.FileField(upload_to="branding/", blank=True)
    brand_color = models.CharField(max_length=7, default="#2f5bd3", validators=[brand_color_validator])
    address = models.TextField(blank=True)
    # The billing clock: the last agency-local day whose pipeline has finished (CYC-5).
    clock_date = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    auto_create_schema = True
    auto_drop_schema = False

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(billing_day__gte=1, billing_day__lte=28), name="agency_billing_day_1_28"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def slug(self) -> str:
        return self.schema_name

    @property
    def invoice_prefix(self) -> str:
        return self.schema_name.upper()[:12]


class Domain(DomainMixin):
    pass
