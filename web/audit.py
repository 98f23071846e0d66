"""The audit trail as people read it: "Avery changed License price 99.00 → 199.00 USD on Alder Dental".

Audit rows keep machine values (minor units, codes, ids); this module turns them into words for the pages and the
CSV: an action label, the object's name with a link, and one line per changed field with its label and formatted
values. An action or field it does not know is still shown, with its code made readable.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from django.db.models import Q

from accounts.models import ApiToken, AuditEntry, Role, User
from billing.models import BillingSettings, Charge
from billing.statuses import AttemptOutcome
from clients.models import Client, TaxRate
from core.categories import BillingCategory
from core.money import format_minor
from notifications.catalog import NoticeKind
from notifications.models import NoticeTemplate
from web.csv_export import cell

ACTIONS: dict[str, str] = {
    "client.create": "Added a client",
    "client.update": "Changed client details",
    "client.configure": "Changed client configuration",
    "client.deactivate": "Deactivated a client",
    "client.reactivate": "Reactivated a client",
    "client.service_line.add": "Added an Agency Services line",
    "client.service_line.remove": "Removed an Agency Services line",
    "client.agency_invoiced.set": "Set Agency Invoiced",
    "client.agency_invoiced.clear": "Cleared Agency Invoiced",
    "charge.retry": "Ran a manual retry",
    "payment_method.saved": "Saved a payment method",
    "tax_rate.create": "Added a tax rate",
    "tax_rate.update": "Changed a tax rate",
    "tax_rate.remove": "Removed a tax rate",
    "billing_setup.update": "Changed Billing Setup",
    "branding.logo": "Changed the logo",
    "notice_template.save": "Edited an email template",
    "notice_template.reset": "Reset an email template to the default",
    "user.invite": "Invited a user",
    "user.role": "Changed a user's role",
    "user.activate": "Reactivated a user",
    "user.deactivate": "Deactivated a user",
    "api_token.created": "Created an API token",
    "api_token.revoked": "Revoked an API token",
    "webhook_endpoint.create": "Added a webhook endpoint",
    "webhook_endpoint.update": "Changed a webhook endpoint",
    "webhook_endpoint.remove": "Removed a webhook endpoint",
}


def action_label(code: str) -> str:
    return ACTIONS.get(code) or code.replace("_", " ").replace(".", ": ").capitalize()


def _days(value) -> str:
    return "none" if value in (None, "") else f"{value} day{'s' if value != 1 else ''}"


def _percent(rate_bp) -> str:
    """Audit rows written before MON-2's exact rates hold whole basis points."""
    whole, fraction = divmod(int(rate_bp), 100)
    return f"{whole}.{fraction:02d}".rstrip("0").rstrip(".") + " %"


def _list(value) -> str:
    if not value:
        return "none"
    return ", ".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)


def _on_off(value) -> str:
    return "on" if value else "off"


def _categories(value) -> str:
    labels = dict(BillingCategory.choices)
    return " → ".join(labels.get(v, str(v)) for v in value or [])


