"""Ledger entries get a public id for the API (the books: ledger entries and their allocations); PostgreSQL fills
it, for the rows already there as for new ones."""

import django.contrib.postgres.functions
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('platform_billing', '0008_attempt_requires_action'),
    ]

    operations = [
        migrations.AddField(
            model_name='agencyledgerentry',
            name='public_id',
            field=models.UUIDField(db_default=django.contrib.postgres.functions.RandomUUID(), editable=False, unique=True),
        ),
    ]
