"""The ROLE-1 matrix: one table that the UI and the API both enforce."""

from __future__ import annotations

from enum import StrEnum

from accounts.models import Role, User


class Capability(StrEnum):
    VIEW_BILLING = "view_billing"  # Billing Overview, invoices and PDFs (all clients)
    VIEW_OWN_BILLING = "view_own_billing"  # ... of own clients only
    VIEW_AMOUNTS = "view_amounts"  # amounts, not only statuses
    EDIT_CLIENT_CONFIG = "edit_client_config"
    REQUEST_SUPPORT = "request_support"  # request a retry / request Agency Invoiced
    ADMINISTER = "administer"  # Billing Setup, email templates, users, API tokens
    SUPPORT = "support"  # billing support (platform)


C = Capability
MATRIX: dict[str, frozenset[Capability]] = {
    Role.ADMINISTRATOR: frozenset(
        {C.VIEW_BILLING, C.VIEW_AMOUNTS, C.EDIT_CLIENT_CONFIG, C.REQUEST_SUPPORT, C.ADMINISTER}
    ),
    Role.COMPANY_MANAGER: frozenset({C.VIEW_BILLING, C.VIEW_AMOUNTS, C.EDIT_CLIENT_CONFIG, C.REQUEST_SUPPORT}),
    Role.SALES_MANAGER: frozenset({C.VIEW_BILLING, C.VIEW_AMOUNTS, C.EDIT_CLIENT_CONFIG}),
    Role.MARKETING_MANAGER: frozenset({C.VIEW_BILLING, C.VIEW_AMOUNTS}),
    Role.SALESPERSON: frozenset({C.VIEW_OWN_BILLING, C.VIEW_AMOUNTS}),
    Role.JR_SALESPERSON: frozenset({C.VIEW_OWN_BILLING}),
    Role.CLIENT: frozenset(),
    Role.BILLING_SUPPORT: frozenset({C.SUPPORT}),
}


def has_capability(user: User | None, capability: Capability) -> bool:
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    return capability in MATRIX.get(user.role, frozenset())


def sees_only_own_clients(user: User) -> bool:
    return has_capability(user, C.VIEW_OWN_BILLING) and not has_capability(user, C.VIEW_BILLING)
