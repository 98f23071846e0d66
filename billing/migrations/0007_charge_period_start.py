"""Charges carry their invoice's period_start (the Billing Overview groups a year of charges by billing month
without joining each to its invoice). Existing charges are filled from their invoices."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0006_support_request_open_once"),
    ]

    operations = [
        migrations.AddField(
            model_name="charge",
            name="period_start",
            field=models.DateField(help_text="The billing month's invoice period start (its invoice's).",
                                   null=True),
        ),
        migrations.RunSQL(
            "UPDATE billing_charge AS c SET period_start = i.period_start FROM billing_invoice AS i "
            "WHERE i.id = c.invoice_id",
            migrations.RunSQL.noop,
        ),
        migrations.AlterField(
            model_name="charge",
            name="period_start",
            field=models.DateField(help_text="The billing month's invoice period start (its invoice's)."),
        ),
        migrations.AddIndex(
            model_name="charge",
            index=models.Index(fields=["period_start"], name="billing_cha_period__532ccc_idx"),
        ),
    ]
