"""Writes on agencies."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django_tenants.utils import schema_exists

from core.errors import ApplicationError
from core.money import UnknownCurrency, currency_exponent, validate_rate_bp
from tenants.models import (
    Agency,
    Domain,
    PartnerPlan,
    PlanFee,
    PlanProduct,
    PlanTax,
    slug_validator,
    validate_time_zone,
)
from tenants.selectors import agency_domain
from tenants.spares import spare_schema_claim

# Schema names and host names the platform keeps for itself.
RESERVED_SLUGS = frozenset({"public", "www", "api", "admin", "static", "media", "mail", "console", "support"})


def agency_errors(
    *, slug: str, name: str, time_zone: str = "UTC", currency: str = "USD", billing_day: int = 1
) -> dict[str, list[str]]:
    """What is wrong with these agency settings, by field (nothing: an empty dict)."""
    errors: dict[str, list[str]] = {}
    if not isinstance(name, str) or not name.strip():
        errors["name"] = ["A name is required."]
    try:
        slug_validator(slug)
    except ValidationError as exc:
        errors["slug"] = list(exc.messages)
    else:
        if slug in RESERVED_SLUGS:
            errors["slug"] = [f"{slug!r} is reserved; choose another slug."]
    try:
        validate_time_zone(time_zone)
    except ValidationError as exc:
        errors["time_zone"] = list(exc.messages)
    if type(billing_day) is not int or not 1 <= billing_day <= 28:
        errors["billing_day"] = ["The billing day must be between 1 and 28."]
    try:
        currency_exponent(currency.upper() if isinstance(currency, str) else currency)
    except UnknownCurrency as exc:
        errors["currency"] = exc.fields["currency"]
    # A schema without its agency row (left by a failed clean-up, or restored from a backup) is taken too:
    # creating the agency over it would hand the new agency someone else's data.
    if "slug" not in errors and (Agency.objects.filter(schema_name=slug).exists() or schema_exists(slug)):
        errors["slug"] = [f"An agency with the slug {slug!r} already exists."]
    return errors


def agency_create(
    *, slug: str, name: str, time_zone: str = "UTC", currency: str = "USD", billing_day: int = 1
) -> Agency:
    """Create an agency, its schema (migrated) and its domain `<slug>.<BASE_DOMAIN>`. `tenants.onboarding.
    agency_onboard` is the product's way in: it adds the plan and the first Administrator."""
    errors = agency_errors(slug=slug, name=name, time_zone=time_zone, currency=currency, billing_day=billing_day)
    if errors:
        raise ApplicationError("The agency could not be created.", fields=errors)
    with transaction.atomic():
        agency = Agency(
            schema_name=slug, name=name.strip(), time_zone=time_zone, currency=currency.upper(), billing_day=billing_day
        )
        # A spare schema migrated ahead of time becomes the agency's (tenants/spares.py); else it is migrated now.
        if settings.TENANT_SPARE_SCHEMAS and spare_schema_claim(slug=slug):
            agency.auto_create_schema = False
        agency.save()
        Domain.objects.create(domain=agency_domain(slug), tenant=agency, is_primary=True)
        if settings.TENANT_SPARE_SCHEMAS:
            transaction.on_commit(_spares_refill_later)
    return agency


def _spares_refill_later() -> None:
    from tenants.tasks import spare_schemas_refill

    spare_schemas_refill.delay()


def _amount_errors(value: object, field: str, errors: dict[str, list[str]]) -> None:
    if type(value) is not int:
        errors.setdefault(field, []).append("Enter a whole number of minor units (e.g. cents).")
    elif value < 0:
        errors.setdefault(field, []).append("The amount cannot be negative.")


def partner_plan_create(
    *,
    name: str,
    currency: str,
    package_minimum_minor: int,
    license_fee_minor: int,
    products: list[dict] | None = None,
    taxes: list[dict] | None = None,
    fees: list[dict] | None = None,
) -> PartnerPlan:
    """Create a partner plan (PLAN-1). products: {code, name, unit_price_minor, included_quantity,
    overage_unit_price_minor}; taxes: {name, rate_bp}; fees: {name, amount_minor}."""
    errors: dict[str, list[str]] = {}
    if not name or not name.strip():
        errors["name"] = ["A name is required."]
    try:
        currency_exponent(currency)
    except UnknownCurrency as exc:
        errors["currency"] = exc.fields["currency"]
    _amount_errors(package_minimum_minor, "package_minimum_minor", errors)
    _amount_errors(license_fee_minor, "license_fee_minor", errors)
    codes = set()
    for i, product in enumerate(products or []):
        code = product.get("code", "")
        if not code or code in codes:
            errors.setdefault(f"products[{i}].code", []).append("Each product needs its own code.")
        codes.add(code)
        for key in ("unit_price_minor", "included_quantity", "overage_unit_price_minor"):
            _amount_errors(product.get(key, 0), f"products[{i}].{key}", errors)
    for i, tax in enumerate(taxes or []):
        try:
            validate_rate_bp(tax.get("rate_bp"))
        except ApplicationError:
            errors.setdefault(f"taxes[{i}].rate_bp", []).append("A tax rate must be between 0 and 100 %.")
    for i, fee in enumerate(fees or []):
        _amount_errors(fee.get("amount_minor"), f"fees[{i}].amount_minor", errors)
    if errors:
        raise ApplicationError("The partner plan could not be created.", fields=errors)
    with transaction.atomic():
        plan = PartnerPlan.objects.create(
            name=name.strip(),
            currency=currency,
            package_minimum_minor=package_minimum_minor,
            license_fee_minor=license_fee_minor,
        )
        PlanProduct.objects.bulk_create(
            PlanProduct(
                plan=plan,
                code=p["code"],
                name=p.get("name", p["code"]),
                unit_price_minor=p.get("unit_price_minor", 0),
                included_quantity=p.get("included_quantity", 0),
                overage_unit_price_minor=p.get("overage_unit_price_minor", 0),
            )
            for p in products or []
        )
        PlanTax.objects.bulk_create(PlanTax(plan=plan, name=t["name"], rate_bp=t["rate_bp"]) for t in taxes or [])
        PlanFee.objects.bulk_create(
            PlanFee(plan=plan, name=f["name"], amount_minor=f["amount_minor"]) for f in fees or []
        )
    return plan


def plan_assign(*, agency: Agency, plan: PartnerPlan) -> Agency:
    """Assign a partner plan; it must be in the agency's currency (one currency per agency, MON-1)."""
    if plan.currency != agency.currency:
        raise ApplicationError(
            f"The plan is in {plan.currency} but the agency bills in {agency.currency}.",
            code="currency_mismatch",
            fields={"plan": ["Choose a plan in the agency's currency."]},
        )
    Agency.objects.filter(pk=agency.pk).update(plan=plan)
    agency.plan = plan
    return agency
