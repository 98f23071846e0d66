"""Writes on clients and their configuration (PLAN-2, PLAN-4, CYC-1, CYC-4).

Every function validates all its input first and raises one ApplicationError listing each bad field;
nothing is written unless everything is valid.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import get_tenant_model

from accounts.models import User, audit_record
from clients.models import AgencyServiceLine, Client, ClientGroup, ServiceRecurrence, TaxRate
from core.errors import ApplicationError
from core.money import (
    AmountOverLimit,
    charge_ceiling_minor,
    format_rate,
    over_ceiling_message,
    parse_rate_percent,
    tax_minor,
)
from core.parsing import has_control_characters

_UNSET = object()


def _non_negative_amount(value: object, field: str, errors: dict[str, list[str]]) -> None:
    if type(value) is not int:
        errors.setdefault(field, []).append("Enter a whole number of minor units (e.g. cents).")
    elif value < 0:
        errors.setdefault(field, []).append("The amount cannot be negative.")


def _billing_day(value: object, field: str, errors: dict[str, list[str]]) -> None:
    if type(value) is not int or not 1 <= value <= 28:
        errors.setdefault(field, []).append("The billing day must be between 1 and 28.")


# CYC-4: at most this many autopay days a month, each given once. Four covers weekly collection; more would
# split a balance into installments smaller than the processor's per-charge fee is worth (docs/decisions.md).
MAX_AUTOPAY_DAYS = 4


def _autopay_days(value: object, field: str, errors: dict[str, list[str]]) -> None:
    if not isinstance(value, list | tuple):
        errors[field] = ["Give a list of days from 1 to 28."]
        return
    for day in value:
        _billing_day(day, field, errors)
    if field in errors:
        return
    repeated = sorted({day for day in value if list(value).count(day) > 1})
    if repeated:
        errors[field] = [f"Give each day once: {', '.join(str(d) for d in repeated)} is given more than once."]
    elif len(value) > MAX_AUTOPAY_DAYS:
        errors[field] = [f"Give at most {MAX_AUTOPAY_DAYS} autopay days a month."]


def _name_and_email(name: object, email: object, errors: dict[str, list[str]]) -> None:
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    if not isinstance(name, str) or not name.strip():
        errors["name"] = ["A name is required."]
    elif len(name.strip()) > 200:
        errors["name"] = ["Use at most 200 characters."]
    elif has_control_characters(name):
        errors["name"] = ["A name is one line of text: no line breaks, tabs or other control characters."]
    try:
        if not isinstance(email, str):
            raise ValidationError("not text")
        validate_email(email.strip())
    except ValidationError:
        errors["email"] = ["Enter a valid email address, such as billing@client.example."]


def _raise(errors: dict[str, list[str]], message: str = "Please correct the highlighted fields.") -> None:
    if errors:
        raise ApplicationError(message, fields=errors)


def configured_invoice_totals(client_ids: list[int]) -> dict[int, int]:
    """{client id: what its next invoice comes to from its configuration alone}: license price, every active Agency
    Services line (one-time ones included) and the client's taxes on the taxable ones, each tax rounded per line as
    an invoice does (MON-2). Usage is not configuration: it is bounded when it is recorded, and the invoice as a
    whole when it is drafted (billing/holds.py)."""
    lines: dict[int, list[tuple[int, bool]]] = {pk: [] for pk in client_ids}
    for pk, price in Client.objects.filter(pk__in=client_ids).values_list("pk", "license_price_minor"):
        if price:
            lines[pk].append((price, True))
    services = AgencyServiceLine.objects.filter(client_id__in=client_ids, removed_at__isnull=True)
    for pk, amount, taxable in services.values_list("client_id", "amount_minor", "taxable"):
        lines[pk].append((amount, taxable))
    totals = {pk: sum(amount for amount, _ in client_lines) for pk, client_lines in lines.items()}
    through = Client.taxes.through.objects.filter(client_id__in=client_ids)
    for pk, rate_percent in through.values_list("client_id", "taxrate__rate_percent"):
        totals[pk] += sum(tax_minor(amount, rate_percent) for amount, taxable in lines[pk] if taxable)
    return totals


def _agency_currency() -> str:
    currency = getattr(getattr(connection, "tenant", None), "currency", None)
    if currency is None:
        # The tenant model by Django's setting: clients sits below the tenants app and does not import it.
        agencies = get_tenant_model().objects
        currency = agencies.values_list("currency", flat=True).get(schema_name=connection.schema_name)
    return currency


def _invoice_bound_check(client_ids: list[int], field: str) -> None:
    """MON-1: refuse (and so roll back) a configuration whose invoice would exceed what one charge may carry. Called
    inside the writing transaction, after the write, so it sees exactly what would be billed."""
    ceiling = charge_ceiling_minor()
    over = {pk: total for pk, total in configured_invoice_totals(client_ids).items() if total > ceiling}
    if not over:
        return
    currency = _agency_currency()
    if len(client_ids) == 1:
        what = "With its license, Agency Services and taxes, this client's invoice"
        message = over_ceiling_message(what, next(iter(over.values())), currency, ceiling)
    else:
        names = list(Client.objects.filter(pk__in=over).order_by("name").values_list("name", flat=True)[:3])
        listed = ", ".join(names) + (", …" if len(over) > 3 else "")
        message = over_ceiling_message(
            f"{len(over)} client{'s' if len(over) != 1 else ''} ({listed}) would be billed more than one charge "
            "may carry: the largest invoice",
            max(over.values()),
            currency,
            ceiling,
        )
    raise AmountOverLimit(message, fields={field: [message]})


def _tax_rate_errors(name: object, rate_percent: object) -> tuple[dict[str, list[str]], Decimal | None]:
    errors: dict[str, list[str]] = {}
    if not isinstance(name, str) or not name.strip():
        errors["name"] = ["A name is required."]
    elif len(name.strip()) > 120:
        errors["name"] = ["Use at most 120 characters."]
    rate = None
    try:
        rate = parse_rate_percent(rate_percent)
    except ApplicationError as exc:
        errors.update(exc.fields)
    return errors, rate


def tax_rate_create(*, name: str, rate_percent: Decimal | str, actor: User | str | None = None) -> TaxRate:
    """A tax the agency charges; `rate_percent` has up to 4 decimals (MON-2: "8.875")."""
    errors, rate_value = _tax_rate_errors(name, rate_percent)
    _raise(errors)
    with transaction.atomic():
        rate = TaxRate.objects.create(name=name.strip(), rate_percent=rate_value)
        if actor is not None:
            audit_record(
                actor=actor,
                action="tax_rate.create",
                obj=rate,
                after={"name": rate.name, "rate_percent": format_rate(rate.rate_percent)},
            )
    return rate


def tax_rate_update(*, tax_rate: TaxRate, name: str, rate_percent: Decimal | str, actor: User | str | None) -> TaxRate:
    """Rename a tax or change its rate. Invoices already built keep the rate they were built with (MON-3);
    the next invoices of every client that has the tax use the new one."""
    errors, rate_value = _tax_rate_errors(name, rate_percent)
    _raise(errors)
    with transaction.atomic():
        locked = TaxRate.objects.select_for_update().get(pk=tax_rate.pk)
        before = {"name": locked.name, "rate_percent": format_rate(locked.rate_percent)}
        locked.name, locked.rate_percent = name.strip(), rate_value  # type: ignore[assignment]
        after = {"name": locked.name, "rate_percent": format_rate(locked.rate_percent)}
        if after != before:
            locked.save(update_fields=["name", "rate_percent", "updated_at"])
            if rate_value is not None and rate_value > Decimal(before["rate_percent"]):
                _invoice_bound_check(list(locked.clients.values_list("pk", flat=True)), "rate_percent")
            audit_record(
                actor=actor,
                action="tax_rate.update",
                obj=locked,
                before={k: v for k, v in before.items() if after[k] != v},
                after={k: v for k, v in after.items() if before[k] != v},
            )
    return locked


def tax_rate_remove(*, tax_rate: TaxRate, actor: User | str | None) -> None:
    """Delete a tax that no client has any more (untick it on each client first); invoices keep their lines."""
    with transaction.atomic():
        locked = TaxRate.objects.select_for_update().get(pk=tax_rate.pk)
        users = locked.clients.count()
        if users:
            raise ApplicationError(
                f"{locked.name} still applies to {users} client{'s' if users != 1 else ''}: untick it there first.",
                code="tax_rate_in_use",
                fields={"tax_rate": ["Still applies to clients."]},
            )
        audit_record(
            actor=actor,
            action="tax_rate.remove",
            obj=locked,
            before={"name": locked.name, "rate_percent": format_rate(locked.rate_percent)},
        )
        locked.delete()


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
    actor: User | str | None = None,
) -> Client:
    errors: dict[str, list[str]] = {}
    _name_and_email(name, email, errors)
    _non_negative_amount(license_price_minor, "license_price_minor", errors)
    if billing_day is not None:
        _billing_day(billing_day, "billing_day", errors)
    _autopay_days(autopay_days or [], "autopay_days", errors)
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
        _invoice_bound_check([client.pk], "license_price_minor")
        if actor is not None:
            audit_record(
                actor=actor, action="client.create", obj=client, after={"name": client.name, **_configuration(client)}
            )
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
        _autopay_days(autopay_days, "autopay_days", errors)
    _raise(errors)
    try:
        _client_configure(client, license_price_minor, taxes, billing_day, autopay_days, salesperson, actor)
    except AmountOverLimit:
        client.refresh_from_db()  # the refused values were rolled back: so are they on this instance
        raise
    return client


def _client_configure(
    client: Client,
    license_price_minor: object,
    taxes: object,
    billing_day: object,
    autopay_days: object,
    salesperson: object,
    actor: User | str | None,
) -> None:
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
        if license_price_minor is not _UNSET or taxes is not _UNSET:
            _invoice_bound_check([client.pk], "license_price_minor" if license_price_minor is not _UNSET else "taxes")
        after = _configuration(client)
        if after != before:
            audit_record(
                actor=actor,
                action="client.configure",
                obj=client,
                before={k: v for k, v in before.items() if after[k] != v},
                after={k: v for k, v in after.items() if before[k] != v},
            )


def client_update(*, client: Client, name: str, email: str, actor: User | str | None) -> Client:
    """Change the client's name and billing email (where its notices go). Audited."""
    errors: dict[str, list[str]] = {}
    _name_and_email(name, email, errors)
    _raise(errors)
    with transaction.atomic():
        locked = Client.objects.select_for_update().get(pk=client.pk)
        before = {"name": locked.name, "email": locked.email}
        after = {"name": name.strip(), "email": email.strip().lower()}
        if after != before:
            Client.objects.filter(pk=locked.pk).update(**after, updated_at=timezone.now())
            audit_record(
                actor=actor,
                action="client.update",
                obj=locked,
                before={k: v for k, v in before.items() if after[k] != v},
                after={k: v for k, v in after.items() if before[k] != v},
            )
    client.refresh_from_db()
    return client


