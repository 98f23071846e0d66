"""The server-rendered pages over real PostgreSQL: INV-2, INV-3, ROLE-1, TEN-2, PLAN-1, PLAN-2, COL-1, RET-4.
Forms refuse bad input next to the field and keep what was typed; nothing changes."""

from __future__ import annotations

import re
import time
from datetime import date

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from accounts.models import AuditEntry, Role, User
from billing.models import BillingSettings, Charge, Invoice, SupportRequest
from billing.platform.models import AgencyInvoice
from billing.statuses import ChargeStatus
from clients.models import Client, ClientUser
from notifications.catalog import NoticeKind
from notifications.models import Notice, NoticeTemplate
from tests.conftest import host_client, login_client, make_user
from tests.ui_helpers import billed_agency, pdf_text

pytestmark = pytest.mark.django_db

PW = "pw-correct-horse-9"


@pytest.fixture
def scenario(agency_a):
    return billed_agency(agency_a)


def _field_error(html: str, field_id: str) -> str:
    """The error paragraph tied to an input by aria-describedby, or ''."""
    match = re.search(rf'<p class="field-error" id="{field_id}_error"[^>]*>(.*?)</p>', html, re.S)
    if match:
        assert (
            re.search(rf'id="{field_id}"[^>]*aria-invalid="true"|aria-invalid="true"[^>]*id="{field_id}"', html)
            or f'aria-describedby="{field_id}_error"' in html
            or f'{field_id}_error"' in html
        )
    return match.group(1).strip() if match else ""


# --- Billing Overview (INV-2) ------------------------------------------------------------------------------


