"""Reads of the notice outbox (agency schema)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet

from core.errors import NotFound
from notifications.catalog import CATALOG, NoticeKind
from notifications.models import Notice, NoticeTemplate


def notices_about_client(*, client_public_id: str) -> QuerySet[Notice]:
    """One client's notice log, newest first: what was sent to the client, and the agency's notices about its
    charges (their period starts with the client's id)."""
    return Notice.objects.filter(Q(account=client_public_id) | Q(period__startswith=f"{client_public_id}/")).order_by(
        "-business_date", "-id"
    )


def notice_keys_queued(*, kind: str, accounts: list[str]) -> set[tuple[str, str, int]]:
    """(account, period, number) of the notices of one kind already queued for these accounts (NOT-7), in one query:
    lets a caller that could owe a notice on many days (a missed follow-up, NOT-5) skip rendering the ones it sent."""
    if not accounts:
        return set()
    return set(Notice.objects.filter(kind=kind, account__in=accounts).values_list("account", "period", "number"))


@dataclass(frozen=True)
class EffectiveTemplate:
    """What a notice kind will be sent with: the agency's own version, or the shipped default."""

    kind: str
    label: str
    subject: str
    body: str
    is_default: bool
    variables: dict[str, str]
    updated_by: str
    updated_at: datetime | None


def notice_template_effective(*, kind: str) -> EffectiveTemplate:
    if kind not in CATALOG:
        raise NotFound("No such notice.")
    spec = CATALOG[kind]
    custom = NoticeTemplate.objects.filter(kind=kind).first()
    return EffectiveTemplate(
        kind=kind,
        label=NoticeKind(kind).label,
        subject=custom.subject if custom else spec.subject,
        body=custom.body if custom else spec.body,
        is_default=custom is None,
        variables=dict(spec.variables),
        updated_by=custom.updated_by if custom else "",
        updated_at=custom.updated_at if custom else None,
    )


def notice_templates_effective() -> list[EffectiveTemplate]:
    return [notice_template_effective(kind=kind) for kind in CATALOG]
