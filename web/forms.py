"""Forms of the pages. They parse what people type (amounts in major units, day lists) into the types the
services take; the services decide what is valid. Either way, errors end up next to their field."""

from __future__ import annotations

import re
import zoneinfo
from decimal import Decimal

from django import forms

from accounts.models import AGENCY_STAFF_ROLES, Role, User
from clients.models import BILLING_DAYS, Client, TaxRate
from clients.services import MAX_AUTOPAY_DAYS
from core.categories import DEFAULT_CATEGORY_ORDER, BillingCategory
from core.errors import ApplicationError
from core.money import MAX_AMOUNT_MINOR, Money, currency_exponent, format_minor, parse_rate_percent
from core.parsing import whole_number
from integrations.models import EventKind
from notifications.rendering import MAX_TEMPLATE_LENGTH

# Amounts are typed the same way whatever the browser's language: ASCII digits, an optional dot and decimals,
# optionally grouped by commas in threes ("1,250.00"). No exponent ("1e5"), no decimal comma ("1,5"), no other
# script's digits: each would otherwise be read as a different number than the one meant.
_AMOUNT_SYNTAX = re.compile(r"-?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?")
_DECIMAL_COMMA = re.compile(r"-?[0-9]+,[0-9]{1,2}")
# The largest amount a page accepts, in major units: a round limit people can read (the API takes up to 2^53 - 1
# minor units; forms are for people typing prices).
FORM_MAX_MAJOR = 1_000_000_000


class MoneyField(forms.CharField):
    """An amount typed in major units ("199.00") → integer minor units. Never a float (MON-1)."""

    def __init__(self, *, currency: str = "USD", allow_negative: bool = False, **kwargs):
        self.currency, self.allow_negative = currency, allow_negative
        kwargs.setdefault("widget", forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}))
        super().__init__(**kwargs)

    def to_python(self, value):
        text = super().to_python(value).strip()
        if text in self.empty_values:
            return None
        exponent = currency_exponent(self.currency)
        example = "199" if exponent == 0 else "199.00"
        if not _AMOUNT_SYNTAX.fullmatch(text):
            if exponent and _DECIMAL_COMMA.fullmatch(text):
                raise forms.ValidationError(
                    f"Use a dot for decimals, such as {text.replace(',', '.')}.", code="decimal_comma"
                )
            raise forms.ValidationError(f"Enter an amount such as {example}.", code="invalid")
        try:
            amount = Money.from_decimal(text.replace(",", ""), self.currency).amount_minor
        except ApplicationError as exc:
            if exc.code == "amount_too_large":
                amount = MAX_AMOUNT_MINOR + 1
            elif "decimal places" in exc.message:
                raise forms.ValidationError(
                    "Use whole amounts, without decimals."
                    if exponent == 0
                    else f"Use at most {exponent} decimal places, such as {example}.",
                    code="precision",
                ) from None
            else:
                raise forms.ValidationError(f"Enter an amount such as {example}.", code="invalid") from None
        if amount < 0 and not self.allow_negative:
            raise forms.ValidationError("The amount cannot be negative.", code="negative")
        largest = FORM_MAX_MAJOR * 10**exponent - 1
        if abs(amount) > largest:
            raise forms.ValidationError(
                f"Enter an amount of at most {format_minor(largest, self.currency)}.", code="too_large"
            )
        return amount


class ServiceForm(forms.Form):
    """Maps a service's ApplicationError fields onto this form's fields."""

    field_map: dict[str, str] = {}

    def apply_error(self, exc: ApplicationError) -> None:
        """Each field's message next to its field; messages about fields this form does not show, or the
        error's own message when it names no field, above the form (once)."""
        unplaced = []
        for name, messages in exc.fields.items():
            target = self.field_map.get(name, name)
            for message in messages:
                if target in self.fields:
                    self.add_error(target, message)
                else:
                    unplaced.append(message)
        if not exc.fields:
            unplaced.append(exc.message)
        for message in dict.fromkeys(unplaced):
            self.add_error(None, message)


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
        help_text=f"Up to {MAX_AUTOPAY_DAYS} days of the month, e.g. 5, 28: the balance is split evenly "
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
        # Duplicates and the limit are the service's rule (the API's too): its message lands next to this field.
        return days


