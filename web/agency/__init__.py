"""The agency dashboard on `<agency>.<BASE_DOMAIN>`, one module per page: Billing Overview, clients and their
configuration, Billing Setup, Email Templates, Billing Plan Summary, users. ROLE-1 on every view (web.access)."""

from web.agency.audit import audit_log
from web.agency.clients import (
    client_account,
    client_active,
    client_agency_invoiced_request,
    client_detail,
    client_list,
    client_new,
    client_retry_request,
    service_line_create,
    service_line_delete,
)
from web.agency.common import parse_month, pdf_response
from web.agency.corrections import credit_note_new, credit_note_pdf_view
from web.agency.email_templates import template_edit, template_list, template_preview, template_test_email
from web.agency.exports import overview_csv, range_csv
from web.agency.invoices import invoice_detail
from web.agency.margins import client_margins_csv, margins_report
from web.agency.overview import agency_invoice_pdf_view, billing_overview, client_invoice_pdf, platform_invoices
from web.agency.payouts import (
    agency_payment_method,
    payout_detail,
    payouts_list,
    payouts_onboarding_refresh,
    payouts_onboarding_return,
    payouts_onboarding_start,
    sandbox_onboarding,
)
from web.agency.plan import plan_summary
from web.agency.setup import billing_setup
from web.agency.site import agency_logo, home
from web.agency.taxes import tax_rate_delete, tax_rate_edit, tax_rates
from web.agency.users import user_active, user_list, user_role
from web.agency.webhooks import webhook_delivery, webhook_endpoint_action, webhooks

__all__ = [
    "agency_payment_method",
    "payout_detail",
    "payouts_list",
    "payouts_onboarding_refresh",
    "payouts_onboarding_return",
    "payouts_onboarding_start",
    "sandbox_onboarding",
    "client_margins_csv",
    "margins_report",
    "template_test_email",
    "webhook_delivery",
    "webhook_endpoint_action",
    "webhooks",
    "audit_log",
    "overview_csv",
    "range_csv",
    "invoice_detail",
    "credit_note_new",
    "credit_note_pdf_view",
    "client_account",
    "client_active",
    "client_new",
    "tax_rate_delete",
    "tax_rate_edit",
    "tax_rates",
    "agency_invoice_pdf_view",
    "platform_invoices",
    "agency_logo",
    "billing_overview",
    "billing_setup",
    "client_agency_invoiced_request",
    "client_detail",
    "client_invoice_pdf",
    "client_list",
    "client_retry_request",
    "home",
    "parse_month",
    "pdf_response",
    "plan_summary",
    "service_line_create",
    "service_line_delete",
    "template_edit",
    "template_list",
    "template_preview",
    "user_active",
    "user_list",
    "user_role",
]
