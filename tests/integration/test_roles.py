"""ROLE-1 over real requests: salespeople see only their own clients; others see none of them (404)."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from accounts.models import Role
from clients.models import Client
from tests.conftest import login_client, make_user

pytestmark = pytest.mark.django_db


def test_ROLE_1_salesperson_sees_only_own_clients(agency_a):
    sam = make_user(agency_a, "sam@alpha.test", Role.SALESPERSON)
    make_user(agency_a, "boss@alpha.test", Role.COMPANY_MANAGER)
    make_user(agency_a, "client@alpha.test", Role.CLIENT)
    with schema_context(agency_a.schema_name):
        own = Client.objects.create(name="Sams Client", email="own@example.com", salesperson=sam)
        other = Client.objects.create(name="Someone Elses", email="other@example.com")
    seller = login_client(agency_a, "sam@alpha.test")
    page = seller.get("/clients/").content.decode()
    assert "Sams Client" in page and "Someone Elses" not in page
    assert seller.get(f"/clients/{own.public_id}/").status_code == 200
    assert seller.get(f"/clients/{other.public_id}/").status_code == 404
    manager = login_client(agency_a, "boss@alpha.test")
    page = manager.get("/clients/").content.decode()
    assert "Sams Client" in page and "Someone Elses" in page
    client_user = login_client(agency_a, "client@alpha.test")
    assert "Sams Client" not in client_user.get("/clients/").content.decode()
    assert client_user.get(f"/clients/{own.public_id}/").status_code == 404
