"""The billing-month index of charges covers status and amount: the Billing Overview's twelve-month totals
and month summary read a year of charges with an index-only scan instead of the table."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0007_charge_period_start'),
        ('clients', '0006_client_name_index'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='charge',
            name='billing_cha_period__532ccc_idx',
        ),
        migrations.AddIndex(
            model_name='charge',
            index=models.Index(fields=['period_start', 'status'], include=('amount_minor',), name='charge_month_status_amount'),
        ),
    ]
