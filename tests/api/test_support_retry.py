"""RET-4 over the platform API: billing support's manual retry of a client's charge and of an agency's
platform-invoice charge answers the charge as the retry left it and the attempt it made (none when it made none)."""

from __future__ import annotations

import pytest
from django_tenants.utils import tenant_context

from accounts.models import Role
from billing.models import Charge
from billing.platform.models import AgencyCharge
from tests.api.conftest import authed

pytestmark = pytest.mark.django_db


def _answer(charge) -> dict:
    attempt = charge.attempts.order_by("-number").first()
    return {
        "charge": str(charge.public_id),
        "status": charge.status,
        "attempt_number": attempt.number if attempt else None,
        "outcome": attempt.outcome if attempt else None,
    }


def test_RET_4_a_manual_retry_of_a_clients_charge_answers_its_status_and_attempt(shared_world, agency_a):
    charge_id = shared_world.ids["charge_id"]
    support = authed(None, "retry-support@platform.test", Role.BILLING_SUPPORT)
    response = support.post(f"/api/v1/agencies/alpha/charges/{charge_id}/retry/", {}, format="json")
    assert response.status_code == 200, response.content
    with tenant_context(agency_a):
        charge = Charge.objects.get(public_id=charge_id)
        assert charge.attempts.filter(kind="MANUAL").count() == 1
        assert response.json() == _answer(charge)


def test_RET_4_a_manual_retry_of_an_agencys_charge_with_nothing_to_charge_answers_no_attempt(shared_world):
    """The world's agency has no payment method on the platform: its charge is Uncollectable and stays so."""
    charge_id = shared_world.ids["agency_charge_id"]
    support = authed(None, "retry-support@platform.test", Role.BILLING_SUPPORT)
    response = support.post(f"/api/v1/agency-charges/{charge_id}/retry/", {}, format="json")
    assert response.status_code == 200, response.content
    charge = AgencyCharge.objects.get(public_id=charge_id)
    assert not charge.attempts.exists()
    expected = {"charge": charge_id, "status": "UNCOLLECTABLE", "attempt_number": None, "outcome": None}
    assert response.json() == _answer(charge) == expected
