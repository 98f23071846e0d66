"""Writes on agencies."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from core.errors import ApplicationError
from tenants.models import Agency, Domain, slug_validator, validate_time_zone


def agency_domain(slug: str) -> str:
    return f"{slug}.{settings.BASE_DOMAIN}"


def agency_create(*, slug: str, name: str, time_zone: str = "UTC", currency: str = "USD",
                  billing_day: int = 1) -> Agency:
    """Create an agency, its schema (migrated) and its domain `<slug>.<BASE_DOMAIN>`."""
    errors: dict[str, list[str]] = {}
    try:
        slug_validator(slug)
    except ValidationError as exc:
        errors["slug"] = list(exc.messages)
    try:
        validate_time_zone(time_zone)
    except ValidationError as exc:
        errors["time_zone"] = list(exc.messages)
    if not 1 <= billing_day <= 28:
        errors["billing_day"] = ["The billing day must be between 1 and 28."]
    if Agency.objects.filter(schema_name=slug).exists():
        errors["slug"] = [f"An agency with the slug {slug!r} already exists."]
    if errors:
        raise ApplicationError("The agency could not be created.", fields=errors)
    with transaction.atomic():
        agency = Agency(schema_name=slug, name=name, time_zone=time_zone, currency=currency.upper(),
                        billing_day=billing_day)
        agency.save()
        Domain.objects.create(domain=agency_domain(slug), tenant=agency, is_primary=True)
    return agency
