"""Set-up shared by the onboarding and payout tests: agencies made by the product's own onboarding, dropped again
afterwards (their schema and every public row), and the links in the mail they send."""

from __future__ import annotations

import re

from django.db import connection


def drop_agency(slug: str) -> None:
    """Remove an agency created by a test: its public rows (invoices and ledger are append-only by trigger, so the
    demo's reset does it) and its schema."""
    from agencybilling.management.commands.load_demo import _wipe
    from tenants.models import Agency

    connection.set_schema_to_public()
    agency = Agency.objects.filter(schema_name=slug).first()
    if agency is not None:
        _wipe(agency)
    connection.set_schema_to_public()


LINK = re.compile(r"https?://[^\s]+")


def mailed_links(message) -> list[str]:
    """The links in a received email's text (decoded: quoted-printable soft breaks do not cut them)."""
    body = message.get_body(preferencelist=("plain",)) if message.is_multipart() else message
    return LINK.findall(body.get_content())


def invitation_path(link: str) -> str:
    return "/" + link.split("/", 3)[3]