# field → (label, formatter(value, currency)). Amounts are minor units and shown with the agency's currency.
Formatter = Callable[[object, str], str]
FIELDS: dict[str, tuple[str, Formatter]] = {
    "license_price_minor": ("License price", lambda v, c: format_minor(int(v), c)),  # type: ignore[arg-type]
    "amount_minor": ("Amount", lambda v, c: format_minor(int(v), c)),  # type: ignore[arg-type]
    "overdue_threshold_minor": ("Overdue threshold", lambda v, c: format_minor(int(v), c)),  # type: ignore[arg-type]
    "billing_day": ("Billing day", lambda v, c: "agency default" if v is None else f"day {v}"),
    "autopay_days": ("Autopay days", lambda v, c: _list(v)),
    "salesperson": ("Salesperson", lambda v, c: v or "none"),  # type: ignore[return-value,arg-type]
    "taxes": ("Taxes", lambda v, c: _list(v)),
    "name": ("Name", lambda v, c: str(v)),
    "email": ("Email", lambda v, c: str(v) or "none"),
    "description": ("Description", lambda v, c: str(v)),
    "recurrence": ("Kind", lambda v, c: "one-time" if v == "ONE_TIME" else "recurring monthly"),
    "taxable": ("Taxable", lambda v, c: "yes" if v else "no"),
    "rate_bp": ("Rate", lambda v, c: _percent(v)),
    "rate_percent": ("Rate", lambda v, c: f"{v} %"),
    "payment_method": ("Payment method", lambda v, c: str(v)),
    "agency_invoiced": ("Agency Invoiced", lambda v, c: _on_off(v)),
    "role": ("Role", lambda v, c: dict(Role.choices).get(str(v), str(v))),
    "is_active": ("Active", lambda v, c: "yes" if v else "no"),
    "active": ("Active", lambda v, c: "yes" if v else "no"),
    "grace_period_days": ("Grace period", lambda v, c: _days(v)),
    "statement_days_before": ("Upcoming Statement", lambda v, c: f"{_days(v)} before"),
    "statement_second_after_days": ("Second Upcoming Statement", lambda v, c: _days(v)),
    "statement_third_after_days": ("Third Upcoming Statement", lambda v, c: _days(v)),
    "overdue_second_after_days": ("Second Account Overdue", lambda v, c: _days(v)),
    "overdue_third_after_days": ("Third Account Overdue", lambda v, c: _days(v)),
    "retries_enabled": ("Automatic retries", lambda v, c: _on_off(v)),
    "category_order": ("Category order", lambda v, c: _categories(v)),
    "time_zone": ("Time zone", lambda v, c: str(v)),
    "brand_color": ("Brand colour", lambda v, c: str(v)),
    "address": ("Postal address", lambda v, c: str(v) or "none"),
    "logo": ("Logo", lambda v, c: "set" if v else "none"),
    "subject": ("Subject", lambda v, c: str(v)),
    "body": ("Body", lambda v, c: f"{len(str(v))} characters"),
    "deactivated_on": ("Deactivated from", lambda v, c: str(v) if v else "none"),
    "outcome": ("Outcome", lambda v, c: dict(AttemptOutcome.choices).get(str(v), str(v))),
    "attempt": ("Attempt", lambda v, c: f"#{v}" if v else "none"),
    "owner": ("Owner", lambda v, c: str(v)),
    "prefix": ("Key starts with", lambda v, c: str(v)),
    "url": ("URL", lambda v, c: str(v)),
    "event_kinds": ("Events", lambda v, c: _list(v) if v else "every event"),
    "client": ("Client", lambda v, c: str(v)),
}


