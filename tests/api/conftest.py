"""API test fixtures: a token client per host and role, and agencies populated with one object of every kind
the API exposes (so tests can be generated over the URL list)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context, tenant_context
from rest_framework.test import APIClient

from accounts.invitations import invitation_issue
from accounts.models import Role, User
from accounts.tokens import api_token_create
from agencybilling import seed
from billing.corrections import credit_note_issue
from billing.models import Charge, Invoice, SupportRequest
from billing.payouts import payout_sync
from billing.platform.models import AgencyCharge, AgencyInvoice, Payout, SandboxPayout
from billing.statuses import CreditOutcome
from billing.support import retry_request
from clients.services import tax_rate_create
from integrations.models import WebhookDelivery
from integrations.services import endpoint_create
from tests.billing_helpers import ONBOARDED_ON, at, usage, with_plan
from tests.conftest import ensure_agency, module_transaction

BILLING_DATE = date(2027, 1, 1)


def token_for(agency, email: str, role: str) -> str:
    """A user of `role` in the agency's schema (or public for None) and a fresh API token of theirs."""
    with schema_context(agency.schema_name if agency else "public"):
        user = User.objects.filter(email=email).first() or User.objects.create_user(
            email, "pw-correct-horse-9", role=role
        )
        admin_role = Role.BILLING_SUPPORT if agency is None else Role.ADMINISTRATOR
        actor = (
            user
            if user.role == admin_role
            else (
                User.objects.filter(role=admin_role).first()
                or User.objects.create_user(f"token-admin@{agency.schema_name}.test", "x", role=admin_role)
            )
        )
        _, secret = api_token_create(actor=actor, name=f"test {role}", owner=user)
    return secret


def authed(agency, email: str, role: str) -> APIClient:
    """An API client acting as a new user of `role`: by token for roles that may hold one, else by session
    (client users and other non-staff roles cannot get tokens, but can sign in)."""
    from accounts.models import AGENCY_STAFF_ROLES

    token_roles = {Role.BILLING_SUPPORT} if agency is None else set(AGENCY_STAFF_ROLES)
    if role in token_roles:
        return api(agency, token_for(agency, email, role))
    with schema_context(agency.schema_name if agency else "public"):
        User.objects.create_user(email, "pw-correct-horse-9", role=role)
        http = api(agency)
        assert http.login(email=email, password="pw-correct-horse-9")
    return http


def api(agency, secret: str | None = None) -> APIClient:
    client = APIClient(HTTP_HOST=f"{agency.schema_name}.localhost" if agency else "localhost")
    if secret:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@dataclass
class World:
    """One object of every kind in one agency, by the path parameter that names it."""

    agency: object
    ids: dict[str, str] = field(default_factory=dict)
    salesperson: object = None
    own_client: object = None
    other_client: object = None  # no salesperson: invisible to salespeople
    other_ids: dict[str, str] = field(default_factory=dict)


