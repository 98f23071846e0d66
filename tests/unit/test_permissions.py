"""ROLE-1: the capability matrix is exactly the SPEC's table, for UI and API alike."""

from __future__ import annotations

import pytest

from accounts.models import Role, User
from accounts.permissions import MATRIX, Capability, has_capability, sees_only_own_clients

C = Capability
# SPEC ROLE-1, row by row: Billing Overview (all / own), amounts, Client Configuration, requests, admin.
EXPECTED = {
    Role.ADMINISTRATOR: {C.VIEW_BILLING, C.VIEW_AMOUNTS, C.EDIT_CLIENT_CONFIG, C.REQUEST_SUPPORT, C.ADMINISTER},
    Role.COMPANY_MANAGER: {C.VIEW_BILLING, C.VIEW_AMOUNTS, C.EDIT_CLIENT_CONFIG, C.REQUEST_SUPPORT},
    Role.SALES_MANAGER: {C.VIEW_BILLING, C.VIEW_AMOUNTS, C.EDIT_CLIENT_CONFIG},
    Role.MARKETING_MANAGER: {C.VIEW_BILLING, C.VIEW_AMOUNTS},
    Role.SALESPERSON: {C.VIEW_OWN_BILLING, C.VIEW_AMOUNTS},
    Role.JR_SALESPERSON: {C.VIEW_OWN_BILLING},
    Role.CLIENT: set(),
    Role.BILLING_SUPPORT: {C.SUPPORT},
}


@pytest.mark.parametrize("role", list(Role))
def test_ROLE_1_matrix_matches_the_spec(role):
    assert set(MATRIX[role]) == EXPECTED[role]


@pytest.mark.parametrize(
    ("role", "own_only"),
    [
        (Role.SALESPERSON, True),
        (Role.JR_SALESPERSON, True),
        (Role.ADMINISTRATOR, False),
        (Role.MARKETING_MANAGER, False),
    ],
)
def test_ROLE_1_own_clients_only_for_salespeople(role, own_only):
    user = User(email="x@example.com", role=role)
    assert sees_only_own_clients(user) is own_only


def test_ROLE_1_inactive_or_anonymous_users_have_no_capability():
    from django.contrib.auth.models import AnonymousUser

    inactive = User(email="x@example.com", role=Role.ADMINISTRATOR, is_active=False)
    assert not has_capability(inactive, C.VIEW_BILLING)
    assert not has_capability(AnonymousUser(), C.VIEW_BILLING)  # type: ignore[arg-type]
    assert not has_capability(None, C.VIEW_BILLING)
