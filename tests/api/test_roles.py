"""ROLE-1 over the API: every operation of both hosts, for every role, allows exactly what the SPEC's matrix says.

The expectation below is written from the SPEC's table, not read from the views; every operation in the served
schema must appear in it, so a new endpoint cannot ship unclassified."""

from __future__ import annotations

import pytest

from accounts.models import Role
from tests.api.conftest import api, authed, fill, token_for
from tests.api.schemas import AGENCY_DOCUMENT, PLATFORM_DOCUMENT, operations

pytestmark = pytest.mark.django_db

R = Role
STAFF = {R.ADMINISTRATOR, R.COMPANY_MANAGER, R.SALES_MANAGER, R.MARKETING_MANAGER, R.SALESPERSON, R.JR_SALESPERSON}
EVERYONE = STAFF | {R.CLIENT}
# SPEC ROLE-1, row by row.
OVERVIEW = STAFF  # Billing Overview, clients, invoices
OVERVIEW_ALL = {R.ADMINISTRATOR, R.COMPANY_MANAGER, R.SALES_MANAGER, R.MARKETING_MANAGER}  # all clients
WITH_AMOUNTS = STAFF - {R.JR_SALESPERSON}  # PDFs carry amounts
CONFIGURE = {R.ADMINISTRATOR, R.COMPANY_MANAGER, R.SALES_MANAGER}  # Edit Client Configuration
REQUEST = {R.ADMINISTRATOR, R.COMPANY_MANAGER}  # request retry / Agency Invoiced
ADMIN = {R.ADMINISTRATOR}  # Billing Setup, templates, tokens

