"""Writes on agencies."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django_tenants.utils import schema_exists

from core.errors import ApplicationError
from core.money import (
    UnknownCurrency,
    currency_exponent,
    parse_rate_percent,
    parse_unit_price,
    rate_from_bp,
    unit_price_from_minor,
)
from core.parsing import has_control_characters
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
    elif has_control_characters(name):
        errors["name"] = ["A name is one line of text: no line breaks, tabs or other control characters."]
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
    # Imported here: the services/tasks idiom (the task calls back into this app's services).
    from tenants.tasks import spare_schemas_refill

    spare_schemas_refill.delay()


def _amount_errors(value: object, field: str, errors: dict[str, list[str]]) -> None:
    if type(value) is not int:
        errors.setdefault(field, []).append("Enter a whole number of minor units (e.g. cents).")
    elif value < 0:
        errors.setdefault(field, []).append("The amount cannot be negative.")


def _exact(
    item: dict, *, decimal_key: str, integer_key: str, prefix: str, errors: dict[str, list[str]], parse, parse_int
) -> Decimal:
    """An exact price or rate given either as a decimal string (`decimal_key`) or, as before MON-2's finer
    precision, a whole number (`integer_key`); both is an error."""
    if decimal_key in item and integer_key in item:
        errors.setdefault(f"{prefix}{decimal_key}", []).append(f"Give {decimal_key} or {integer_key}, not both.")
        return Decimal(0)
    try:
        if decimal_key in item:
            return parse(item[decimal_key], field=f"{prefix}{decimal_key}")
        return parse_int(item.get(integer_key, 0), field=f"{prefix}{integer_key}")
    except ApplicationError as exc:
        for field, messages in exc.fields.items():
            errors.setdefault(field, []).extend(messages)
        return Decimal(0)


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
    """Create a partner plan (PLAN-1). products: {code, name, unit_price_decimal, included_quantity,
    overage_unit_price_decimal}; taxes: {name, rate_percent}; fees: {name, amount_minor}. Prices are minor
    units with up to 12 decimals, rates percentages with up to 4 (MON-2), as decimal strings; whole
    `unit_price_minor`/`overage_unit_price_minor` and `rate_bp` integers are accepted instead."""
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
    prices: dict[tuple[int, str], Decimal] = {}
    rates: dict[int, Decimal] = {}
    for i, product in enumerate(products or []):
        code = product.get("code", "")
        if not code or code in codes:
            errors.setdefault(f"products[{i}].code", []).append("Each product needs its own code.")
        codes.add(code)
        _amount_errors(product.get("included_quantity", 0), f"products[{i}].included_quantity", errors)
        for kind in ("unit_price", "overage_unit_price"):
            prices[(i, kind)] = _exact(
                product,
                decimal_key=f"{kind}_decimal",
                integer_key=f"{kind}_minor",
                prefix=f"products[{i}].",
                errors=errors,
                parse=parse_unit_price,
                parse_int=unit_price_from_minor,
            )
    for i, tax in enumerate(taxes or []):
        if "rate_percent" not in tax and "rate_bp" not in tax:
            errors.setdefault(f"taxes[{i}].rate_percent", []).append('Give the rate, such as "8.875".')
            continue
        rates[i] = _exact(
            tax,
            decimal_key="rate_percent",
            integer_key="rate_bp",
            prefix=f"taxes[{i}].",
            errors=errors,
            parse=parse_rate_percent,
            parse_int=rate_from_bp,
        )
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
                unit_price_decimal=prices[(i, "unit_price")],
                included_quantity=p.get("included_quantity", 0),
                overage_unit_price_decimal=prices[(i, "overage_unit_price")],
            )
            for i, p in enumerate(products or [])
        )
        PlanTax.objects.bulk_create(
            PlanTax(plan=plan, name=t["name"], rate_percent=rates[i]) for i, t in enumerate(taxes or [])
        )
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