def populate(agency, *, with_webhook: bool = True) -> World:
    """Plan, tax rate, clients (one with a failing card, so the charge is Retrying and notices exist), service
    line, usage, a billing day, a retry request, a webhook endpoint with a delivery."""
    agency = with_plan(agency)
    seed.payouts_ready(agency, today=ONBOARDED_ON)
    world = World(agency)
    tag = agency.schema_name
    with tenant_context(agency):
        seller = User.objects.create_user(f"seller@{tag}.test", "pw-correct-horse-9", role=Role.SALESPERSON)
        admin = User.objects.filter(role=Role.ADMINISTRATOR).first() or User.objects.create_user(
            f"admin@{tag}.test", "pw-correct-horse-9", role=Role.ADMINISTRATOR
        )
        rate = tax_rate_create(name="Sales tax", rate_percent="8.25")
        client = seed.client(
            name=f"{agency.name} Client",
            email=f"client@{tag}.example",
            activated_on=date(2026, 12, 1),
            license_price_minor=19900,
            taxes=[rate],
            salesperson=seller,
            services=[("SEO retainer", 5000)],
            outcome=seed.Outcome.DECLINING,
            method_tag=tag,
        )
        line = client.service_lines.get()
        usage(agency, client, "listings", 120, at(date(2026, 12, 15)), f"{tag}-u1")
        # No salesperson and no payment method: Uncollectable at once (COL-4), invisible to salespeople.
        other = seed.client(
            name=f"{agency.name} House Account",
            email=f"house@{tag}.example",
            activated_on=date(2026, 12, 1),
            license_price_minor=10000,
            services=[("Reporting", 2500)],
        )
        other_line = other.service_lines.get()
        if with_webhook:
            endpoint, _ = endpoint_create(url="http://127.0.0.1:9/hooks", created_by=admin.email)
    seed.run_days(agency, [BILLING_DATE])
    with tenant_context(agency):
        charge = Charge.objects.get(client=client)
        retry_request(charge=charge, user=admin, reason="client updated card")
        invoice = Invoice.objects.get(client=client)
        other_invoice = Invoice.objects.get(client=other)
        # A credit note of each client, kept as credit (COR-1): the charges they reduce stay Retrying/Uncollectable.
        note, other_note = (
            credit_note_issue(
                invoice=corrected,
                user=admin,
                reason="Goodwill",
                outcome=CreditOutcome.CREDIT,
                amount_minor=amount,
                today=BILLING_DATE,
            )
            for corrected, amount in ((invoice, 500), (other_invoice, 700))
        )
        world.ids.update(
            {
                "client_id": str(client.public_id),
                "line_id": str(line.public_id),
                "invoice_id": str(invoice.public_id),
                "charge_id": str(charge.public_id),
                "tax_rate_id": str(rate.public_id),
                "support_request_id": str(SupportRequest.objects.get(client=client).public_id),
                "platform_invoice_id": str(AgencyInvoice.objects.get(agency=agency).public_id),
                # The agency's own charge for that invoice (PAY-3): billing support retries it by hand (RET-4).
                "agency_charge_id": str(AgencyCharge.objects.get(invoice__agency=agency).public_id),
                "credit_note_id": str(note.public_id),
            }
        )
        if with_webhook:
            world.ids["endpoint_id"] = str(endpoint.public_id)
            world.ids["delivery_id"] = str(WebhookDelivery.objects.filter(endpoint=endpoint).first().public_id)
        invited = User.objects.create_user(f"invited@{agency.schema_name}.test", None, role=Role.SALESPERSON)
        world.ids["invitation_id"] = str(
            invitation_issue(user=invited, actor=admin, now=timezone.now()).invitation.public_id
        )
        world_token, _ = api_token_create(actor=admin, name="world admin")
        world.ids["token_id"] = str(world_token.public_id)
        # A payout the processor reports to the agency's account (PAY-4), read through the product.
        SandboxPayout.objects.create(
            reference=f"po_sbx_world_{tag}",
            destination=agency.connected_account_id,
            amount_minor=0,
            currency=agency.currency,
            arrival_on=BILLING_DATE,
            intents=[],
        )
        payout_sync(agency=agency, reference=f"po_sbx_world_{tag}")
        world.ids["payout_id"] = str(Payout.objects.get(reference=f"po_sbx_world_{tag}").public_id)
        world.other_client = other
        world.other_ids = {
            "client_id": str(other.public_id),
            "line_id": str(other_line.public_id),
            "invoice_id": str(other_invoice.public_id),
            "charge_id": str(Charge.objects.get(client=other).public_id),
            "credit_note_id": str(other_note.public_id),
        }
        world.salesperson = seller
        world.own_client = client
    return world


@pytest.fixture(scope="module")
def shared_world(django_db_setup, django_db_blocker) -> Iterator[World]:
    """`populate(agency_a)` built once per module for tests that only read it or whose changes are rolled back
    (not transactional tests): each test runs in a savepoint of the module's transaction."""
    with module_transaction(django_db_blocker):
        with django_db_blocker.unblock():
            world = populate(ensure_agency("alpha"))
        yield world


@pytest.fixture(scope="module")
def shared_worlds(django_db_setup, django_db_blocker) -> Iterator[tuple[World, World]]:
    """`populate` of both agencies (alpha, beta) built once per module; see `shared_world`."""
    with module_transaction(django_db_blocker):
        with django_db_blocker.unblock():
            worlds = populate(ensure_agency("alpha")), populate(ensure_agency("beta"))
        yield worlds


def fill(path: str, ids: dict[str, str]) -> str:
    """/api/v1/clients/{client_id}/ → /api/v1/clients/<id>/ with the given ids (email template kinds: a kind)."""
    import re

    values = {"kind": "PAYMENT_FAILED", "slug": "alpha", **ids}
    if path.startswith("/api/v1/agency-charges/") and "agency_charge_id" in ids:
        values["charge_id"] = ids["agency_charge_id"]  # the platform's charges to the agency, not a client's
    return re.sub(r"{(\w+)}", lambda m: values[m.group(1)], path)