AGENCY_EXPECTED: dict[tuple[str, str], set[str]] = {
    ("get", "/api/v1/me/"): EVERYONE,
    ("get", "/api/v1/clients/"): OVERVIEW,
    ("post", "/api/v1/clients/"): CONFIGURE,
    ("get", "/api/v1/clients/{client_id}/"): OVERVIEW,
    ("patch", "/api/v1/clients/{client_id}/"): CONFIGURE,
    ("get", "/api/v1/clients/{client_id}/service-lines/"): OVERVIEW,
    ("post", "/api/v1/clients/{client_id}/service-lines/"): CONFIGURE,
    ("delete", "/api/v1/clients/{client_id}/service-lines/{line_id}/"): CONFIGURE,
    ("get", "/api/v1/clients/{client_id}/payment-method/"): OVERVIEW,
    ("post", "/api/v1/clients/{client_id}/payment-method/"): CONFIGURE,
    ("post", "/api/v1/clients/{client_id}/agency-invoiced-requests/"): REQUEST,
    ("get", "/api/v1/clients/{client_id}/next-invoice/"): OVERVIEW,  # CYC-1: read the client's schedule
    ("get", "/api/v1/tax-rates/"): OVERVIEW,
    ("post", "/api/v1/tax-rates/"): CONFIGURE,
    ("get", "/api/v1/usage-records/"): OVERVIEW,
    ("post", "/api/v1/usage-records/"): CONFIGURE,
    ("get", "/api/v1/invoices/"): OVERVIEW,
    ("get", "/api/v1/invoices/{invoice_id}/"): OVERVIEW,
    ("get", "/api/v1/invoices/{invoice_id}/pdf/"): WITH_AMOUNTS,
    # COR-1/COR-2: credit notes are issued by whoever edits the client's configuration; reading follows the invoices.
    ("get", "/api/v1/invoices/{invoice_id}/credit-notes/"): OVERVIEW,
    ("post", "/api/v1/invoices/{invoice_id}/credit-notes/"): CONFIGURE,
    ("get", "/api/v1/credit-notes/"): OVERVIEW,
    ("get", "/api/v1/credit-notes/{credit_note_id}/"): OVERVIEW,
    ("get", "/api/v1/credit-notes/{credit_note_id}/pdf/"): WITH_AMOUNTS,
    ("get", "/api/v1/disputes/"): OVERVIEW,
    ("get", "/api/v1/charges/"): OVERVIEW,
    ("get", "/api/v1/charges/{charge_id}/"): OVERVIEW,
    ("post", "/api/v1/charges/{charge_id}/retry-requests/"): REQUEST,
    ("get", "/api/v1/support-requests/"): OVERVIEW,
    ("get", "/api/v1/notices/"): OVERVIEW_ALL,
    ("get", "/api/v1/margins/"): OVERVIEW_ALL,
    ("get", "/api/v1/clients/{client_id}/margins/"): OVERVIEW_ALL,
    ("get", "/api/v1/clients/{client_id}/ledger/"): OVERVIEW,
    ("get", "/api/v1/clients/{client_id}/balance/"): OVERVIEW,
    ("get", "/api/v1/balances/"): OVERVIEW,
    # The agency's own books with the platform are not a client's: for those who see every client.
    ("get", "/api/v1/platform-invoices/"): OVERVIEW_ALL,
    ("get", "/api/v1/platform-invoices/{platform_invoice_id}/"): OVERVIEW_ALL,
    ("get", "/api/v1/platform-invoices/{platform_invoice_id}/pdf/"): OVERVIEW_ALL,
    ("get", "/api/v1/platform-ledger/"): OVERVIEW_ALL,
    ("get", "/api/v1/platform-balance/"): OVERVIEW_ALL,
    ("get", "/api/v1/billing-settings/"): ADMIN,
    ("patch", "/api/v1/billing-settings/"): ADMIN,
    ("get", "/api/v1/billing-settings/next-invoice/"): ADMIN,  # CYC-1: the Billing Setup's billing day
    ("get", "/api/v1/email-templates/"): ADMIN,
    ("get", "/api/v1/email-templates/{kind}/"): ADMIN,
    ("put", "/api/v1/email-templates/{kind}/"): ADMIN,
    ("delete", "/api/v1/email-templates/{kind}/"): ADMIN,
    ("post", "/api/v1/email-templates/{kind}/preview/"): ADMIN,
    ("get", "/api/v1/api-tokens/"): ADMIN,
    ("post", "/api/v1/api-tokens/"): ADMIN,
    ("delete", "/api/v1/api-tokens/{token_id}/"): ADMIN,
    ("get", "/api/v1/webhook-endpoints/"): ADMIN,
    ("post", "/api/v1/webhook-endpoints/"): ADMIN,
    ("get", "/api/v1/webhook-endpoints/{endpoint_id}/"): ADMIN,
    ("patch", "/api/v1/webhook-endpoints/{endpoint_id}/"): ADMIN,
    ("delete", "/api/v1/webhook-endpoints/{endpoint_id}/"): ADMIN,
    ("get", "/api/v1/webhook-deliveries/"): ADMIN,
    ("get", "/api/v1/webhook-deliveries/{delivery_id}/"): ADMIN,
    ("post", "/api/v1/webhook-deliveries/{delivery_id}/redeliver/"): ADMIN,
    ("post", "/api/v1/webhook-endpoints/{endpoint_id}/roll-secret/"): ADMIN,
    ("get", "/api/v1/invitations/"): ADMIN,  # users
    ("post", "/api/v1/invitations/{invitation_id}/resend/"): ADMIN,
    ("post", "/api/v1/invitations/{invitation_id}/revoke/"): ADMIN,
    ("get", "/api/v1/agency-payment-method/"): ADMIN,  # Billing Setup
    ("post", "/api/v1/agency-payment-method/"): ADMIN,
    ("get", "/api/v1/payout-account/"): ADMIN,
    ("post", "/api/v1/payout-account/onboarding-links/"): ADMIN,
    ("get", "/api/v1/funds/"): OVERVIEW_ALL,  # every client's money
    ("get", "/api/v1/payouts/"): OVERVIEW_ALL,
    ("get", "/api/v1/payouts/{payout_id}/"): OVERVIEW_ALL,
}
_operations = operations


