"""/api/v1/ on an agency's domain."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from api import invitations
from api.agency import admin, billing, books, clients, corrections, margins
from api.docs import ApiDocsView, ApiRedocView

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(urlconf="agencybilling.urls_agency"), name="api-schema"),
    path("docs/", ApiDocsView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", ApiRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("me/", admin.MeApi.as_view()),
    path("clients/", clients.ClientsApi.as_view()),
    path("clients/<str:client_id>/", clients.ClientApi.as_view()),
    path("clients/<str:client_id>/service-lines/", clients.ServiceLinesApi.as_view()),
    path("clients/<str:client_id>/service-lines/<str:line_id>/", clients.ServiceLineApi.as_view()),
    path("clients/<str:client_id>/payment-method/", clients.PaymentMethodApi.as_view()),
    path("clients/<str:client_id>/next-invoice/", clients.ClientNextInvoiceApi.as_view()),
    path("clients/<str:client_id>/agency-invoiced-requests/", billing.AgencyInvoicedRequestsApi.as_view()),
    path("clients/<str:client_id>/margins/", margins.ClientMarginsApi.as_view()),
    path("clients/<str:client_id>/ledger/", books.ClientLedgerApi.as_view()),
    path("clients/<str:client_id>/balance/", books.ClientBalanceApi.as_view()),
    path("balances/", books.BalancesApi.as_view()),
    path("margins/", margins.MarginsApi.as_view()),
    path("tax-rates/", clients.TaxRatesApi.as_view()),
    path("usage-records/", billing.UsageRecordsApi.as_view()),
    path("invoices/", billing.InvoicesApi.as_view()),
    path("invoices/<str:invoice_id>/", billing.InvoiceApi.as_view()),
    path("invoices/<str:invoice_id>/pdf/", billing.InvoicePdfApi.as_view()),
    path("invoices/<str:invoice_id>/credit-notes/", corrections.InvoiceCreditNotesApi.as_view()),
    path("credit-notes/", corrections.CreditNotesApi.as_view()),
    path("credit-notes/<str:credit_note_id>/", corrections.CreditNoteApi.as_view()),
    path("credit-notes/<str:credit_note_id>/pdf/", corrections.CreditNotePdfApi.as_view()),
    path("disputes/", corrections.DisputesApi.as_view()),
    path("charges/", billing.ChargesApi.as_view()),
    path("charges/<str:charge_id>/", billing.ChargeApi.as_view()),
    path("charges/<str:charge_id>/retry-requests/", billing.RetryRequestsApi.as_view()),
    path("platform-invoices/", books.PlatformInvoicesApi.as_view()),
    path("platform-invoices/<str:platform_invoice_id>/", books.PlatformInvoiceApi.as_view()),
    path("platform-invoices/<str:platform_invoice_id>/pdf/", books.PlatformInvoicePdfApi.as_view()),
    path("platform-ledger/", books.PlatformLedgerApi.as_view()),
    path("platform-balance/", books.PlatformBalanceApi.as_view()),
    path("support-requests/", billing.SupportRequestsApi.as_view()),
    path("notices/", billing.NoticesApi.as_view()),
    path("billing-settings/", billing.BillingSettingsApi.as_view()),
    path("billing-settings/next-invoice/", billing.AgencyNextInvoiceApi.as_view()),
    path("email-templates/", admin.TemplatesApi.as_view()),
    path("email-templates/<str:kind>/", admin.TemplateApi.as_view()),
    path("email-templates/<str:kind>/preview/", admin.TemplatePreviewApi.as_view()),
    path("invitations/", invitations.InvitationsApi.as_view()),
    path("invitations/<str:invitation_id>/resend/", invitations.InvitationResendApi.as_view()),
    path("invitations/<str:invitation_id>/revoke/", invitations.InvitationRevokeApi.as_view()),
    path("api-tokens/", admin.TokensApi.as_view()),
    path("api-tokens/<str:token_id>/", admin.TokenApi.as_view()),
    path("webhook-endpoints/", admin.EndpointsApi.as_view()),
    path("webhook-endpoints/<str:endpoint_id>/", admin.EndpointApi.as_view()),
    path("webhook-endpoints/<str:endpoint_id>/roll-secret/", admin.SecretRollApi.as_view()),
    path("webhook-deliveries/", admin.DeliveriesApi.as_view()),
    path("webhook-deliveries/<str:delivery_id>/", admin.DeliveryApi.as_view()),
    path("webhook-deliveries/<str:delivery_id>/redeliver/", admin.RedeliverApi.as_view()),
]
