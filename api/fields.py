"""Input fields that take JSON as it is: an integer is a JSON integer (never "12", never 12.0 — MON-1), a boolean
is true or false, a string is a string with no NUL and no lone surrogate (PostgreSQL stores neither). And input
serializers that refuse fields they do not know, so a typo is an error rather than silently ignored."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.errors import ApplicationError
from core.money import decimal_text, parse_rate_percent, parse_unit_price

MAX_SAFE_INTEGER = 2**53 - 1  # what every JSON client can represent exactly
MAX_BIGINT = 2**63 - 1


def text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "Text cannot contain NUL characters."
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "Text must be valid Unicode (no lone surrogates)."
    return None


class StrictCharField(serializers.CharField):
    default_error_messages = {"invalid": _("Enter text (a JSON string).")}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        if problem := text_problem(data):
            raise serializers.ValidationError(problem)
        return super().to_internal_value(data)


class StrictEmailField(serializers.EmailField):
    default_error_messages = {"invalid": _("Enter a valid email address.")}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 254)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str) or text_problem(data):
            self.fail("invalid")
        return super().to_internal_value(data).strip().lower()


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer. Bounds default to what PostgreSQL's bigint and JSON clients can hold."""

    default_error_messages = {"invalid": _("Enter a whole number (a JSON integer, not a string or a decimal).")}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_value", MAX_SAFE_INTEGER)
        kwargs.setdefault("min_value", -MAX_SAFE_INTEGER)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        if type(data) is not int:
            self.fail("invalid")
        return data


class AmountField(StrictIntegerField):
    """An amount in the currency's minor unit (MON-1)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("help_text", "Integer amount in the currency's minor unit (e.g. cents).")
        super().__init__(**kwargs)


RATE_PATTERN = r"^[0-9]{1,3}(\.[0-9]{1,4})?$"
UNIT_PRICE_PATTERN = r"^[0-9]{1,16}(\.[0-9]{1,12})?$"


class _ExactDecimalField(serializers.Field):
    """A decimal as a JSON string, parsed exactly (MON-2): never a JSON number, which clients read as a float."""

    pattern = ""
    example = ""
    default_error_messages = {"invalid": _("Enter the number as a JSON string, such as {example}.")}

    def parse(self, text: str) -> Decimal:
        raise NotImplementedError

    def to_internal_value(self, data: Any) -> Decimal:
        if not isinstance(data, str) or len(data) > 40 or text_problem(data):
            self.fail("invalid", example=f'"{self.example}"')
        try:
            value = self.parse(data)
        except ApplicationError as exc:
            raise serializers.ValidationError(exc.message) from None
        if not re.fullmatch(self.pattern, data):
            raise serializers.ValidationError(
                f"Write the number with digits and a decimal point only, such as {self.example}."
            )
        return value

    def to_representation(self, value: Decimal) -> str:
        return decimal_text(value)


@extend_schema_field({"type": "string", "pattern": RATE_PATTERN, "example": "8.875"})
class RatePercentField(_ExactDecimalField):
    """A tax rate: a percentage with up to 4 decimals, as a string ("8.875" is 8.875 %)."""

    pattern = RATE_PATTERN
    example = "8.875"

    def parse(self, text: str) -> Decimal:
        return parse_rate_percent(text)


@extend_schema_field({"type": "string", "pattern": UNIT_PRICE_PATTERN, "example": "0.0875"})
class UnitPriceField(_ExactDecimalField):
    """A unit price in the currency's minor unit with up to 12 decimals, as a string, like Stripe's
    `unit_amount_decimal`: "0.0875" is 0.0875 cents = 0.000875 USD a unit."""

    pattern = UNIT_PRICE_PATTERN
    example = "0.0875"

    def parse(self, text: str) -> Decimal:
        return parse_unit_price(text)


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": _("Enter true or false.")}

    def to_internal_value(self, data: Any) -> bool:
        if type(data) is not bool:
            self.fail("invalid")
        return data


class StrictDateField(serializers.DateField):
    def to_internal_value(self, data: Any):
        if not isinstance(data, str):
            self.fail("invalid", format="YYYY-MM-DD")
        return super().to_internal_value(data)


class StrictDateTimeField(serializers.DateTimeField):
    """An ISO 8601 date and time with its offset; a naive time is refused rather than guessed."""

    default_error_messages = {"naive": _("Give a date and time with a time zone offset, e.g. 2027-01-05T10:00:00Z.")}

    def to_internal_value(self, data: Any):
        if not isinstance(data, str) or text_problem(data):
            self.fail("invalid", format="ISO 8601")
        parsed = super().to_internal_value(data)
        return parsed

    def enforce_timezone(self, value):
        from django.utils import timezone

        if timezone.is_naive(value):
            self.fail("naive")
        return value


class StrictChoiceField(serializers.ChoiceField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str) or text_problem(data):
            self.fail(
                "invalid_choice",
                input=str(data)[:50] if isinstance(data, str) and not text_problem(data) else "this value",
            )
        return super().to_internal_value(data)


class StrictUUIDField(serializers.UUIDField):
    def to_internal_value(self, data: Any):
        if not isinstance(data, str):
            self.fail("invalid", value=str(data)[:50])
        return super().to_internal_value(data)


class StrictListField(serializers.ListField):
    default_error_messages = {"not_a_list": _("Expected a list of items.")}

    def to_internal_value(self, data: Any):
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        return super().to_internal_value(data)


class StrictSerializer(serializers.Serializer):
    """An input serializer: a JSON object with only the declared keys."""

    default_error_messages = {"invalid": _("Expected a JSON object.")}

    def to_internal_value(self, data: Any):
        if not isinstance(data, Mapping):
            raise serializers.ValidationError({"non_field_errors": [self.error_messages["invalid"]]}, code="invalid")
        unknown = sorted(str(key)[:60] for key in data if key not in self.fields or self.fields[key].read_only)
        if unknown:
            raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
        return super().to_internal_value(data)


@extend_schema_field(OpenApiTypes.STR)
class DisplayField(serializers.Field):
    """Output only: a model choice's human label."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value: Any) -> str:
        return str(value)


def pattern_field(pattern: str, message: str, **kwargs: Any) -> StrictCharField:
    """A string that must match `pattern` (documented as the schema's pattern)."""
    from django.core.validators import RegexValidator

    return StrictCharField(validators=[RegexValidator(pattern, message)], **kwargs)


SLUG_PATTERN = r"^[a-z][a-z0-9]{1,39}$"
CODE_PATTERN = r"^[-a-zA-Z0-9_]+$"
URL_PATTERN = r"^https?://[^\s/?#]+[^\s]*$"


class EmptyInput(StrictSerializer):
    """No body, or an empty JSON object."""


@extend_schema_field({"type": "string", "example": "8.875"})
class DecimalTextField(serializers.Field):
    """Output only: an exact decimal as a string without trailing zeros ("8.875", "0.0875", "100")."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value: Decimal) -> str:
        return decimal_text(value)
