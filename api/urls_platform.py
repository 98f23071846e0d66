"""/api/v1/ on the platform domain (billing support)."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from api import invitations
from api.agency import admin
from api.docs import ApiDocsView, ApiRedocView
from api.platform import reconciliation, views

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(urlconf="agencybilling.urls_platform"), name="api-schema"),
    path("docs/", ApiDocsView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", ApiRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("me/", admin.MeApi.as_view()),
    path("api-tokens/", admin.TokensApi.as_view()),
    path("api-tokens/<str:token_id>/", admin.TokenApi.as_view()),
    path("agencies/", views.AgenciesApi.as_view()),
    path("agencies/<str:slug>/", views.AgencyApi.as_view()),
    path("agencies/<str:slug>/invitations/", invitations.AgencyInvitationsApi.as_view()),
    path(
        "agencies/<str:slug>/invitations/<str:invitation_id>/resend/", invitations.AgencyInvitationResendApi.as_view()
    ),
    path(
        "agencies/<str:slug>/invitations/<str:invitation_id>/revoke/", invitations.AgencyInvitationRevokeApi.as_view()
    ),
    path("agencies/<str:slug>/clients/", views.AgencyClientsApi.as_view()),
    path("agencies/<str:slug>/clients/<str:client_id>/agency-invoiced/", views.AgencyInvoicedApi.as_view()),
    path("agencies/<str:slug>/support-requests/", views.AgencySupportRequestsApi.as_view()),
    path("agencies/<str:slug>/charges/<str:charge_id>/retry/", views.RetryRunApi.as_view()),
    path("agencies/<str:slug>/reconciliation/", reconciliation.AgencyReconciliationApi.as_view()),
    path("agencies/<str:slug>/reconciliation/charges/", reconciliation.AgencyReconciliationChargesApi.as_view()),
    path("reconciliation/", reconciliation.ReconciliationsApi.as_view()),
    path("agency-invoices/", views.AgencyInvoicesApi.as_view()),
    path("agency-charges/<str:charge_id>/retry/", views.AgencyChargeRetryApi.as_view()),
    path("partner-plans/", views.PlansApi.as_view()),
    path("partner-plans/<str:plan_id>/", views.PlanApi.as_view()),
    path("audit-log/", views.AuditLogApi.as_view()),
]