class ClientAccountForm(ServiceForm):
    """The client's name and the email its notices and invoices go to."""

    name = forms.CharField(label="Client name", max_length=200, error_messages={"required": "A name is required."})
    email = forms.CharField(
        label="Billing email",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
        error_messages={"required": "An email address is required."},
        help_text="Invoices and payment notices go here.",
    )


class ClientCreateForm(ClientAccountForm, ClientConfigForm):
    """A new client with its configuration in one step (the same service and rules as the API's create)."""

    field_order = ["name", "email", "license_price", "salesperson", "billing_day", "autopay_days", "taxes"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        price = self.fields["license_price"]
        price.required = False
        price.help_text = (
            "What the client pays each month. Leave empty while you agree on it: the client then needs setup."
        )

    def clean_license_price(self) -> int:
        return self.cleaned_data.get("license_price") or 0


# Percent with up to four decimals ("8.875", "4.7125"): what TaxRate stores exactly (MON-2).
_PERCENT_SYNTAX = re.compile(r"[0-9]{1,3}(?:\.[0-9]+)?")


def percent_to_rate(text: str) -> Decimal:
    """The typed percentage ("8.875", "8.875 %", "8,875" is refused) as an exact rate, or a form error that says
    what is wrong: more than 4 decimals, above 100 %, not a number."""
    text = text.strip().removesuffix("%").strip()
    if not _PERCENT_SYNTAX.fullmatch(text):
        raise forms.ValidationError("Give the rate as a percentage with at most 4 decimals, such as 8.875.")
    try:
        return parse_rate_percent(text)
    except ApplicationError as exc:
        raise forms.ValidationError(exc.message) from None


class TaxRateForm(ServiceForm):
    field_map = {"rate_percent": "rate"}

    name = forms.CharField(label="Tax name", max_length=120, error_messages={"required": "A name is required."})
    rate = forms.CharField(
        label="Rate (%)",
        max_length=20,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
        help_text="A percentage with up to 4 decimals, such as 8.875.",
        error_messages={"required": "Give the rate, such as 8.875."},
    )

    def clean_rate(self) -> Decimal:
        return percent_to_rate(self.cleaned_data["rate"])


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


def days_field(label: str, *, minimum: int, help_text: str, required: bool = True) -> forms.IntegerField:
    """A number of days, with messages in the product's words."""
    unit = "day" if minimum == 1 else "days"
    return forms.IntegerField(
        label=label,
        required=required,
        min_value=minimum,
        max_value=60,
        help_text=help_text,
        error_messages={
            "invalid": "Enter a whole number of days, such as 10.",
            "min_value": f"Give at least {minimum} {unit}." if minimum else "The number of days cannot be negative.",
            "max_value": "Give at most 60 days.",
            "required": "Give a number of days.",
        },
    )


# The zones most agencies pick, shown first; every other IANA zone follows, grouped by region. Aliases and
# technical entries ("Factory", "localtime", "posix/…", "Etc/GMT+5", "US/Eastern") are left out.
COMMON_TIME_ZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
    "America/Toronto",
    "America/Vancouver",
    "America/Mexico_City",
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Madrid",
    "Europe/Amsterdam",
    "Europe/Stockholm",
    "Africa/Johannesburg",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
    "UTC",
)
_REGIONS = ("Africa", "America", "Antarctica", "Asia", "Atlantic", "Australia", "Europe", "Indian", "Pacific")


def _zone_label(zone: str) -> str:
    if zone == "UTC":
        return "UTC (Coordinated Universal Time)"
    place = zone.split("/", 1)[1].replace("_", " ").replace("/", " – ")
    return f"{place} ({zone})"


def time_zone_choices() -> list:
    """(group, [(zone, label)]) choices for a select: common zones first, then every region's zones."""
    available = zoneinfo.available_timezones()
    groups: dict[str, list[tuple[str, str]]] = {region: [] for region in _REGIONS}
    for zone in sorted(available):
        region = zone.split("/", 1)[0]
        if region in groups and "/" in zone:
            groups[region].append((zone, _zone_label(zone)))
    common = [(zone, _zone_label(zone)) for zone in COMMON_TIME_ZONES if zone in available]
    return [("Common time zones", common), *((region, zones) for region, zones in groups.items() if zones)]


