from django.db import migrations

from billing.immutability import drop_sql, immutability_sql

TABLES = {"invoice_table": "platform_billing_agencyinvoice", "line_table": "platform_billing_agencyinvoiceline",
          "ledger_table": "platform_billing_agencyledgerentry",
          "allocation_table": "platform_billing_agencyallocation"}


class Migration(migrations.Migration):
    dependencies = [("platform_billing", "0001_initial")]

    operations = [migrations.RunSQL(immutability_sql(**TABLES), drop_sql(**TABLES))]
