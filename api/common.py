"""Pieces shared by the API views: path ids, month filters, amounts hidden from status-only roles."""

from __future__ import annotations

import re
import uuid
from datetime import date
from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import NotFound

from accounts.permissions import Capability, has_capability
from core.money import decimal_text, unit_minor_or_none
from tenants.selectors import agency_business_date


def uuid_or_404(value: str) -> uuid.UUID:
    """Path ids are UUIDs; anything else names nothing (404, like an id of another agency)."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound() from None


def path_uuid(name: str, description: str = "") -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.UUID, OpenApiParameter.PATH, description=description)


def agency_today(request) -> date:
    return agency_business_date(request.tenant, timezone.now())


@extend_schema_field({"type": "string", "pattern": r"^\d{4}-(0[1-9]|1[0-2])$", "example": "2027-01"})
class MonthField(serializers.Field):
    """A calendar month as YYYY-MM (query filters)."""

    default_error_messages = {"invalid": "Give a month as YYYY-MM."}

    def to_internal_value(self, data: Any) -> date:
        if not isinstance(data, str) or not re.fullmatch(r"\d{4}-\d{2}", data):
            self.fail("invalid")
        try:
            return date(int(data[:4]), int(data[5:]), 1)
        except ValueError:
            self.fail("invalid")

    def to_representation(self, value: date) -> str:
        return value.strftime("%Y-%m")


class MaskedAmountField(serializers.IntegerField):
    """An amount in minor units, or null for roles that see statuses only (ROLE-1: Jr. Salesperson)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("read_only", True)
        kwargs.setdefault("help_text", "Minor units; null when the caller's role sees statuses only.")
        super().__init__(**kwargs)

    def get_attribute(self, instance: Any) -> Any:
        request = self.context.get("request")
        if request is None or not has_capability(request.user, Capability.VIEW_AMOUNTS):
            return None
        return super().get_attribute(instance)


@extend_schema_field({"type": "string", "nullable": True, "example": "0.0875"})
class MaskedDecimalField(MaskedAmountField):
    """An exact amount in minor units that may have a fraction of one (MON-2), as a string; null for roles
    that see statuses only."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", 'Minor units with up to 12 decimals, as a string ("0.0875" cents).')
        super().__init__(**kwargs)

    def to_representation(self, value: Any) -> str:
        return decimal_text(value)


class MaskedWholeMinorField(MaskedAmountField):
    """The same amount as a whole number of minor units; null when it has a fraction (then read the decimal
    field), as Stripe's `unit_amount` beside `unit_amount_decimal`."""

    def get_attribute(self, instance: Any) -> Any:
        value = super().get_attribute(instance)
        return None if value is None else unit_minor_or_none(value)

    def to_representation(self, value: Any) -> int:
        return int(value)


def query_filters(serializer_class: type[serializers.Serializer], request) -> dict:
    """Validate query parameters with a filter serializer; unknown parameters are ignored, bad values are 400."""
    if not request.query_params:
        return {}  # nothing to validate (the usual first page): no serializer to build
    known = {name: request.query_params.get(name) for name in serializer_class().fields if name in request.query_params}
    serializer = serializer_class(data=known)
    serializer.is_valid(raise_exception=True)
    return {key: value for key, value in serializer.validated_data.items() if value not in (None, "")}


def validated(serializer_class: type[serializers.Serializer], request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class NextInvoiceOutput(serializers.Serializer):
    """An account's next invoice with a given billing schedule (CYC-1): read before changing a billing day."""

    build_date = serializers.DateField(help_text="The day the invoice is built.")
    billing_date = serializers.DateField(help_text="Its billing date.")
    period_start = serializers.DateField(source="period.start")
    period_end = serializers.DateField(source="period.end", help_text="Exclusive: the next period's first day.")
    bridging = serializers.BooleanField(
        help_text="Shorter than a full cycle: the days between the period already billed and the new billing day, "
        "prorated by days."
    )
    days = serializers.IntegerField(help_text="Days in the period.")
    cycle_days = serializers.IntegerField(help_text="Days in the full cycle from the period's start.")


@extend_schema_field(OpenApiTypes.STR)
class DaysListField(serializers.Field):
    """Query parameter: days of the month separated by commas ("3,26"); empty for none."""

    default_error_messages = {"invalid": "Give days from 1 to 28 separated by commas, e.g. 3,26."}

    def to_internal_value(self, data: Any) -> list[int]:
        if not isinstance(data, str) or not re.fullmatch(r"([0-9]{1,2}(,[0-9]{1,2})*)?", data):
            self.fail("invalid")
        days = [int(part) for part in data.split(",") if part]
        if any(not 1 <= day <= 28 for day in days):
            self.fail("invalid")
        return days