def category_order_problem(order: list[str]) -> str | None:
    """The duplicated and missing billing categories, in the product's words; None when each is used once."""
    labels = dict(BillingCategory.choices)
    twice = [labels[c] for c in dict.fromkeys(order) if order.count(c) > 1]
    missing = [labels[c] for c in DEFAULT_CATEGORY_ORDER if c not in order]
    if not twice and not missing:
        return None
    parts = []
    if twice:
        parts.append(f"{' and '.join(twice)} {'is' if len(twice) == 1 else 'are'} chosen more than once")
    if missing:
        parts.append(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing")
    return f"Use each category once: {'; '.join(parts)}."


class BillingSetupForm(ServiceForm):
    billing_day = forms.TypedChoiceField(
        label="Billing day",
        choices=day_choices(),
        coerce=int,
        help_text="Day of the month the agency's cycle is billed (1–28).",
    )
    time_zone = forms.ChoiceField(label="Time zone", help_text="Billing days are this time zone's calendar days.")
    grace_period_days = days_field(
        "Grace period", minimum=0, help_text="Days after the billing date before an unpaid balance is overdue."
    )
    overdue_threshold = MoneyField(
        label="Overdue threshold", help_text="An account is overdue only when its past-due balance is at least this."
    )
    statement_days_before = days_field(
        "Upcoming Statement", minimum=1, help_text="Days before the billing date (at least 1)."
    )
    statement_second_after_days = days_field(
        "Second Upcoming Statement", minimum=1, required=False, help_text="Days after the first; empty for none."
    )
    statement_third_after_days = days_field(
        "Third Upcoming Statement", minimum=1, required=False, help_text="Days after the second; empty for none."
    )
    overdue_second_after_days = days_field(
        "Second Account Overdue", minimum=1, required=False, help_text="Days after the first; empty for none."
    )
    overdue_third_after_days = days_field(
        "Third Account Overdue", minimum=1, required=False, help_text="Days after the second; empty for none."
    )
    retries_enabled = forms.BooleanField(label="Retry failed autopay payments (5th and 10th weekday)", required=False)
    brand_color = forms.CharField(label="Brand colour", max_length=7, widget=forms.TextInput(attrs={"type": "color"}))
    address = forms.CharField(label="Postal address", required=False, widget=forms.Textarea(attrs={"rows": 3}))
    email = forms.EmailField(
        label="Billing email",
        required=False,
        error_messages={"invalid": "Enter an email address such as billing@agency.example."},
    )
    logo = forms.FileField(label="Logo (PNG or JPEG)", required=False)

    def __init__(self, *args, currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["overdue_threshold"] = MoneyField(
            label=f"Overdue threshold ({currency})",
            currency=currency,
            help_text="An account is overdue only when its past-due balance is at least this.",
        )
        self.fields["time_zone"].choices = time_zone_choices()  # type: ignore[attr-defined]
        self.fields["time_zone"].error_messages["invalid_choice"] = "Choose a time zone from the list."
        for position in range(1, len(DEFAULT_CATEGORY_ORDER) + 1):
            self.fields[f"category_{position}"] = forms.ChoiceField(
                label=f"{position}.", choices=BillingCategory.choices
            )

    def category_fields(self):
        return [self[f"category_{i}"] for i in range(1, len(DEFAULT_CATEGORY_ORDER) + 1)]

    def clean(self):
        data = super().clean()
        names = [f"category_{i}" for i in range(1, len(DEFAULT_CATEGORY_ORDER) + 1)]
        order = [data.get(name) for name in names]
        if all(order) and (problem := category_order_problem(order)):  # type: ignore[arg-type]
            # The message goes next to each repeated choice after its first use.
            seen: set[str] = set()
            for name, category in zip(names, order, strict=True):
                if category in seen:
                    self.add_error(name, problem)
                seen.add(category)  # type: ignore[arg-type]
        return data

    field_map = {"overdue_threshold_minor": "overdue_threshold", "category_order": "category_1"}


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
    ("pm_card_authenticationRequired", "Visa ···· 3184 — asks for 3-D Secure on every payment"),
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


class ExportRangeForm(ServiceForm):
    """A date range for the CSV export of invoices or charges (at most a year, so one download stays small)."""

    MAX_DAYS = 366

    kind = forms.ChoiceField(
        label="Export", choices=[("invoices", "Invoices"), ("charges", "Charges")], initial="invoices"
    )
    start = forms.DateField(
        label="From",
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter a date such as 2027-01-31.", "required": "Give the first day."},
    )
    end = forms.DateField(
        label="To (included)",
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter a date such as 2027-01-31.", "required": "Give the last day."},
    )

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end:
            if end < start:
                self.add_error("end", "The last day cannot be before the first.")
            elif (end - start).days >= self.MAX_DAYS:
                self.add_error("end", "Export at most a year at a time.")
        return data


class ReconciliationRangeForm(forms.Form):
    """The collection days a reconciliation covers (the agencies' own days), at most a year."""

    MAX_DAYS = 366

    date_from = forms.DateField(
        label="Collected from",
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter a date such as 2027-01-31.", "required": "Give the first day."},
    )
    date_to = forms.DateField(
        label="To (included)",
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter a date such as 2027-01-31.", "required": "Give the last day."},
    )
    position = forms.ChoiceField(label="Position", required=False)

    def __init__(self, *args, positions=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["position"].choices = [("", "All charges"), *positions]

    def clean(self):
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end:
            if end < start:
                self.add_error("date_to", "The last day cannot be before the first.")
            elif (end - start).days >= self.MAX_DAYS:
                self.add_error("date_to", "At most a year at a time.")
        return data


class AuditFilterForm(forms.Form):
    """The audit trail's filters: one action from the pick-list, and a range of days (UTC)."""

    action = forms.ChoiceField(label="Action", required=False)
    start = forms.DateField(
        label="From",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter a date such as 2027-01-31."},
    )
    end = forms.DateField(
        label="To",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter a date such as 2027-01-31."},
    )

    def __init__(self, *args, actions: list[tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["action"].choices = [("", "Every action"), *actions]  # type: ignore[attr-defined]

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end") and data["end"] < data["start"]:
            self.add_error("end", "The last day cannot be before the first.")
        return data


class WebhookEndpointForm(ServiceForm):
    """An endpoint of the agency's own systems and the events it wants (none ticked: every event)."""

    url = forms.CharField(
        label="Endpoint URL",
        max_length=500,
        widget=forms.URLInput(attrs={"placeholder": "https://hooks.example.com/agencybilling", "class": "wide"}),
        error_messages={"required": "Give the address to send events to."},
    )
    description = forms.CharField(label="Description", max_length=200, required=False)
    event_kinds = forms.MultipleChoiceField(
        label="Events to send",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every event, including kinds added later.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["event_kinds"].choices = EventKind.choices  # type: ignore[attr-defined]


class CreditNoteForm(ServiceForm):
    """A credit note (COR-1): whole lines or an amount, refunded or kept as credit, with a reason."""

    field_map = {"amount_minor": "amount"}

    outcome = forms.ChoiceField(
        label="The money",
        choices=[
            ("REFUND", "Refund it to the payment method that paid the invoice"),
            ("CREDIT", "Keep it as credit on the account (what is open, then the next invoice)"),
        ],
        widget=forms.RadioSelect,
    )
    lines = forms.MultipleChoiceField(
        label="Credit whole lines", required=False, widget=forms.CheckboxSelectMultiple, choices=[]
    )
    amount = MoneyField(label="Or credit an amount", required=False)
    reason = forms.CharField(
        label="Reason (the client sees it)", max_length=500, widget=forms.Textarea(attrs={"rows": 2})
    )

    def __init__(self, *args, currency: str, lines: list[tuple[int, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["lines"].choices = [(str(position), label) for position, label in lines]
        self.fields["amount"] = MoneyField(
            label=f"Or credit an amount ({currency})",
            currency=currency,
            required=False,
            help_text="Spread over the lines in the billing-category order.",
        )

    def clean(self):
        data = super().clean()
        if data.get("lines") and data.get("amount") is not None:
            self.add_error("amount", "Credit whole lines or an amount, not both.")
        elif not data.get("lines") and data.get("amount") is None and "amount" not in self.errors:
            self.add_error("lines", "Choose the lines to credit, or enter an amount.")
        return data
