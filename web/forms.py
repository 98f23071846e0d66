"""Forms of the pages. They parse what people type (amounts in major units, day lists) into the types the
services take; the services decide what is valid. Either way, errors end up next to their field."""

from __future__ import annotations

import zoneinfo

from django import forms

from accounts.models import AGENCY_STAFF_ROLES, Role, User
from clients.models import BILLING_DAYS, Client, TaxRate
from core.categories import DEFAULT_CATEGORY_ORDER, BillingCategory
from core.errors import ApplicationError
from core.money import MAX_AMOUNT_MINOR, Money, currency_exponent, format_minor
from core.parsing import whole_number
from notifications.rendering import MAX_TEMPLATE_LENGTH


class MoneyField(forms.CharField):
    """An amount typed in major units ("199.00") → integer minor units. Never a float (MON-1)."""

    def __init__(self, *, currency: str = "USD", allow_negative: bool = False, **kwargs):
        self.currency, self.allow_negative = currency, allow_negative
        kwargs.setdefault("widget", forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}))
        super().__init__(**kwargs)

    def to_python(self, value):
        text = super().to_python(value).replace(",", "").strip()
        if text in self.empty_values:
            return None
        example = "199" if currency_exponent(self.currency) == 0 else "199.00"
        try:
            amount = Money.from_decimal(text, self.currency).amount_minor
        except ApplicationError as exc:
            if exc.code == "amount_too_large":
                largest = format_minor(MAX_AMOUNT_MINOR, self.currency)
                raise forms.ValidationError(f"Enter an amount of at most {largest}.", code="too_large") from None
            if "decimal places" in exc.message:
                raise forms.ValidationError(
                    f"Use at most {currency_exponent(self.currency)} decimal places.", code="precision"
                ) from None
            raise forms.ValidationError(f"Enter an amount such as {example}.", code="invalid") from None
        if amount < 0 and not self.allow_negative:
            raise forms.ValidationError("The amount cannot be negative.", code="negative")
        return amount


class ServiceForm(forms.Form):
    """Maps a service's ApplicationError fields onto this form's fields."""

    field_map: dict[str, str] = {}

    def apply_error(self, exc: ApplicationError) -> None:
        placed = False
        for name, messages in exc.fields.items():
            target = self.field_map.get(name, name)
            if target in self.fields:
                for message in messages:
                    self.add_error(target, message)
                placed = True
        if not placed:
            self.add_error(None, exc.message)


def day_choices(blank: str | None = None) -> list[tuple[str, str]]:
    choices = [(str(d), str(d)) for d in BILLING_DAYS]
    return [("", blank), *choices] if blank is not None else choices


