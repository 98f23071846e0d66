"""The books: ledger entries get a public id for the API, filled by PostgreSQL for the rows already there as for
new ones; the reconciliation finds the charges collected on a range of days by their moves to Paid."""

import django.contrib.postgres.functions
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0013_attempt_requires_action'),
    ]

    operations = [
        migrations.AddField(
            model_name='ledgerentry',
            name='public_id',
            field=models.UUIDField(db_default=django.contrib.postgres.functions.RandomUUID(), editable=False, unique=True),
        ),
        migrations.AddIndex(
            model_name='chargeevent',
            index=models.Index(condition=models.Q(('to_status', 'PAID')), fields=['business_date'], name='charge_paid_on_day'),
        ),
    ]
