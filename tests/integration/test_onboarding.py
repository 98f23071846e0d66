"""Agency onboarding (ONB-1): the platform creates an agency with its plan and first Administrator through the API,
the console's form and `manage.py agency_create`; the Administrator's invitation is mailed through the agency's
notice outbox (read back from a real SMTP server), its link works once and expires; invitations are resent and
revoked; the first billing-support user is made by a documented command."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context, schema_exists

from accounts.invitations import invitation_accept, invitation_issue
from accounts.models import Invitation, Role, User
from notifications.models import Notice, OutboxStatus
from tenants.models import Agency
from tests.api.conftest import api, token_for
from tests.billing_helpers import standard_plan
from tests.conftest import host_client
from tests.onboarding_helpers import drop_agency, invitation_path, mailed_links

pytestmark = pytest.mark.django_db(transaction=True)

NEW = ("newco", "otherco", "cmdco", "formco")


@pytest.fixture(autouse=True)
def _drop_new_agencies(settings):
    settings.SITE_URL = "http://localhost:8123"
    for slug in NEW:
        drop_agency(slug)
    yield
    for slug in NEW:
        drop_agency(slug)


@pytest.fixture
def support_api():
    return api(None, token_for(None, "ops@platform.test", Role.BILLING_SUPPORT))


def _body(**overrides):
    body = {
        "slug": "newco",
        "name": "New Co Marketing",
        "plan": standard_plan().pk,
        "administrator": {"email": "Owner@NewCo.example", "first_name": "Ada", "last_name": "Owner"},
        "time_zone": "Europe/Paris",
        "billing_day": 5,
    }
    body.update(overrides)
    return body


def test_ONB_1_api_creates_the_agency_and_mails_a_link_that_sets_the_password_once(
    support_api, smtp_server, eager_tasks
):
    response = support_api.post("/api/v1/agencies/", _body(), format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["slug"] == "newco" and data["currency"] == "USD" and data["billing_day"] == 5
    assert data["administrator"]["email"] == "owner@newco.example"
    assert data["administrator"]["invitation"]["status"] == "pending"
    agency = Agency.objects.get(schema_name="newco")
    assert agency.plan == standard_plan() and agency.time_zone == "Europe/Paris"

    [message] = smtp_server.messages
    assert message["To"] == "owner@newco.example"
    assert message["Subject"] == "You are invited to New Co Marketing billing"
    [link] = [u for u in mailed_links(message) if "/invitations/" in u]
    assert link.startswith("http://newco.localhost:8123/invitations/")  # the deployment's scheme, host and port
    with schema_context("newco"):
        notice = Notice.objects.get(kind="INVITATION")
        assert notice.status == OutboxStatus.SENT
        admin = User.objects.get(email="owner@newco.example")
        assert admin.role == Role.ADMINISTRATOR and not admin.has_usable_password()

    browser = host_client(agency)
    page = browser.get(invitation_path(link))
    assert page.status_code == 200 and b"owner@newco.example" in page.content
    done = browser.post(invitation_path(link), {"password": "tulip-harbour-97", "password_again": "tulip-harbour-97"})
    assert done.status_code == 302
    assert browser.get("/billing/").status_code == 200  # signed in as the Administrator

    # Works once: a second use is refused and changes nothing.
    again = host_client(agency).post(
        invitation_path(link), {"password": "other-pass-4242", "password_again": "other-pass-4242"}
    )
    assert again.status_code == 410 and b"already been used" in again.content
    with schema_context("newco"):
        admin.refresh_from_db()
        assert admin.check_password("tulip-harbour-97") and not admin.check_password("other-pass-4242")
        assert host_client(agency).login(email="owner@newco.example", password="tulip-harbour-97")


def test_ONB_1_bad_requests_create_nothing(support_api):
    cases = [
        ({"administrator": {"email": "not-an-email"}}, "administrator"),
        ({"plan": 999999}, "plan"),
        ({"slug": "public"}, "slug"),
        ({"slug": "Bad Slug"}, "slug"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"currency": "EUR"}, "plan"),  # the plan bills in USD
    ]
    for overrides, field in cases:
        response = support_api.post("/api/v1/agencies/", _body(**overrides), format="json")
        assert response.status_code == 400, (overrides, response.content)
        body = response.json()
        assert body["code"] and body["message"] and any(k.startswith(field) for k in body["fields"]), body
    without_admin = _body()
    del without_admin["administrator"]
    assert support_api.post("/api/v1/agencies/", without_admin, format="json").status_code == 400
    assert not Agency.objects.filter(schema_name="newco").exists() and not schema_exists("newco")


def test_ONB_1_an_expired_link_is_refused_and_changes_nothing(support_api):
    assert support_api.post("/api/v1/agencies/", _body(), format="json").status_code == 201
    agency = Agency.objects.get(schema_name="newco")
    with schema_context("newco"):
        admin = User.objects.get(email="owner@newco.example")
        issued = invitation_issue(user=admin, actor="test", now=timezone.now() - timedelta(days=8))
    page = host_client(agency).post(
        invitation_path(issued.url), {"password": "tulip-harbour-97", "password_again": "tulip-harbour-97"}
    )
    assert page.status_code == 410 and b"expired" in page.content
    with schema_context("newco"):
        admin.refresh_from_db()
        assert not admin.has_usable_password()
        assert Invitation.objects.get(pk=issued.invitation.pk).accepted_at is None


def test_ONB_1_resend_kills_the_old_link_and_revoke_kills_the_new_one(support_api, smtp_server, eager_tasks, agency_a):
    assert support_api.post("/api/v1/agencies/", _body(), format="json").status_code == 201
    agency = Agency.objects.get(schema_name="newco")
    [first_mail] = smtp_server.messages
    [first] = [u for u in mailed_links(first_mail) if "/invitations/" in u]
    listed = support_api.get("/api/v1/agencies/newco/invitations/").json()["results"]
    [pending] = listed
    resent = support_api.post(f"/api/v1/agencies/newco/invitations/{pending['id']}/resend/", {}, format="json")
    assert resent.status_code == 201, resent.content
    assert len(smtp_server.messages) == 2
    [second] = [u for u in mailed_links(smtp_server.messages[1]) if "/invitations/" in u]
    assert second != first
    old = host_client(agency).get(invitation_path(first))
    assert old.status_code == 410 and b"withdrawn" in old.content
    assert host_client(agency).get(invitation_path(second)).status_code == 200

    revoked = support_api.post(f"/api/v1/agencies/newco/invitations/{resent.json()['id']}/revoke/", {}, format="json")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    refused = host_client(agency).post(
        invitation_path(second), {"password": "tulip-harbour-97", "password_again": "tulip-harbour-97"}
    )
    assert refused.status_code == 410
    unknown = host_client(agency).get("/invitations/not-a-real-token/")
    assert unknown.status_code == 404 and b"not valid" in unknown.content
    # Another agency's invitation id names nothing here (TEN-2).
    assert support_api.post(
        f"/api/v1/agencies/alpha/invitations/{pending['id']}/resend/", {}, format="json"
    ).status_code in (404,)


def test_ONB_1_password_rules_are_shown_and_the_link_still_works(support_api):
    support_api.post("/api/v1/agencies/", _body(), format="json")
    with schema_context("newco"):
        admin = User.objects.get(email="owner@newco.example")
        issued = invitation_issue(user=admin, actor="test", now=timezone.now())
    agency = Agency.objects.get(schema_name="newco")
    short = host_client(agency).post(invitation_path(issued.url), {"password": "abc", "password_again": "abc"})
    assert short.status_code == 400 and b"too short" in short.content
    with schema_context("newco"):
        assert invitation_accept(
            token=issued.token, password="tulip-harbour-97", password_again="tulip-harbour-97", now=timezone.now()
        ).check_password("tulip-harbour-97")


def test_ONB_1_console_form_creates_an_agency_and_shows_field_errors(smtp_server, eager_tasks):
    from tests.conftest import login_client, make_user

    make_user(None, "support@platform.test", Role.BILLING_SUPPORT)
    console = login_client(None, "support@platform.test")
    form = {
        "name": "Form Co",
        "slug": "formco",
        "plan": str(standard_plan().pk),
        "time_zone": "America/Chicago",
        "billing_day": "12",
        "admin_email": "boss@formco.example",
    }
    bad = console.post("/agencies/new/", {**form, "slug": "alpha"})
    assert bad.status_code == 400 and b"already exists" in bad.content
    assert console.post("/agencies/new/", {**form, "admin_email": ""}).status_code == 400
    created = console.post("/agencies/new/", form)
    assert created.status_code == 302 and created["Location"] == "/agencies/formco/"
    agency = Agency.objects.get(schema_name="formco")
    assert agency.billing_day == 12 and agency.time_zone == "America/Chicago"
    assert [m["To"] for m in smtp_server.messages] == ["boss@formco.example"]
    page = console.get("/agencies/formco/")
    assert b"boss@formco.example" in page.content and b"Pending" in page.content


def test_ONB_1_agency_create_command(smtp_server, eager_tasks):
    out = io.StringIO()
    call_command(
        "agency_create",
        "--slug=cmdco",
        "--name=Command Co",
        f"--plan={standard_plan().name}",
        "--admin-email=admin@cmdco.example",
        "--time-zone=Europe/Berlin",
        stdout=out,
    )
    assert "Agency 'cmdco' created" in out.getvalue()
    assert "http://cmdco.localhost:8123/invitations/" in out.getvalue()
    assert [m["To"] for m in smtp_server.messages] == ["admin@cmdco.example"]
    with pytest.raises(CommandError) as excinfo:
        call_command("agency_create", "--slug=cmdco", "--name=Again", "--plan=Standard", "--admin-email=a@b.example")
    assert "already exists" in str(excinfo.value) and "\n" not in str(excinfo.value)
    with pytest.raises(CommandError, match="no partner plan"):
        call_command("agency_create", "--slug=otherco", "--name=X", "--plan=Nope", "--admin-email=a@b.example")
    assert not schema_exists("otherco")


def test_ONB_1_support_user_create_command_prints_a_one_time_link():
    connection.set_schema_to_public()
    out = io.StringIO()
    call_command("support_user_create", "--email=First@Platform.example", stdout=out)
    [link] = [w for w in out.getvalue().split() if "/invitations/" in w]
    assert link.startswith("http://localhost:8123/invitations/")
    user = User.objects.get(email="first@platform.example")
    assert user.role == Role.BILLING_SUPPORT and not user.has_usable_password()
    done = host_client(None).post(
        invitation_path(link), {"password": "tulip-harbour-97", "password_again": "tulip-harbour-97"}
    )
    assert done.status_code == 302
    console = host_client(None)
    assert console.login(email="first@platform.example", password="tulip-harbour-97")
    assert console.get("/").status_code == 200
    with pytest.raises(CommandError, match="already exists"):
        call_command("support_user_create", "--email=first@platform.example")