class ClientConfigForm(ServiceForm):
    field_map = {"license_price_minor": "license_price"}

    license_price = MoneyField(label="Monthly license price", required=True)
    taxes = forms.ModelMultipleChoiceField(
        queryset=TaxRate.objects.none(), required=False, widget=forms.CheckboxSelectMultiple, label="Taxes that apply"
    )
    billing_day = forms.TypedChoiceField(label="Billing day", choices=(), coerce=int, empty_value=None, required=False)
    autopay_days = forms.CharField(
        label="Autopay days",
        required=False,
        help_text="Several days of the month, e.g. 5, 28: the balance is split evenly "
        "across them. Leave empty to charge once on the billing day.",
    )
    salesperson = forms.ModelChoiceField(queryset=User.objects.none(), required=False, label="Salesperson")

    def __init__(self, *args, currency: str, agency_billing_day: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["license_price"] = MoneyField(label=f"Monthly license price ({currency})", currency=currency)
        self.fields["taxes"].queryset = TaxRate.objects.all()  # type: ignore[attr-defined]
        self.fields["billing_day"].choices = day_choices(f"Agency default ({agency_billing_day})")  # type: ignore[attr-defined]
        self.fields["salesperson"].queryset = User.objects.filter(  # type: ignore[attr-defined]
            role__in=AGENCY_STAFF_ROLES, is_active=True
        ).order_by("email")

    def clean_autopay_days(self) -> list[int]:
        text = self.cleaned_data.get("autopay_days") or ""
        days = []
        for part in text.replace(";", ",").split(","):
            part = part.strip()
            if not part:
                continue
            day = whole_number(part, max_digits=2)
            if day is None or not 1 <= day <= 28:
                raise forms.ValidationError("Give days from 1 to 28, separated by commas.")
            days.append(day)
        return sorted(set(days))


class ServiceLineForm(ServiceForm):
    field_map = {"amount_minor": "amount"}

    description = forms.CharField(max_length=200, label="Description")
    amount = MoneyField(label="Amount")
    one_time = forms.BooleanField(required=False, label="One-time (billed once, then removed)")
    taxable = forms.BooleanField(required=False, initial=True, label="Taxable")

    def __init__(self, *args, currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["amount"] = MoneyField(label=f"Amount ({currency})", currency=currency)


class ReasonForm(ServiceForm):
    reason = forms.CharField(label="Reason", max_length=500, widget=forms.Textarea(attrs={"rows": 2}))


class BillingSetupForm(ServiceForm):
    field_map = {"overdue_threshold_minor": "overdue_threshold"}

    billing_day = forms.TypedChoiceField(
        label="Billing day",
        choices=day_choices(),
        coerce=int,
        help_text="Day of the month the agency's cycle is billed (1–28).",
    )
    time_zone = forms.ChoiceField(label="Time zone", help_text="Billing days are this time zone's calendar days.")
    grace_period_days = forms.IntegerField(
        label="Grace period",
        min_value=0,
        max_value=60,
        help_text="Days after the billing date before an unpaid balance is overdue.",
    )
    overdue_threshold = MoneyField(
        label="Overdue threshold", help_text="An account is overdue only when its past-due balance is at least this."
    )
    statement_days_before = forms.IntegerField(
        label="Upcoming Statement", min_value=0, max_value=60, help_text="Days before the billing date."
    )
    statement_second_after_days = forms.IntegerField(
        label="Second Upcoming Statement",
        required=False,
        min_value=1,
        max_value=60,
        help_text="Days after the first; empty for none.",
    )
    statement_third_after_days = forms.IntegerField(
        label="Third Upcoming Statement",
        required=False,
        min_value=1,
        max_value=60,
        help_text="Days after the second; empty for none.",
    )
    overdue_second_after_days = forms.IntegerField(
        label="Second Account Overdue",
        required=False,
        min_value=1,
        max_value=60,
        help_text="Days after the first; empty for none.",
    )
    overdue_third_after_days = forms.IntegerField(
        label="Third Account Overdue",
        required=False,
        min_value=1,
        max_value=60,
        help_text="Days after the second; empty for none.",
    )
    retries_enabled = forms.BooleanField(label="Retry failed autopay payments (5th and 10th weekday)", required=False)
    brand_color = forms.CharField(label="Brand colour", max_length=7, widget=forms.TextInput(attrs={"type": "color"}))
    address = forms.CharField(label="Postal address", required=False, widget=forms.Textarea(attrs={"rows": 3}))
    email = forms.EmailField(label="Billing email", required=False)
    logo = forms.FileField(label="Logo (PNG, JPEG or SVG)", required=False)

    def __init__(self, *args, currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["overdue_threshold"] = MoneyField(
            label=f"Overdue threshold ({currency})",
            currency=currency,
            help_text="An account is overdue only when its past-due balance is at least this.",
        )
        self.fields["time_zone"].choices = [(z, z) for z in sorted(zoneinfo.available_timezones())]  # type: ignore[attr-defined]
        for position in range(1, len(DEFAULT_CATEGORY_ORDER) + 1):
            self.fields[f"category_{position}"] = forms.ChoiceField(
                label=f"{position}.", choices=BillingCategory.choices
            )

    def category_fields(self):
        return [self[f"category_{i}"] for i in range(1, len(DEFAULT_CATEGORY_ORDER) + 1)]

    def apply_error(self, exc: ApplicationError) -> None:
        if "category_order" in exc.fields:
            self.add_error("category_1", exc.fields.pop("category_order")[0])
        super().apply_error(exc)


class TemplateForm(ServiceForm):
    subject = forms.CharField(
        label="Subject",
        max_length=500,
        required=False,
        widget=forms.TextInput(attrs={"class": "wide", "spellcheck": "false"}),
    )
    body = forms.CharField(
        label="Body",
        max_length=MAX_TEMPLATE_LENGTH,
        required=False,
        widget=forms.Textarea(attrs={"rows": 14, "spellcheck": "false", "class": "code"}),
    )
    client = forms.ModelChoiceField(queryset=Client.objects.none(), required=False, label="Preview with client")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["client"].queryset = Client.objects.order_by("name")  # type: ignore[attr-defined]


class InviteForm(ServiceForm):
    email = forms.CharField(label="Email", max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "off"}))
    first_name = forms.CharField(label="First name", max_length=150, required=False)
    last_name = forms.CharField(label="Last name", max_length=150, required=False)
    role = forms.ChoiceField(label="Role")
    client = forms.ModelChoiceField(queryset=Client.objects.none(), required=False, label="Client (client users)")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = [
            ("", "Choose a role"),
            *(
                (r.value, r.label)
                for r in Role  # type: ignore[attr-defined]
                if r in AGENCY_STAFF_ROLES or r == Role.CLIENT
            ),
        ]
        self.fields["client"].queryset = Client.objects.order_by("name")  # type: ignore[attr-defined]


class RoleForm(ServiceForm):
    role = forms.ChoiceField(label="Role")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = [(r.value, r.label) for r in Role if r in AGENCY_STAFF_ROLES]  # type: ignore[attr-defined]


# Stripe's documented test payment methods, as the sandbox processor understands them.
SANDBOX_METHODS = [
    ("pm_card_visa", "Visa ···· 4242 — pays"),
    ("pm_card_mastercard", "Mastercard ···· 4444 — pays"),
    ("pm_card_amex", "American Express ···· 8431 — pays"),
    ("pm_card_visa_chargeDeclined", "Visa ···· 0002 — declines"),
    ("pm_card_visa_chargeDeclinedInsufficientFunds", "Visa ···· 9995 — declines, insufficient funds"),
    ("sepa:DE89370400440532013000", "SEPA debit DE89 ···· 3000 — settles"),
    ("ach:110000000:000123456789", "ACH debit ···· 6789 — settles"),
]


class SandboxPaymentMethodForm(ServiceForm):
    field_map = {"token": "method", "payment_method": "method"}

    method = forms.ChoiceField(label="Test payment method", choices=SANDBOX_METHODS, widget=forms.RadioSelect)


class StripePaymentMethodForm(ServiceForm):
    """What Stripe Elements posts: the PaymentMethod id it created in the browser, never card details."""

    field_map = {"token": "payment_method_id", "payment_method": "payment_method_id"}

    payment_method_id = forms.RegexField(regex=r"^pm_[A-Za-z0-9_]+$", max_length=255, widget=forms.HiddenInput)


class SearchForm(forms.Form):
    q = forms.CharField(label="Client name or email", max_length=120, required=False)
