"""URLs on the platform domain (`BASE_DOMAIN`): the billing-support console."""

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.urls import include, path

from accounts import password_reset, token_views
from accounts.login import ThrottledLoginView
from agencybilling import mailviewer, views
from billing.webhooks import stripe_webhook
from web import console, invitations, onboarding, reconciliation

urlpatterns = [
    path("", console.console_home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics, name="metrics"),
    path("login/", ThrottledLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("password-reset/", password_reset.password_reset_request, name="password-reset"),
    path("password-reset/sent/", password_reset.password_reset_sent, name="password-reset-sent"),
    path("password-reset/<uidb64>/<token>/", password_reset.ResetConfirmView.as_view(), name="password-reset-confirm"),
    path("password-reset/done/", password_reset.password_reset_done, name="password-reset-done"),
    path("invitations/<str:token>/", invitations.invitation_page, name="invitation"),
    path("webhooks/stripe", stripe_webhook, name="stripe-webhook"),
    path("clients/", console.client_search, name="console-search"),
    path("agencies/new/", onboarding.agency_new, name="console-agency-new"),
    path("agencies/<slug:slug>/", console.agency_detail, name="console-agency"),
    path(
        "agencies/<slug:slug>/invitations/<uuid:invitation_id>/",
        onboarding.agency_invitation_action,
        name="console-invitation",
    ),
    path("agencies/<slug:slug>/clients/<uuid:public_id>/", console.client_detail, name="console-client"),
    path(
        "agencies/<slug:slug>/clients/<uuid:public_id>/agency-invoiced",
        console.client_agency_invoiced,
        name="console-agency-invoiced",
    ),
    path(
        "agencies/<slug:slug>/clients/<uuid:public_id>/charges/<uuid:charge_id>/retry",
        console.charge_retry,
        name="console-retry",
    ),
    path(
        "agencies/<slug:slug>/invoices/<uuid:public_id>/pdf",
        console.client_invoice_pdf,
        name="console-client-invoice-pdf",
    ),
    path("invoices/", console.invoices, name="console-invoices"),
    path("agency-charges/<uuid:public_id>/retry", console.agency_charge_retry, name="console-agency-charge-retry"),
    path("invoices/<uuid:public_id>/pdf", console.agency_invoice_pdf_view, name="console-invoice-pdf"),
    path("audit/", console.audit_trail, name="console-audit"),
    path("reconciliation/", reconciliation.reconciliation, name="console-reconciliation"),
    path(
        "agencies/<slug:slug>/reconciliation/",
        reconciliation.agency_reconciliation_page,
        name="console-agency-reconciliation",
    ),
    path("webhook-events/<str:event_id>/replay", console.webhook_event_replay, name="console-webhook-replay"),
    path("settings/api-tokens/", token_views.api_tokens, name="api-tokens"),
    path("api/v1/", include("api.urls_platform")),
]

handler404 = "api.views.not_found"

if settings.DEMO_MAIL_DIR:
    # The demo's mail viewer (scripts/demo.py sets DEMO_MAIL_DIR): every email it sent, with clickable links.
    urlpatterns += [
        path("mail/", mailviewer.mail_list, name="demo-mail"),
        path("mail/<str:key>/", mailviewer.mail_detail, name="demo-mail-detail"),
        path("mail/<str:key>/html", mailviewer.mail_html, name="demo-mail-html"),
    ]
