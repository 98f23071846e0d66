"""Writes on clients and their configuration (PLAN-2, PLAN-4, CYC-1, CYC-4).

Every function validates all its input first and raises one ApplicationError listing each bad field;
nothing is written unless everything is valid.
"""

from __future__ import annotations

from datetime import date

from django.db import transaction
from django.utils import timezone

from accounts.models import User, audit_record
from clients.models import AgencyServiceLine, Client, ClientGroup, ServiceRecurrence, TaxRate
from core.errors import ApplicationError
from core.money import validate_rate_bp

_UNSET = object()


def _non_negative_amount(value: object, field: str, errors: dict[str, list[str]]) -> None:
    if type(value) is not int:
        errors.setdefault(field, []).append("Enter a whole number of minor units (e.g. cents).")
    elif value < 0:
        errors.setdefault(field, []).append("The amount cannot be negative.")


def _billing_day(value: object, field: str, errors: dict[str, list[str]]) -> None:
    if type(value) is not int or not 1 <= value <= 28:
        errors.setdefault(field, []).append("The billing day must be between 1 and 28.")


def _raise(errors: dict[str, list[str]], message: str = "Please correct the highlighted fields.") -> None:
    if errors:
        raise ApplicationError(message, fields=errors)


def tax_rate_create(*, name: str, rate_bp: int) -> TaxRate:
    errors: dict[str, list[str]] = {}
    if not name or not name.strip():
        errors["name"] = ["A name is required."]
    try:
        validate_rate_bp(rate_bp)
    except ApplicationError as exc:
        errors["rate_bp"] = ["A tax rate must be between 0 and 100 %."] if exc.fields else [exc.message]
    _raise(errors)
    return TaxRate.objects.create(name=name.strip(), rate_bp=rate_bp)


def client_create(
    *,
    name: str,
    email: str,
    activated_on: date,
    license_price_minor: int = 0,
    salesperson: User | None = None,
    billing_day: int | None = None,
    autopay_days: list[int] | None = None,
    taxes: list[TaxRate] | None = None,
) -> Client:
    errors: dict[str, list[str]] = {}
    if not name or not name.strip():
        errors["name"] = ["A name is required."]
    if not email or "@" not in email:
        errors["email"] = ["Enter a valid email address."]
    _non_negative_amount(license_price_minor, "license_price_minor", errors)
    if billing_day is not None:
        _billing_day(billing_day, "billing_day", errors)
    for day in autopay_days or []:
        _billing_day(day, "autopay_days", errors)
    _raise(errors)
    with transaction.atomic():
        client = Client.objects.create(
            name=name.strip(),
            email=email.strip().lower(),
            activated_on=activated_on,
            license_price_minor=license_price_minor,
            salesperson=salesperson,
            billing_day=billing_day,
            autopay_days=sorted(set(autopay_days or [])),
        )
        if taxes:
            client.taxes.set(taxes)
    return client


def _configuration(client: Client) -> dict:
    return {
        "license_price_minor": client.license_price_minor,
        "billing_day": client.billing_day,
        "autopay_days": list(client.autopay_days),
        "salesperson": client.salesperson.email if client.salesperson_id else None,  # type: ignore[union-attr]
        "taxes": sorted(t.name for t in client.taxes.all()) if client.pk else [],
    }


def client_configure(
    *,
    client: Client,
    license_price_minor: object = _UNSET,
    taxes: object = _UNSET,
    billing_day: object = _UNSET,
    autopay_days: object = _UNSET,
    salesperson: object = _UNSET,
    actor: User | str | None = None,
) -> Client:
    """Change the Client Configuration (PLAN-2). Only the arguments given are changed; the change is
    audited with the configuration before and after."""
    errors: dict[str, list[str]] = {}
    if license_price_minor is not _UNSET:
        _non_negative_amount(license_price_minor, "license_price_minor", errors)
    if billing_day is not _UNSET and billing_day is not None:
        _billing_day(billing_day, "billing_day", errors)
    if autopay_days is not _UNSET:
        if not isinstance(autopay_days, list | tuple):
            errors["autopay_days"] = ["Give a list of days from 1 to 28."]
        else:
            for day in autopay_days:
                _billing_day(day, "autopay_days", errors)
    _raise(errors)
    with transaction.atomic():
        before = _configuration(client)
        if license_price_minor is not _UNSET:
            client.license_price_minor = license_price_minor  # type: ignore[assignment]
        if billing_day is not _UNSET:
            client.billing_day = billing_day  # type: ignore[assignment]
        if autopay_days is not _UNSET:
            client.autopay_days = sorted(set(autopay_days))  # type: ignore[arg-type]
        if salesperson is not _UNSET:
            client.salesperson = salesperson  # type: ignore[assignment]
        client.save()
        if taxes is not _UNSET:
            client.taxes.set(taxes)  # type: ignore[arg-type]
        after = _configuration(client)
        if after != before:
            audit_record(
                actor=actor,
                action="client.configure",
                obj=client,
                before={k: v for k, v in before.items() if after[k] != v},
                after={k: v for k, v in after.items() if before[k] != v},
            )
    return client


def service_line_add(
    *,
    client: Client,
    description: str,
    amount_minor: int,
    one_time: bool = False,
    taxable: bool = True,
    actor: User | str | None = None,
) -> AgencyServiceLine:
    errors: dict[str, list[str]] = {}
    if not description or not description.strip():
        errors["description"] = ["A description is required."]
    _non_negative_amount(amount_minor, "amount_minor", errors)
    _raise(errors)
    with transaction.atomic():
        line = AgencyServiceLine.objects.create(
            client=client,
            description=description.strip(),
            amount_minor=amount_minor,
            taxable=taxable,
            recurrence=ServiceRecurrence.ONE_TIME if one_time else ServiceRecurrence.RECURRING,
        )
        if actor is not None:
            audit_record(
                actor=actor,
                action="client.service_line.add",
                obj=client,
                after={
                    "description": line.description,
                    "amount_minor": amount_minor,
                    "recurrence": line.recurrence,
                    "taxable": taxable,
                },
            )
    return line


def service_line_remove(*, line: AgencyServiceLine, actor: User | str | None) -> AgencyServiceLine:
    """Stop billing an Agency Services line from the next invoice; invoices already built keep it."""
    with transaction.atomic():
        updated = AgencyServiceLine.objects.filter(pk=line.pk, removed_at__isnull=True).update(
            removed_at=timezone.now()
        )
        if updated:
            audit_record(
                actor=actor,
                action="client.service_line.remove",
                obj=line.client,
                before={"description": line.description, "amount_minor": line.amount_minor},
            )
    line.refresh_from_db()
    return line


def client_group_create(*, name: str, primary: Client, members: list[Client]) -> ClientGroup:
    """Link accounts (PLAN-4): the group is billed through the primary's configuration, the other members are
    switched to Agency Invoiced."""
    others = [m for m in members if m.pk != primary.pk]
    if not others:
        raise ApplicationError(
            "A group needs at least one account besides the primary.",
            fields={"members": ["Choose at least one other client."]},
        )
    if any(m.group_id for m in [primary, *others]):
        raise ApplicationError(
            "A client can belong to only one group.",
            fields={"members": ["One of these clients is already in a group."]},
        )
    with transaction.atomic():
        group = ClientGroup.objects.create(name=name, primary=primary)
        Client.objects.filter(pk=primary.pk).update(group=group)
        Client.objects.filter(pk__in=[m.pk for m in others]).update(
            group=group, agency_invoiced=True, agency_invoiced_reason=f"Billed through group {name}"
        )
    return group