def _call(http, method, url):
    return http.get(url) if method == "get" else getattr(http, method)(url, data={}, format="json")


def test_ROLE_1_every_agency_operation_is_classified():
    assert set(_operations(AGENCY_DOCUMENT)) == set(AGENCY_EXPECTED)


@pytest.mark.parametrize("role", sorted(EVERYONE))
def test_ROLE_1_each_role_gets_exactly_the_matrix_on_the_agency_api(shared_world, agency_a, role):
    world = shared_world
    http = authed(agency_a, f"role-{role.lower()}@alpha.test", role)
    wrong = []
    for method, path in _operations(AGENCY_DOCUMENT):
        response = _call(http, method, fill(path, world.ids))
        allowed = role in AGENCY_EXPECTED[(method, path)]
        if allowed and response.status_code in (401, 403):
            wrong.append((method, path, "refused", response.status_code, response.content[:120]))
        if not allowed and (response.status_code != 403 or response.json()["code"] != "permission_denied"):
            wrong.append((method, path, "allowed", response.status_code))
    assert not wrong, wrong


@pytest.mark.parametrize(("role", "allowed"), [(Role.BILLING_SUPPORT, True), (Role.CLIENT, False)])
def test_ROLE_1_only_billing_support_uses_the_platform_api(shared_world, agency_a, role, allowed):
    world = shared_world
    ids = {
        "client_id": world.ids["client_id"],
        "charge_id": world.ids["charge_id"],
        "invitation_id": world.ids["invitation_id"],
        "plan_id": str(agency_a.plan_id),
        "token_id": "00000000-0000-4000-8000-000000000000",
    }
    http = authed(None, f"platform-{role.lower()}@platform.test", role)
    wrong = []
    for method, path in _operations(PLATFORM_DOCUMENT):
        response = _call(http, method, fill(path, ids))
        if path == "/api/v1/me/":
            assert response.status_code == 200
            continue
        if allowed and response.status_code in (401, 403):
            wrong.append((method, path, "refused", response.status_code))
        if not allowed and response.status_code != 403:
            wrong.append((method, path, "allowed", response.status_code))
    assert not wrong, wrong


def test_ROLE_1_jr_salesperson_sees_statuses_not_amounts(shared_world, agency_a):
    """ROLE-1: Jr. Salesperson — own clients, statuses only; Salesperson — own clients with amounts."""
    from django_tenants.utils import schema_context

    world = shared_world
    seller_http = api(agency_a, token_for(agency_a, world.salesperson.email, Role.SALESPERSON))
    detail = seller_http.get(f"/api/v1/invoices/{world.ids['invoice_id']}/").json()
    assert detail["total_minor"] > 0 and all(line["amount_minor"] is not None for line in detail["lines"])
    with schema_context(agency_a.schema_name):
        world.salesperson.role = Role.JR_SALESPERSON
        world.salesperson.save(update_fields=["role"])
    junior = api(agency_a, token_for(agency_a, world.salesperson.email, Role.JR_SALESPERSON))
    detail = junior.get(f"/api/v1/invoices/{world.ids['invoice_id']}/").json()
    assert detail["status"] == "RETRYING"
    assert detail["total_minor"] is None and detail["subtotal_minor"] is None and detail["tax_minor"] is None
    assert all(line["amount_minor"] is None for line in detail["lines"])
    charge = junior.get(f"/api/v1/charges/{world.ids['charge_id']}/").json()
    assert charge["status"] == "RETRYING" and charge["amount_minor"] is None
    assert all(attempt["amount_minor"] is None for attempt in charge["attempts"])
    client = junior.get(f"/api/v1/clients/{world.ids['client_id']}/").json()
    assert client["license_price_minor"] is None
