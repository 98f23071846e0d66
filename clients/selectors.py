"""Reads on clients, scoped to what the user may see."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from accounts.models import User
from accounts.permissions import Capability, has_capability, sees_only_own_clients
from clients.models import AgencyServiceLine, Client
from core.identifiers import identifier_key


def client_visibility(*, user: User, path: str = "") -> Q:
    """ROLE-1 as a condition on the clients reached by `path` (e.g. "client__" from an invoice): salespeople see
    only the clients assigned to them, roles without billing access none. A condition rather than
    `client__in=<client query>`, so lists of everything (the usual case) carry no subquery."""
    if sees_only_own_clients(user):
        return Q(**{f"{path}salesperson": user})
    if has_capability(user, Capability.VIEW_BILLING):
        return Q()
    return Q(**{f"{path}pk__in": []})


def client_list_for_user(*, user: User) -> QuerySet[Client]:
    """Clients the user may see (ROLE-1)."""
    return Client.objects.select_related("salesperson").filter(client_visibility(user=user))


def client_search_for_user(
    *, user: User, search: str | None = None, agency_invoiced: bool | None = None, salesperson_email: str | None = None
) -> QuerySet[Client]:
    clients = client_list_for_user(user=user)
    if search:
        clients = clients.filter(name__icontains=search)
    if agency_invoiced is not None:
        clients = clients.filter(agency_invoiced=agency_invoiced)
    if salesperson_email:
        clients = clients.filter(salesperson__email_key=identifier_key(salesperson_email))
    return clients


def needs_setup_condition(path: str = "") -> Q:
    """A client needs setup while its configuration gives nothing to bill: no license price and no Agency
    Services line. The Clients list and its page flag it, and the billing run builds no invoice that would
    total zero (docs/decisions.md, "Needs setup")."""
    lines = AgencyServiceLine.objects.filter(removed_at__isnull=True).values("client_id")
    return Q(**{f"{path}license_price_minor": 0}) & ~Q(**{f"{path}pk__in": lines})


def client_needs_setup(client: Client) -> bool:
    return client.license_price_minor == 0 and not client.service_lines.filter(removed_at__isnull=True).exists()