def client_deactivate(*, client: Client, on: date, actor: User | str | None) -> Client:
    """Stop billing a client from `on` (its first day without service): no invoice with a billing date on or
    after it. Invoices already built and their collection go on. Audited."""
    with transaction.atomic():
        locked = Client.objects.select_for_update().get(pk=client.pk)
        if locked.deactivated_on is not None:
            raise ApplicationError(
                f"{locked.name} is already deactivated.",
                code="already_deactivated",
                fields={"client": ["Deactivated."]},
            )
        if on < locked.activated_on:
            on = locked.activated_on
        Client.objects.filter(pk=locked.pk).update(deactivated_on=on, updated_at=timezone.now())
        audit_record(actor=actor, action="client.deactivate", obj=locked, after={"deactivated_on": on.isoformat()})
    client.refresh_from_db()
    return client


def client_reactivate(*, client: Client, actor: User | str | None) -> Client:
    """Bill a deactivated client again from its next billing date. Audited."""
    with transaction.atomic():
        locked = Client.objects.select_for_update().get(pk=client.pk)
        if locked.deactivated_on is None:
            return client
        before = locked.deactivated_on.isoformat()
        Client.objects.filter(pk=locked.pk).update(deactivated_on=None, updated_at=timezone.now())
        audit_record(actor=actor, action="client.reactivate", obj=locked, before={"deactivated_on": before})
    client.refresh_from_db()
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
        _invoice_bound_check([client.pk], "amount_minor")
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
