from django.db import migrations

from billing.immutability import drop_sql, immutability_sql

TABLES = {"invoice_table": "billing_invoice", "line_table": "billing_invoiceline",
          "ledger_table": "billing_ledgerentry", "allocation_table": "billing_allocation"}


def create_singletons(apps, schema_editor):
    apps.get_model("billing", "InvoiceSequence").objects.get_or_create(singleton=True)
    apps.get_model("billing", "BillingSettings").objects.get_or_create(singleton=True)


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [
        migrations.RunSQL(immutability_sql(**TABLES), drop_sql(**TABLES)),
        migrations.RunPython(create_singletons, migrations.RunPython.noop),
    ]
