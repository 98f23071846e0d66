"""CYC-4: an installment reports its invoice's billing date beside its own due date. Charges written before had the
due date in both; their billing date becomes their invoice's (the last autopay date)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("billing", "0015_usage_billed_once")]

    operations = [
        migrations.RunSQL(
            "UPDATE billing_charge c SET billing_date = i.due_on FROM billing_invoice i "
            "WHERE c.invoice_id = i.id AND c.billing_date <> i.due_on",
            migrations.RunSQL.noop,
        ),
        migrations.AlterField(
            model_name="charge",
            name="billing_date",
            field=models.DateField(help_text="The invoice's billing date (CYC-4: its last autopay date)."),
        ),
        migrations.AlterField(
            model_name="charge",
            name="due_on",
            field=models.DateField(
                help_text="This installment's due date: collected then; retries count from it (RET-2)."
            ),
        ),
    ]
