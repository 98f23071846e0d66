"""Reads on clients, scoped to what the user may see."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import User
from accounts.permissions import Capability, has_capability, sees_only_own_clients
from clients.models import Client


def client_list_for_user(*, user: User) -> QuerySet[Client]:
    """Clients the user may see (ROLE-1): salespeople see only the clients assigned to them."""
    clients = Client.objects.select_related("salesperson")
    if sees_only_own_clients(user):
        return clients.filter(salesperson=user)
    if has_capability(user, Capability.VIEW_BILLING):
        return clients
    return clients.none()


def client_search_for_user(*, user: User, search: str | None = None, agency_invoiced: bool | None = None,
                           salesperson_email: str | None = None) -> QuerySet[Client]:
    clients = client_list_for_user(user=user)
    if search:
        clients = clients.filter(name__icontains=search)
    if agency_invoiced is not None:
        clients = clients.filter(agency_invoiced=agency_invoiced)
    if salesperson_email:
        clients = clients.filter(salesperson__email=salesperson_email.lower())
    return clients
