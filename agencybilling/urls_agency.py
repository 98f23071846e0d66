"""URLs on an agency's domain (`<slug>.<BASE_DOMAIN>`): the agency dashboard and the client portal."""

from django.contrib.auth import views as auth_views
from django.urls import include, path, reverse_lazy

from accounts import password_reset, token_views
from accounts.login import ThrottledLoginView
from agencybilling import views
from web import agency, invitations, portal

urlpatterns = [
    path("", agency.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("branding/logo", agency.agency_logo, name="agency-logo"),
    path("login/", ThrottledLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("password-reset/", password_reset.password_reset_request, name="password-reset"),
    path("password-reset/sent/", password_reset.password_reset_sent, name="password-reset-sent"),
    path("password-reset/<uidb64>/<token>/", password_reset.ResetConfirmView.as_view(), name="password-reset-confirm"),
    path("password-reset/done/", password_reset.password_reset_done, name="password-reset-done"),
    path("invitations/<str:token>/", invitations.invitation_page, name="invitation"),
    # Links mailed before invitations had their own table (Django's password-reset tokens; they still work once).
    path(
        "invite/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            template_name="registration/invite_accept.html", success_url=reverse_lazy("invite-done")
        ),
        name="invite-accept",
    ),
    path(
        "invite/done/",
        auth_views.PasswordResetCompleteView.as_view(template_name="registration/invite_done.html"),
        name="invite-done",
    ),
    # Agency dashboard
    path("billing/", agency.billing_overview, name="billing-overview"),
    path("billing/charges.csv", agency.overview_csv, name="billing-overview-csv"),
    path("billing/platform-invoices/", agency.platform_invoices, name="platform-invoices"),
    path("billing/export/", agency.range_csv, name="billing-export"),
    path("invoices/<uuid:public_id>/", agency.invoice_detail, name="invoice-detail"),
    path("invoices/<uuid:public_id>/pdf", agency.client_invoice_pdf, name="invoice-pdf"),
    path("invoices/<uuid:public_id>/credit-notes/", agency.credit_note_new, name="credit-note-new"),
    path("credit-notes/<uuid:public_id>/pdf", agency.credit_note_pdf_view, name="credit-note-pdf"),
    path("agency-invoices/<uuid:public_id>/pdf", agency.agency_invoice_pdf_view, name="agency-invoice-pdf"),
    path("clients/", agency.client_list, name="client-list"),
    path("clients/new/", agency.client_new, name="client-new"),
    path("clients/<uuid:public_id>/account", agency.client_account, name="client-account"),
    path("clients/<uuid:public_id>/active", agency.client_active, name="client-active"),
    path("taxes/", agency.tax_rates, name="tax-rates"),
    path("taxes/<uuid:public_id>/", agency.tax_rate_edit, name="tax-rate-edit"),
    path("taxes/<uuid:public_id>/remove", agency.tax_rate_delete, name="tax-rate-remove"),
    path("clients/<uuid:public_id>/", agency.client_detail, name="client-detail"),
    path("clients/<uuid:public_id>/services/", agency.service_line_create, name="service-line-create"),
    path(
        "clients/<uuid:public_id>/services/<uuid:line_id>/remove",
        agency.service_line_delete,
        name="service-line-remove",
    ),
    path(
        "clients/<uuid:public_id>/charges/<uuid:charge_id>/retry-request",
        agency.client_retry_request,
        name="client-retry-request",
    ),
    path(
        "clients/<uuid:public_id>/agency-invoiced-request",
        agency.client_agency_invoiced_request,
        name="client-agency-invoiced-request",
    ),
    path("setup/", agency.billing_setup, name="billing-setup"),
    path("setup/payment-method", agency.agency_payment_method, name="agency-payment-method"),
    path("payouts/", agency.payouts_list, name="payouts"),
    path("payouts/<uuid:public_id>/", agency.payout_detail, name="payout-detail"),
    path("setup/payouts/start", agency.payouts_onboarding_start, name="payouts-onboarding-start"),
    path("setup/payouts/return/", agency.payouts_onboarding_return, name="payouts-onboarding-return"),
    path("setup/payouts/refresh/", agency.payouts_onboarding_refresh, name="payouts-onboarding-refresh"),
    path("setup/payouts/sandbox/<str:token>/", agency.sandbox_onboarding, name="sandbox-onboarding"),
    path("email-templates/", agency.template_list, name="template-list"),
    path("email-templates/<str:kind>/", agency.template_edit, name="template-edit"),
    path("email-templates/<str:kind>/preview", agency.template_preview, name="template-preview"),
    path("email-templates/<str:kind>/test-email", agency.template_test_email, name="template-test-email"),
    path("plan/", agency.plan_summary, name="plan-summary"),
    path("users/", agency.user_list, name="user-list"),
    path("audit/", agency.audit_log, name="audit-log"),
    path("margins/", agency.margins_report, name="margins"),
    path("clients/<uuid:public_id>/margins.csv", agency.client_margins_csv, name="client-margins-csv"),
    path("webhooks/", agency.webhooks, name="webhooks"),
    path("webhooks/endpoints/<uuid:public_id>", agency.webhook_endpoint_action, name="webhook-endpoint"),
    path("webhooks/deliveries/<uuid:public_id>/", agency.webhook_delivery, name="webhook-delivery"),
    path("users/<int:user_id>/role", agency.user_role, name="user-role"),
    path("users/<int:user_id>/active", agency.user_active, name="user-active"),
    # Client portal
    path("portal/", portal.service_overview, name="portal"),
    path("portal/invoices/<uuid:public_id>/pdf", portal.portal_invoice_pdf, name="portal-invoice-pdf"),
    path("portal/credit-notes/<uuid:public_id>/pdf", portal.portal_credit_note_pdf, name="portal-credit-note-pdf"),
    path("portal/payment-method/", portal.payment_method, name="portal-payment-method"),
    path("portal/charges/<uuid:public_id>/pay/", portal.charge_pay, name="portal-charge-pay"),
    path("portal/charges/<uuid:public_id>/pay/return", portal.charge_pay_return, name="portal-charge-pay-return"),
    path("portal/sandbox/authenticate/<str:reference>/", portal.sandbox_authenticate, name="portal-sandbox-3ds"),
    # API tokens and the REST API
    path("settings/api-tokens/", token_views.api_tokens, name="api-tokens"),
    path("api/v1/", include("api.urls_agency")),
]

handler404 = "api.views.not_found"