def _value(field: str, value, currency: str) -> str:
    if field in FIELDS:
        try:
            return FIELDS[field][1](value, currency)
        except (TypeError, ValueError):
            pass
    if isinstance(value, list | tuple):
        return _list(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return "none" if value in (None, "") else str(value)


# Amounts in minor units: the currency is written once, after the values ("99.00 → 199.00 USD").
MONEY_FIELDS = {"license_price_minor", "amount_minor", "overdue_threshold_minor"}


@dataclass(frozen=True)
class Change:
    label: str
    before: str | None
    after: str | None
    unit: str = ""

    @property
    def text(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.before is None:
            return f"{self.label}: {self.after}{unit}"
        if self.after is None:
            return f"{self.label} was {self.before}{unit}"
        return f"{self.label} {self.before} → {self.after}{unit}"


def changes(entry: AuditEntry, currency: str) -> list[Change]:
    before, after = entry.before or {}, entry.after or {}
    result = []
    position = {name: index for index, name in enumerate(FIELDS)}
    for field in sorted(dict.fromkeys([*after, *before]), key=lambda name: position.get(name, len(position))):
        label = FIELDS.get(field, (field.replace("_", " ").capitalize(), None))[0]
        result.append(
            Change(
                label,
                _value(field, before[field], currency) if field in before else None,
                _value(field, after[field], currency) if field in after else None,
                currency if field in MONEY_FIELDS else "",
            )
        )
    return result


@dataclass(frozen=True)
class ReadableEntry:
    entry: AuditEntry
    when: datetime
    who: str
    who_role: str
    action: str
    action_code: str
    object_label: str
    object_url: str
    changes: list[Change]
    reason: str
    agency_name: str = ""

    @property
    def summary(self) -> str:
        return "; ".join(change.text for change in self.changes)


ObjectNamer = Callable[[list[AuditEntry]], dict[tuple[str, str], tuple[str, str]]]


def agency_object_names(entries: list[AuditEntry], *, link: Callable[[str, str], str]) -> dict:
    """(object_type, object_id) → (name, url) for what the entries are about, read in one query per kind. Runs in
    the agency's schema. `link(kind, id)` builds the URL of a client ("client") or invoice page."""
    ids: dict[str, set[str]] = {}
    for entry in entries:
        ids.setdefault(entry.object_type, set()).add(entry.object_id)
    names: dict[tuple[str, str], tuple[str, str]] = {}

    def uuids(kind: str) -> list[str]:
        found = []
        for value in ids.get(kind, ()):
            try:
                found.append(str(uuid.UUID(value)))
            except ValueError:
                continue
        return found

    def ints(kind: str) -> list[int]:
        return [int(v) for v in ids.get(kind, ()) if v.isdigit()]

    for client in Client.objects.filter(public_id__in=uuids("clients.Client")).only("public_id", "name"):
        names[("clients.Client", str(client.public_id))] = (client.name, link("client", str(client.public_id)))
    for rate in TaxRate.objects.filter(public_id__in=uuids("clients.TaxRate")).only("public_id", "name"):
        names[("clients.TaxRate", str(rate.public_id))] = (f"tax {rate.name}", "")
    for charge in Charge.objects.filter(public_id__in=uuids("billing.Charge")).select_related("client", "invoice"):
        label = f"{charge.client.name}, invoice {charge.invoice.number}"
        names[("billing.Charge", str(charge.public_id))] = (label, link("invoice", str(charge.invoice.public_id)))
    for user in User.objects.filter(pk__in=ints("accounts.User")).only("pk", "email", "first_name", "last_name"):
        names[("accounts.User", str(user.pk))] = (str(user), "")
    for token in ApiToken.objects.filter(Q(public_id__in=uuids("accounts.ApiToken"))).only("public_id", "name"):
        names[("accounts.ApiToken", str(token.public_id))] = (f"API token “{token.name}”", "")
    for template in NoticeTemplate.objects.filter(pk__in=ints("notifications.NoticeTemplate")):
        label = dict(NoticeKind.choices).get(template.kind, template.kind)
        names[("notifications.NoticeTemplate", str(template.pk))] = (f"template {label}", "")
    for object_id in ids.get(BillingSettings._meta.label, ()):
        names[(BillingSettings._meta.label, object_id)] = ("Billing Setup", "")
    return names


def readable(
    entries: Iterable[AuditEntry],
    *,
    currency: str,
    names: dict[tuple[str, str], tuple[str, str]],
    agency_name: str = "",
) -> list[ReadableEntry]:
    roles = dict(Role.choices)
    result = []
    for entry in entries:
        name, url = names.get((entry.object_type, entry.object_id), ("", ""))
        if not name:
            kind = entry.object_type.rsplit(".", 1)[-1]
            kind = {"NoticeTemplate": "email template", "Agency": "agency"}.get(kind, kind.lower())
            name = f"{kind} (no longer exists)" if entry.object_type in _NAMED_KINDS else kind
        result.append(
            ReadableEntry(
                entry=entry,
                when=entry.created_at,
                who=entry.actor,
                who_role=roles.get(entry.actor_role, ""),
                action=action_label(entry.action),
                action_code=entry.action,
                object_label=name,
                object_url=url,
                changes=changes(entry, currency),
                reason=entry.reason,
                agency_name=agency_name,
            )
        )
    return result


_NAMED_KINDS = {"clients.Client", "clients.TaxRate", "billing.Charge", "accounts.User", "accounts.ApiToken"}


def action_choices(codes: Iterable[str]) -> list[tuple[str, str]]:
    """The pick-list: every known action plus any other recorded one, by label."""
    every = set(ACTIONS) | set(codes)
    return sorted(((code, action_label(code)) for code in every), key=lambda pair: pair[1])


def audit_filtered(rows, *, action: str = "", start=None, end=None):
    """Audit rows of one action and a date range (days in UTC, both included)."""
    if action:
        rows = rows.filter(action=action)
    if start:
        rows = rows.filter(created_at__gte=datetime.combine(start, time.min, UTC))
    if end:
        rows = rows.filter(created_at__lt=datetime.combine(end + timedelta(days=1), time.min, UTC))
    return rows


def csv_rows(items: Iterable[ReadableEntry], *, with_agency: bool = False):
    for item in items:
        row = [item.when.strftime("%Y-%m-%d %H:%M:%S")]
        if with_agency:
            row.append(cell(item.agency_name or "Platform"))
        yield [
            *row,
            cell(item.who),
            item.who_role,
            item.action,
            cell(item.object_label),
            cell(item.summary),
            cell(item.reason),
            item.action_code,
        ]


CSV_HEADER = ["When (UTC)", "Who", "Role", "What", "On", "Changes", "Reason", "Action code"]
