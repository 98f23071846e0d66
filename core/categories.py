"""Billing categories (MON-4): every amount owed or paid is tagged with one."""

from __future__ import annotations

from django.db import models

from core.errors import ApplicationError


class BillingCategory(models.TextChoices):
    LICENSE = "LICENSE", "License"
    AGENCY_SERVICES = "AGENCY_SERVICES", "Agency services"
    PRODUCTS = "PRODUCTS", "Products"
    OVERAGE = "OVERAGE", "Overage"
    TAXES_FEES = "TAXES_FEES", "Taxes & fees"
    OTHER = "OTHER", "Other"


DEFAULT_CATEGORY_ORDER: tuple[str, ...] = tuple(BillingCategory.values)


def validate_category_order(order: list[str] | tuple[str, ...]) -> list[str]:
    if sorted(order) != sorted(DEFAULT_CATEGORY_ORDER):
        raise ApplicationError(
            "The category order must list each billing category exactly once.",
            code="invalid_category_order",
            fields={"category_order": [f"Use each of {', '.join(DEFAULT_CATEGORY_ORDER)} once."]},
        )
    return list(order)
