"""Reads on clients, scoped to what the user may see."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import Role, User
from clients.models import Client

OWN_CLIENTS_ONLY = frozenset({Role.SALESPERSON, Role.JR_SALESPERSON})


def client_list_for_user(*, user: User) -> QuerySet[Client]:
    """Clients the user may see (ROLE-1): salespeople see only their own clients."""
    clients = Client.objects.select_related("salesperson")
    if user.role in OWN_CLIENTS_ONLY:
        return clients.filter(salesperson=user)
    if user.is_agency_staff:
        return clients
    return clients.none()
