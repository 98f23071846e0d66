"""The agency's Billing Setup: billing day, time zone, grace period, threshold, notice timings, retries,
billing-category order and branding. One service, validated as a whole, audited."""

from __future__ import annotations

import zoneinfo

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction

from accounts.models import User, audit_record
from billing.models import BillingSettings
from core.categories import validate_category_order
from core.errors import ApplicationError
from core.images import MAX_UPLOAD_BYTES, LogoRefused, logo_normalized
from tenants.models import Agency, brand_color_validator

SETTINGS_FIELDS = (
    "grace_period_days",
    "overdue_threshold_minor",
    "statement_days_before",
    "statement_second_after_days",
    "statement_third_after_days",
    "overdue_second_after_days",
    "overdue_third_after_days",
    "retries_enabled",
    "category_order",
)
AGENCY_FIELDS = ("billing_day", "time_zone", "brand_color", "address", "email")
MAX_DAYS = 60


def _days(value: object, field: str, errors: dict[str, list[str]], *, optional: bool = False, minimum: int = 0) -> None:
    if value is None and optional:
        return
    if type(value) is not int or not minimum <= value <= MAX_DAYS:
        errors[field] = [f"Enter a whole number of days from {minimum} to {MAX_DAYS}."]


def billing_setup_update(*, agency: Agency, actor: User, values: dict) -> BillingSettings:
    """Change the settings named in `values` (keys of SETTINGS_FIELDS and AGENCY_FIELDS). Nothing changes
    unless every value is valid. Changes apply from the next day the billing clock runs."""
    errors: dict[str, list[str]] = {}
    unknown = set(values) - set(SETTINGS_FIELDS) - set(AGENCY_FIELDS)
    if unknown:
        raise ApplicationError(f"Unknown settings: {', '.join(sorted(unknown))}.")
    if "grace_period_days" in values:
        _days(values["grace_period_days"], "grace_period_days", errors)
    if "statement_days_before" in values:
        # NOT-1: "N days before the billing date" — 0 would send it on the billing date itself.
        _days(values["statement_days_before"], "statement_days_before", errors, minimum=1)
    for field in (
        "statement_second_after_days",
        "statement_third_after_days",
        "overdue_second_after_days",
        "overdue_third_after_days",
    ):
        if field in values:
            _days(values[field], field, errors, optional=True)
            if values[field] == 0:
                errors[field] = ["Leave empty for no such notice, or give at least 1 day."]
    for second, third in (
        ("statement_second_after_days", "statement_third_after_days"),
        ("overdue_second_after_days", "overdue_third_after_days"),
    ):
        if values.get(third) is not None and values.get(second, "unset") is None:
            errors.setdefault(third, []).append("A third notice needs a second one.")
    if "overdue_threshold_minor" in values:
        value = values["overdue_threshold_minor"]
        if type(value) is not int:
            errors["overdue_threshold_minor"] = ["Enter an amount such as 100.00."]
        elif value < 0:
            errors["overdue_threshold_minor"] = ["The threshold cannot be negative."]
    if "retries_enabled" in values and type(values["retries_enabled"]) is not bool:
        errors["retries_enabled"] = ["Choose on or off."]
    if "category_order" in values:
        try:
            validate_category_order(values["category_order"])
        except ApplicationError as exc:
            errors["category_order"] = exc.fields.get("category_order", [exc.message])
    if "billing_day" in values and (type(values["billing_day"]) is not int or not 1 <= values["billing_day"] <= 28):
        errors["billing_day"] = ["The billing day must be between 1 and 28."]
    if "time_zone" in values and values["time_zone"] not in zoneinfo.available_timezones():
        errors["time_zone"] = ["Choose a time zone such as America/New_York."]
    if "brand_color" in values:
        try:
            brand_color_validator(values["brand_color"])
        except ValidationError as exc:
            errors["brand_color"] = list(exc.messages)
    if errors:
        raise ApplicationError("Please correct the highlighted fields.", fields=errors)
    with transaction.atomic():
        settings, _ = BillingSettings.objects.get_or_create(singleton=True)
        settings = BillingSettings.objects.select_for_update().get(pk=settings.pk)
        locked_agency = Agency.objects.select_for_update().get(pk=agency.pk)
        before, after = {}, {}
        for field in SETTINGS_FIELDS:
            if field in values and getattr(settings, field) != values[field]:
                before[field], after[field] = getattr(settings, field), values[field]
                setattr(settings, field, values[field])
        agency_changes = {}
        for field in AGENCY_FIELDS:
            if field in values and getattr(locked_agency, field) != values[field]:
                before[field], after[field] = getattr(locked_agency, field), values[field]
                agency_changes[field] = values[field]
        if not after:
            return settings
        settings.save()
        if agency_changes:
            Agency.objects.filter(pk=agency.pk).update(**agency_changes)
            for field, value in agency_changes.items():
                setattr(agency, field, value)
        audit_record(actor=actor, action="billing_setup.update", obj=settings, before=before, after=after)
    return settings


def agency_logo_set(*, agency: Agency, actor: User, upload) -> Agency:
    """Store a new logo for pages and invoice PDFs: a PNG or JPEG of at most 1 MB, decoded once under bounds and
    stored re-encoded as a PNG (core/images.py). SVG is refused: the PDF renderer fetches nothing from user
    content, and a vector logo is a document that can refer to files (docs/decisions.md)."""
    if upload.size > MAX_UPLOAD_BYTES:
        raise LogoRefused("The logo must be at most 1 MB.", fields={"logo": ["At most 1 MB."]})
    upload.seek(0)
    data = upload.read(MAX_UPLOAD_BYTES + 1)
    upload.seek(0)
    stored = logo_normalized(data)
    with transaction.atomic():
        previous = agency.logo.name if agency.logo else ""
        agency.logo.save(f"{agency.schema_name}/logo.png", ContentFile(stored), save=False)
        Agency.objects.filter(pk=agency.pk).update(logo=agency.logo.name)
        audit_record(
            actor=actor, action="branding.logo", obj=agency, before={"logo": previous}, after={"logo": agency.logo.name}
        )
    return agency
