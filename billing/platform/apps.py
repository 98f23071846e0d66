from django.apps import AppConfig


class PlatformBillingConfig(AppConfig):
    """Billing data of the public schema: agency invoices and ledger (TEN-1)."""

    name = "billing.platform"
    label = "platform_billing"
    verbose_name = "Platform billing (public schema)"