def test_INV_2_overview_shows_month_charges_agency_invoice_and_pages_months(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    page = http.get("/billing/?month=2027-02")
    assert page.status_code == 200
    html = page.content.decode()
    assert "February 2027" in html
    for client in (scenario.paying, scenario.declining, scenario.junior_client):
        assert client.name in html
    with schema_context("alpha"):
        invoice = Invoice.objects.get(client=scenario.paying, period_start=date(2027, 2, 1))
        attempts_declining = Charge.objects.get(client=scenario.declining, due_on=date(2027, 2, 1)).attempts.count()
    assert f'href="/invoices/{invoice.public_id}/pdf"' in html  # clicking a client downloads its PDF
    assert "486.05" in html  # 199.00 + 250.00 + 8.25 % tax on both
    assert 'href="?month=2027-01"' in html and "&lt; Prev" in html
    agency_invoice = AgencyInvoice.objects.get(agency=scenario.agency, due_on=date(2027, 2, 1))
    assert agency_invoice.number in html
    assert attempts_declining == 1
    # < Prev reaches January; no month before the first invoice.
    january = http.get("/billing/?month=2027-01").content.decode()
    assert "January 2027" in january and 'href="?month=2026-12"' not in january
    assert 'href="?month=2027-02"' in january  # Next >


def test_INV_2_status_filter_and_htmx_partial(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    html = http.get("/billing/?month=2027-01&status=RETRYING").content.decode()
    table = html.split('id="charges"')[1]
    assert scenario.declining.name in table and scenario.paying.name not in table
    with schema_context("alpha"):
        paid_status = Charge.objects.get(client=scenario.paying, due_on=date(2027, 1, 1)).status
    assert paid_status == ChargeStatus.PAID_OUT  # paid, then paid out 3 business days later (PAY-2)
    partial = http.get(
        f"/billing/?month=2027-01&status={paid_status}", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="charges"
    )
    body = partial.content.decode()
    assert body.lstrip().startswith('<div id="charges">') and "<html" not in body
    assert scenario.paying.name in body and scenario.declining.name not in body


def test_INV_2_chart_has_twelve_months_of_billed_collected_outstanding(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    html = http.get("/billing/?month=2027-02").content.decode()
    # The agency's first invoices are January's: the chart starts there, with no empty months before.
    assert html.count('class="bar-billed"') == 2
    assert html.count('class="bar-collected"') == 2 and html.count('class="bar-outstanding"') == 2
    with schema_context("alpha"):
        feb = Charge.objects.filter(invoice__period_start=date(2027, 2, 1))
        billed = sum(c.amount_minor for c in feb)
        collected = sum(c.amount_minor for c in feb if c.status in (ChargeStatus.PAID, ChargeStatus.PAID_OUT))
    from core.money import format_minor

    assert f"February 2027 billed: {format_minor(billed, 'USD')} USD" in html
    assert f"February 2027 collected: {format_minor(collected, 'USD')} USD" in html


def test_INV_2_twelve_month_totals_leave_the_planner_setting_as_they_found_it(scenario):
    """The totals query is planned with an in-memory page cost; the connection's own setting comes back."""
    from billing.overview import twelve_months

    with schema_context("alpha"), connection.cursor() as cursor:
        cursor.execute("SHOW random_page_cost")
        before = cursor.fetchone()[0]
        months = twelve_months(last_month=date(2027, 2, 1))
        cursor.execute("SHOW random_page_cost")
        assert cursor.fetchone()[0] == before != "1.1"
    assert len(months) == 12 and months[-1].billed_minor > 0


def test_INV_2_client_pdf_download_matches_invoice_numbers(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    with schema_context("alpha"):
        invoice = Invoice.objects.get(client=scenario.paying, period_start=date(2027, 1, 1))
    response = http.get(f"/invoices/{invoice.public_id}/pdf")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert f'filename="invoice-{invoice.number}.pdf"' in response["Content-Disposition"]
    text = pdf_text(response.content)
    assert invoice.number in text and "486.05 USD" in text and "Paid" in text


def test_ROLE_1_jr_salesperson_sees_own_clients_statuses_only(scenario):
    http = login_client(scenario.agency, scenario.junior.email)
    html = http.get("/billing/?month=2027-01").content.decode()
    assert scenario.junior_client.name in html
    assert scenario.paying.name not in html and scenario.declining.name not in html
    assert "Uncollectable" in html  # the status of the Jr.'s client (no payment method, COL-4)
    assert "49.00" not in html and "Amount" not in html and "Billed" not in html and 'class="bar-' not in html
    assert "/pdf" not in html
    with schema_context("alpha"):
        own = Invoice.objects.get(client=scenario.junior_client, period_start=date(2027, 1, 1))
        other = Invoice.objects.get(client=scenario.paying, period_start=date(2027, 1, 1))
    assert http.get(f"/invoices/{own.public_id}/pdf").status_code == 403  # statuses only: no amounts
    assert http.get(f"/invoices/{other.public_id}/pdf").status_code == 404  # not theirs: not there
    client_page = http.get(f"/clients/{scenario.junior_client.public_id}/").content.decode()
    assert "49.00" not in client_page and "Uncollectable" in client_page
    assert http.get(f"/clients/{scenario.paying.public_id}/").status_code == 404
    assert http.get("/setup/").status_code == 403 and http.get("/plan/").status_code == 403


def test_ROLE_1_salesperson_sees_own_clients_with_amounts(scenario):
    http = login_client(scenario.agency, scenario.seller.email)
    html = http.get("/billing/?month=2027-01").content.decode()
    assert scenario.paying.name in html and scenario.junior_client.name not in html
    assert "486.05" in html
    assert "Your invoice from the platform" not in html  # the agency's own invoice is not theirs to see


@pytest.mark.parametrize(
    "role, config, request_buttons, admin_pages",
    [
        (Role.ADMINISTRATOR, True, True, True),
        (Role.COMPANY_MANAGER, True, True, False),
        (Role.SALES_MANAGER, True, False, False),
        (Role.MARKETING_MANAGER, False, False, False),
    ],
)
def test_ROLE_1_matrix_on_client_configuration_and_admin_pages(scenario, role, config, request_buttons, admin_pages):
    email = f"{role.lower()}@alpha.test"
    make_user(scenario.agency, email, role)
    http = login_client(scenario.agency, email)
    html = http.get(f"/clients/{scenario.declining.public_id}/").content.decode()
    assert ("Save configuration" in html) is config
    assert ("Request retry" in html) is request_buttons
    assert ("Request Agency Invoiced" in html) is request_buttons
    post = http.post(f"/clients/{scenario.declining.public_id}/", {"license_price": "1.00"})
    assert (post.status_code == 302) is config
    for path in ("/setup/", "/email-templates/", "/users/"):
        assert (http.get(path).status_code == 200) is admin_pages
    assert http.get("/plan/").status_code == 200


# --- Client Configuration (PLAN-2) and requests (RET-4, COL-1) ---------------------------------------------


def test_PLAN_2_configuration_saved_and_audited(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    with schema_context("alpha"):
        from clients.models import TaxRate

        tax = TaxRate.objects.get()
    response = http.post(
        f"/clients/{scenario.declining.public_id}/",
        {
            "license_price": "149.50",
            "taxes": [str(tax.pk)],
            "billing_day": "15",
            "autopay_days": "5, 28",
            "salesperson": str(scenario.seller.pk),
        },
    )
    assert response.status_code == 302
    with schema_context("alpha"):
        client = Client.objects.get(pk=scenario.declining.pk)
        assert (client.license_price_minor, client.billing_day, client.autopay_days) == (14950, 15, [5, 28])
        assert list(client.taxes.all()) == [tax]
        entry = AuditEntry.objects.get(action="client.configure")
        assert entry.actor == scenario.admin.email
        assert entry.before["license_price_minor"] == 9900 and entry.after["license_price_minor"] == 14950


def test_PLAN_2_negative_price_is_refused_next_to_the_field_and_input_kept(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    response = http.post(
        f"/clients/{scenario.declining.public_id}/",
        {"license_price": "-5.00", "billing_day": "", "autopay_days": "5, 40"},
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert _field_error(html, "id_license_price") == "The amount cannot be negative."
    assert _field_error(html, "id_autopay_days") == "Give days from 1 to 28, separated by commas."
    assert 'value="-5.00"' in html and 'value="5, 40"' in html
    with schema_context("alpha"):
        assert Client.objects.get(pk=scenario.declining.pk).license_price_minor == 9900
        assert not AuditEntry.objects.filter(action="client.configure").exists()


def test_PLAN_2_service_lines_added_and_removed_in_place(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    url = f"/clients/{scenario.declining.public_id}/services/"
    bad = http.post(url, {"description": "SEO", "amount": "-1"}, HTTP_HX_REQUEST="true")
    assert bad.status_code == 200 and "<html" not in bad.content.decode()
    assert _field_error(bad.content.decode(), "id_amount") == "The amount cannot be negative."
    assert 'value="SEO"' in bad.content.decode()
    good = http.post(url, {"description": "SEO", "amount": "120.00", "taxable": "on"}, HTTP_HX_REQUEST="true")
    assert "SEO" in good.content.decode() and "120.00" in good.content.decode()
    with schema_context("alpha"):
        line = scenario.declining.service_lines.get(description="SEO")
        assert line.amount_minor == 12000 and line.removed_at is None
    # Unconfirmed, the server asks first and removes nothing; confirmed, it removes the line.
    asked = http.post(f"{url}{line.public_id}/remove")
    assert asked.status_code == 200 and "Remove line" in asked.content.decode()
    with schema_context("alpha"):
        line.refresh_from_db()
        assert line.removed_at is None
    http.post(f"{url}{line.public_id}/remove", {"confirm": "yes"}, HTTP_HX_REQUEST="true")
    with schema_context("alpha"):
        line.refresh_from_db()
        assert line.removed_at is not None
        assert AuditEntry.objects.filter(action__startswith="client.service_line").count() == 2


def test_RET_4_COL_1_agency_requests_reach_billing_support(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    with schema_context("alpha"):
        charge = Charge.objects.get(client=scenario.declining, due_on=date(2027, 2, 1))
        assert charge.status == ChargeStatus.RETRYING
    http.post(f"/clients/{scenario.declining.public_id}/charges/{charge.public_id}/retry-request")
    again = http.post(f"/clients/{scenario.declining.public_id}/charges/{charge.public_id}/retry-request", follow=True)
    assert "already been requested" in again.content.decode()
    missing_reason = http.post(f"/clients/{scenario.declining.public_id}/agency-invoiced-request", {"reason": ""})
    assert missing_reason.status_code == 400
    assert _field_error(missing_reason.content.decode(), "id_reason") == "This field is required."
    http.post(f"/clients/{scenario.declining.public_id}/agency-invoiced-request", {"reason": "Pays by cheque"})
    with schema_context("alpha"):
        kinds = sorted(SupportRequest.objects.filter(status="OPEN").values_list("kind", flat=True))
    assert kinds == ["AGENCY_INVOICED", "RETRY"]
    make_user(None, "support@platform.test", Role.BILLING_SUPPORT)
    console = login_client(None, "support@platform.test").get("/").content.decode()
    assert "Pays by cheque" in console and scenario.declining.name in console


# --- Billing Setup, Email Templates, Plan, Users -----------------------------------------------------------


def _setup_post(**overrides):
    data = {
        "billing_day": "1",
        "time_zone": "America/New_York",
        "grace_period_days": "10",
        "overdue_threshold": "100.00",
        "statement_days_before": "10",
        "statement_second_after_days": "3",
        "statement_third_after_days": "",
        "overdue_second_after_days": "",
        "overdue_third_after_days": "",
        "retries_enabled": "on",
        "brand_color": "#224488",
        "address": "1 Main St",
        "email": "billing@alpha.test",
    }
    for i, category in enumerate(["OTHER", "LICENSE", "AGENCY_SERVICES", "PRODUCTS", "OVERAGE", "TAXES_FEES"], 1):
        data[f"category_{i}"] = category
    data.update(overrides)
    return data


def test_billing_setup_saves_every_setting_and_audits(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    assert http.post("/setup/", _setup_post(billing_day="15")).status_code == 302
    with schema_context("alpha"):
        settings = BillingSettings.objects.get()
        assert settings.overdue_threshold_minor == 10000 and settings.statement_second_after_days == 3
        assert settings.category_order[0] == "OTHER" and settings.retries_enabled is True
        assert AuditEntry.objects.filter(action="billing_setup.update").count() == 1
    scenario.agency.refresh_from_db()
    assert (scenario.agency.billing_day, scenario.agency.brand_color) == (15, "#224488")


def test_billing_setup_threshold_not_a_number_is_refused_and_input_kept(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    response = http.post(
        "/setup/", _setup_post(overdue_threshold="ten dollars", grace_period_days="-3", category_2="OTHER")
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert _field_error(html, "id_overdue_threshold") == "Enter an amount such as 199.00."
    assert _field_error(html, "id_grace_period_days") == "The number of days cannot be negative."
    assert 'value="ten dollars"' in html
    with schema_context("alpha"):
        assert BillingSettings.objects.get().overdue_threshold_minor == 0
    # The category order must use each category once: refused by the service, shown next to the list.
    response = http.post("/setup/", _setup_post(category_2="OTHER"))
    assert response.status_code == 400
    assert "Use each category once: Other is chosen more than once; License is missing." in (response.content.decode())


def test_email_template_syntax_error_shows_line_number_and_keeps_input(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    body = "Hello {{ client_name }},\n{% if amount %}\nYou owe {{ amount }}.\n"
    response = http.post(
        "/email-templates/PAYMENT_FAILED/", {"subject": "Failed {{ amount }}", "body": body, "action": "save"}
    )
    assert response.status_code == 400
    html = response.content.decode()
    error = _field_error(html, "id_body")
    assert error.startswith("Line ") and "endif" in error.replace("&#x27;", "'") or "end of template" in error
    assert "You owe {{ amount }}." in html  # what was typed is kept
    with schema_context("alpha"):
        assert not NoticeTemplate.objects.exists()


def test_email_template_live_preview_uses_a_real_client_and_saves(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    with schema_context("alpha"):
        client_pk = Client.objects.get(pk=scenario.declining.pk).pk
    preview = http.post(
        "/email-templates/PAYMENT_FAILED/preview",
        {
            "subject": "Hi {{ client_name }}",
            "body": "Invoice {{ invoice_number }} for {{ amount }} {{ currency }}",
            "client": str(client_pk),
        },
        HTTP_HX_REQUEST="true",
    ).content.decode()
    with schema_context("alpha"):
        latest = Charge.objects.filter(client=scenario.declining).order_by("-due_on").first().invoice.number
    assert f"Hi {scenario.declining.name}" in preview and latest in preview
    broken = http.post(
        "/email-templates/PAYMENT_FAILED/preview", {"subject": "x", "body": "{{ secret }}"}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "Unknown variable" in broken
    saved = http.post(
        "/email-templates/PAYMENT_FAILED/", {"subject": "Hi {{ client_name }}", "body": "Bye", "action": "save"}
    )
    assert saved.status_code == 302
    with schema_context("alpha"):
        assert NoticeTemplate.objects.get(kind="PAYMENT_FAILED").subject == "Hi {{ client_name }}"
        assert AuditEntry.objects.filter(action="notice_template.save").exists()


def test_PLAN_1_plan_summary_shows_the_partner_plan(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    html = http.get("/plan/").content.decode()
    assert "Standard" in html and "200.00" in html and "25.00" in html  # minimum, license fee per client
    assert "Listings" in html and "Reviews" in html and "Platform tax" in html and "5 %" in html
    assert "Processing fee" in html and "9.99" in html


def test_users_invite_by_email_then_the_invitee_sets_a_password(
    scenario, smtp_server, django_capture_on_commit_callbacks, eager_tasks
):
    http = login_client(scenario.agency, scenario.admin.email)
    bad = http.post("/users/", {"email": "not-an-email", "role": "SALESPERSON"})
    assert bad.status_code == 400 and _field_error(bad.content.decode(), "id_email") == "Enter a valid email address."
    assert 'value="not-an-email"' in bad.content.decode()
    with django_capture_on_commit_callbacks(execute=True):  # the email goes after commit
        response = http.post("/users/", {"email": "new.seller@alpha.test", "role": "SALESPERSON", "first_name": "Nia"})
    assert response.status_code == 302
    assert len(smtp_server.messages) == 1
    message = smtp_server.messages[0]
    plain = message.get_body(preferencelist=("plain",)).get_content()
    link = re.search(r"https?://alpha\.localhost(/invitations/[^\s]+/)", plain).group(1)
    invitee = host_client(scenario.agency)
    form_page = invitee.get(link)
    assert "Choose your password" in form_page.content.decode()
    done = invitee.post(link, {"password": "a-long-secret-77", "password_again": "a-long-secret-77"})
    assert done.status_code == 302
    with schema_context("alpha"):
        assert invitee.login(email="new.seller@alpha.test", password="a-long-secret-77")
        user = User.objects.get(email="new.seller@alpha.test")
        assert user.role == Role.SALESPERSON and AuditEntry.objects.filter(action="user.invite").exists()
    # Role change, audited; the last administrator cannot be demoted.
    http.post(f"/users/{user.pk}/role", {"role": "SALES_MANAGER"})
    http.post(f"/users/{scenario.admin.pk}/role", {"role": "SALESPERSON"})
    with schema_context("alpha"):
        assert User.objects.get(pk=user.pk).role == Role.SALES_MANAGER
        assert User.objects.get(pk=scenario.admin.pk).role == Role.ADMINISTRATOR


# --- Client portal (INV-3) ---------------------------------------------------------------------------------


def _portal_user(scenario, client, email="owner@paying.example"):
    user = make_user(scenario.agency, email, Role.CLIENT)
    with schema_context("alpha"):
        ClientUser.objects.create(user=user, client=client)
    return login_client(scenario.agency, email)


def test_INV_3_client_sees_own_invoice_pages_back_and_exports_pdf(scenario):
    http = _portal_user(scenario, scenario.paying)
    html = http.get("/portal/?month=2027-02").content.decode()
    with schema_context("alpha"):
        feb = Invoice.objects.get(client=scenario.paying, period_start=date(2027, 2, 1))
        jan = Invoice.objects.get(client=scenario.paying, period_start=date(2027, 1, 1))
        other = Invoice.objects.get(client=scenario.declining, period_start=date(2027, 1, 1))
    assert feb.number in html and "486.05 USD" in html and 'href="?month=2027-01"' in html
    previous = http.get("/portal/?month=2027-01").content.decode()
    assert jan.number in previous and f"/portal/invoices/{jan.public_id}/pdf" in previous
    text = pdf_text(http.get(f"/portal/invoices/{jan.public_id}/pdf").content)
    assert jan.number in text and "486.05 USD" in text
    # TEN-2: another client's invoice is not there; the staff pages are not there either.
    assert http.get(f"/portal/invoices/{other.public_id}/pdf").status_code == 404
    assert http.get(f"/invoices/{jan.public_id}/pdf").status_code == 404
    assert http.get("/billing/").status_code == 404
    assert http.get("/").url == "/portal/"


def test_portal_payment_method_replaced_with_a_sandbox_test_card(scenario):
    http = _portal_user(scenario, scenario.declining, "owner@declining.example")
    page = http.get("/portal/payment-method/").content.decode()
    assert "4242" not in page.split("On file")[1][:200]
    bad = http.post("/portal/payment-method/", {"method": "pm_card_madeup"})
    assert bad.status_code == 400 and "Select a valid choice" in bad.content.decode()
    assert http.post("/portal/payment-method/", {"method": "pm_card_mastercard"}).status_code == 302
    with schema_context("alpha"):
        methods = list(scenario.declining.payment_methods.order_by("id"))
        assert [m.removed_at is None for m in methods] == [False, True]
        assert methods[-1].brand == "mastercard" and methods[-1].last4 == "4444"
    assert "Mastercard ···· 4444" in http.get("/portal/payment-method/").content.decode()


# --- Tenancy (TEN-2) ---------------------------------------------------------------------------------------


def test_TEN_2_agency_a_user_cannot_open_any_page_or_pdf_of_agency_b(scenario, agency_b):
    other = billed_agency(agency_b, months=(date(2027, 1, 1),))
    http = login_client(scenario.agency, scenario.admin.email)
    with schema_context("beta"):
        b_invoice = Invoice.objects.filter(client=other.paying).first()
    b_agency_invoice = AgencyInvoice.objects.get(agency=other.agency)
    for path in (
        f"/invoices/{b_invoice.public_id}/pdf",
        f"/clients/{other.paying.public_id}/",
        f"/agency-invoices/{b_agency_invoice.public_id}/pdf",
    ):
        response = http.get(path)
        assert response.status_code == 404, path
        assert other.paying.name.encode() not in response.content
    # The same session cookie on B's host is nobody there.
    b_host = host_client(other.agency)
    b_host.cookies["sessionid"] = http.cookies["sessionid"].value
    assert b_host.get("/billing/").status_code == 302


# --- Billing-support console (COL-1, RET-4) ----------------------------------------------------------------


def test_COL_1_support_sets_agency_invoiced_with_reason_and_agency_sees_it(scenario):
    make_user(None, "support@platform.test", Role.BILLING_SUPPORT)
    support = login_client(None, "support@platform.test")
    found = support.get("/clients/?q=declining").content.decode()
    assert scenario.declining.name in found
    url = f"/agencies/alpha/clients/{scenario.declining.public_id}/agency-invoiced"
    refused = support.post(url, {"reason": "", "action": "set"})
    assert refused.status_code == 400 and _field_error(refused.content.decode(), "id_reason")
    assert support.post(url, {"reason": "Pays by bank transfer", "action": "set"}).status_code == 302
    with schema_context("alpha"):
        assert Client.objects.get(pk=scenario.declining.pk).agency_invoiced
        entry = AuditEntry.objects.get(action="client.agency_invoiced.set")
        assert (entry.actor, entry.reason) == ("support@platform.test", "Pays by bank transfer")
    admin = login_client(scenario.agency, scenario.admin.email)
    table = admin.get("/billing/?month=2027-02&status=AGENCY_INVOICED").content.decode().split('id="charges"')[1]
    assert scenario.declining.name in table
    audit = support.get("/audit/?agency=alpha").content.decode()
    assert "client.agency_invoiced.set" in audit and "Pays by bank transfer" in audit


def test_RET_4_support_runs_a_manual_retry_recorded_with_outcome(scenario):
    make_user(None, "support@platform.test", Role.BILLING_SUPPORT)
    support = login_client(None, "support@platform.test")
    with schema_context("alpha"):
        charge = Charge.objects.get(client=scenario.declining, due_on=date(2027, 2, 1))
    url = f"/agencies/alpha/clients/{scenario.declining.public_id}/charges/{charge.public_id}/retry"
    asked = support.post(url).content.decode()  # asked first: nothing is charged without a yes
    assert "Run retry" in asked and "Retry run:" not in asked
    with schema_context("alpha"):
        assert charge.attempts.count() == 1
    page = support.post(url, {"confirm": "yes"}, follow=True).content.decode()
    assert "Retry run: Declined" in page
    with schema_context("alpha"):
        attempts = list(charge.attempts.order_by("number").values_list("kind", "outcome"))
    assert attempts[-1] == ("MANUAL", "DECLINED") and len(attempts) == 2
    invoices = support.get("/invoices/").content.decode()
    assert AgencyInvoice.objects.filter(agency=scenario.agency).first().number in invoices
    assert support.get(f"/invoices/{AgencyInvoice.objects.first().public_id}/pdf").status_code == 200


def test_console_is_for_billing_support_only(scenario):
    make_user(None, "someone@platform.test", Role.ADMINISTRATOR)
    assert login_client(None, "someone@platform.test").get("/audit/").status_code == 403
    assert host_client(None).get("/audit/").status_code == 302


# --- Billing Overview query count does not grow with clients -----------------------------------------------


def _bulk_clients(count: int, month: date) -> None:
    """`count` clients, each with an invoice and a charge for `month` (written directly: fast)."""
    from billing.models import InvoiceLine

    start = Client.objects.count()
    clients = Client.objects.bulk_create(
        Client(
            name=f"Bulk {start + i:05d}",
            email=f"bulk{start + i}@example.com",
            license_price_minor=1000,
            activated_on=date(2026, 12, 1),
        )
        for i in range(count)
    )
    invoices = Invoice.objects.bulk_create(
        Invoice(
            client=c,
            number=f"BULK-{month:%Y%m}-{start + i:06d}",
            period_start=month,
            period_end=date(month.year + (month.month == 12), month.month % 12 + 1, 1),
            issued_on=month,
            due_on=month,
            currency="USD",
            subtotal_minor=1000,
            tax_minor=0,
            total_minor=1000,
        )
        for i, c in enumerate(clients)
    )
    InvoiceLine.objects.bulk_create(
        InvoiceLine(
            invoice=inv,
            position=1,
            category="LICENSE",
            description="License",
            unit_amount_decimal=1000,
            amount_minor=1000,
            taxable=True,
        )
        for inv in invoices
    )
    statuses = [ChargeStatus.PAID, ChargeStatus.RETRYING, ChargeStatus.SCHEDULED, ChargeStatus.UNCOLLECTABLE]
    Charge.objects.bulk_create(
        Charge(
            invoice=inv,
            client=inv.client,
            amount_minor=1000,
            currency="USD",
            billing_date=month,
            due_on=month,
            status=statuses[i % 4],
            period_start=inv.period_start,
        )
        for i, inv in enumerate(invoices)
    )
    # A real database has statistics (autovacuum keeps them); these rows sit in the test's own transaction,
    # which autovacuum cannot see, so analyse them here. Without statistics PostgreSQL plans the joins for
    # empty tables and a page takes minutes.
    with connection.cursor() as cursor:
        for table in (
            "clients_client",
            "billing_invoice",
            "billing_invoiceline",
            "billing_charge",
            "billing_chargeattempt",
        ):
            cursor.execute(f"ANALYZE {table}")


def _overview_queries(http, path: str) -> list[str]:
    connection.set_schema_to_public()
    with CaptureQueriesContext(connection) as ctx:
        response = http.get(path)
    assert response.status_code == 200
    return [q["sql"] for q in ctx.captured_queries]


@pytest.mark.slow
def test_INV_2_overview_query_count_is_constant_from_50_to_5000_clients(agency_a):
    admin = make_user(agency_a, "admin@alpha.test", Role.ADMINISTRATOR)
    month = date(2027, 1, 1)
    with schema_context("alpha"):
        _bulk_clients(50, month)
    http = login_client(agency_a, admin.email)
    path = "/billing/?month=2027-01"
    small = _overview_queries(http, path)
    with schema_context("alpha"):
        _bulk_clients(4950, month)
        assert Charge.objects.count() == 5000
        with connection.cursor() as cursor:
            # Autovacuum may not have seen 5,000 fresh rows yet; the planner needs their statistics, as in
            # production, or the filtered page's join plan depends on timing.
            cursor.execute("ANALYZE")
    large = _overview_queries(http, path)
    started = time.perf_counter()
    filtered = _overview_queries(http, path + "&status=RETRYING&page=3")
    assert time.perf_counter() - started < 5, "a filtered page must not wait on a bad join plan"
    print(f"Billing Overview queries: {len(small)} with 50 clients, {len(large)} with 5,000, {len(filtered)} filtered")
    assert len(large) == len(small), "\n".join(large)
    assert len(large) <= 15, "\n".join(large)
    assert len(filtered) <= 15
    assert sum(1 for q in large if q.upper().startswith("SET SEARCH_PATH")) == 1
    started = time.perf_counter()
    html = http.get(path).content.decode()
    print(f"Billing Overview with 5,000 clients: {time.perf_counter() - started:.3f} s")
    assert "Page 1 of 100" in html and "5000 charges" in html


def test_INV_1_logo_uploaded_in_billing_setup_is_on_pages_and_in_the_pdf(scenario):
    import io

    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image
    from pypdf import PdfReader

    buffer = io.BytesIO()
    Image.new("RGB", (60, 20), (170, 51, 102)).save(buffer, format="PNG")
    http = login_client(scenario.agency, scenario.admin.email)
    not_an_image = http.post("/setup/", {**_setup_post(), "logo": SimpleUploadedFile("logo.exe", b"MZ")})
    assert not_an_image.status_code == 400
    assert _field_error(not_an_image.content.decode(), "id_logo") == (
        "The logo must be a PNG or JPEG image (SVG is not accepted: export it as a PNG)."
    )
    scenario.agency.refresh_from_db()
    assert scenario.agency.address == "" and not scenario.agency.logo  # nothing of that form was saved
    response = http.post(
        "/setup/",
        {**_setup_post(), "logo": SimpleUploadedFile("logo.png", buffer.getvalue(), content_type="image/png")},
    )
    assert response.status_code == 302
    logo = http.get("/branding/logo")
    assert logo.status_code == 200 and logo["Content-Type"] == "image/png"
    # Stored as the product re-encoded it (core/images.py): the same pixels.
    served = Image.open(io.BytesIO(logo.content))
    assert served.format == "PNG" and served.size == (60, 20) and served.getpixel((5, 5))[:3] == (170, 51, 102)
    assert 'src="/branding/logo"' in http.get("/billing/").content.decode()
    with schema_context("alpha"):
        invoice = Invoice.objects.filter(client=scenario.declining).first()  # not settled: rendered fresh
    pdf = http.get(f"/invoices/{invoice.public_id}/pdf").content
    assert len(PdfReader(io.BytesIO(pdf)).pages[0].images) == 1
    assert "1 Main St" in pdf_text(pdf)


def test_portal_with_a_stripe_publishable_key_uses_elements_and_takes_only_a_payment_method_id(scenario, settings):
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_example"
    http = _portal_user(scenario, scenario.declining, "owner@declining.example")
    page = http.get("/portal/payment-method/").content.decode()
    assert "https://js.stripe.com/v3/" in page and 'id="card-element"' in page
    assert 'name="payment_method_id"' in page and 'type="hidden"' in page
    refused = http.post("/portal/payment-method/", {"payment_method_id": "4242424242424242"})
    assert refused.status_code == 400
    with schema_context("alpha"):
        assert scenario.declining.payment_methods.filter(removed_at__isnull=True).get().last4 == "0002"
    # The id Stripe.js created in the browser (here a test id the sandbox processor knows).
    assert http.post("/portal/payment-method/", {"payment_method_id": "pm_card_amex"}).status_code == 302
    with schema_context("alpha"):
        assert scenario.declining.payment_methods.filter(removed_at__isnull=True).get().brand == "amex"


def test_console_agency_page_lists_client_invoices_of_a_month_with_pdfs(scenario):
    make_user(None, "support@platform.test", Role.BILLING_SUPPORT)
    support = login_client(None, "support@platform.test")
    html = support.get("/agencies/alpha/?month=2027-01").content.decode()
    with schema_context("alpha"):
        invoices = list(Invoice.objects.filter(period_start=date(2027, 1, 1)))
    for invoice in invoices:
        assert invoice.number in html
    pdf = support.get(f"/agencies/alpha/invoices/{invoices[0].public_id}/pdf")
    assert pdf.status_code == 200 and invoices[0].number in pdf_text(pdf.content)
    assert support.get("/agencies/nosuch/").status_code == 404


def test_NOT_7_client_configuration_shows_the_clients_notice_log(scenario):
    """The outbox is readable per client: what was queued for this client and about its charges, nothing of
    another client's, and not for a role that sees no amounts."""
    with schema_context("alpha"):
        mine = Notice.objects.filter(account=str(scenario.declining.public_id))
        assert mine.exists()
        kinds = {NoticeKind(kind).label for kind in mine.values_list("kind", flat=True)}
        others = set(Notice.objects.filter(account=str(scenario.paying.public_id)).values_list("to_email", flat=True))
    html = (
        login_client(scenario.agency, scenario.admin.email)
        .get(f"/clients/{scenario.declining.public_id}/")
        .content.decode()
    )
    log = html.split('data-testid="notice-log"', 1)[1].split("</table>", 1)[0]
    assert kinds and all(label in log for label in kinds)
    assert scenario.declining.email in log and not any(email in log for email in others - {scenario.declining.email})
    junior = (
        login_client(scenario.agency, scenario.junior.email)
        .get(f"/clients/{scenario.junior_client.public_id}/")
        .content.decode()
    )
    assert 'data-testid="notice-log"' not in junior
