"""MON-2: tax rates become exact percentages with up to 4 decimals (numeric(7,4)); whole basis points convert
exactly (825 → 8.2500)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("clients", "0006_client_name_index")]

    operations = [
        migrations.RemoveConstraint(model_name="taxrate", name="tax_rate_lte_100"),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE clients_taxrate ALTER COLUMN rate_bp TYPE numeric(7, 4) USING rate_bp::numeric / 100;"
                    "ALTER TABLE clients_taxrate RENAME COLUMN rate_bp TO rate_percent;",
                    "ALTER TABLE clients_taxrate RENAME COLUMN rate_percent TO rate_bp;"
                    "ALTER TABLE clients_taxrate ALTER COLUMN rate_bp TYPE integer USING round(rate_bp * 100);",
                )
            ],
            state_operations=[
                migrations.RenameField(model_name="taxrate", old_name="rate_bp", new_name="rate_percent"),
                migrations.AlterField(
                    model_name="taxrate",
                    name="rate_percent",
                    field=models.DecimalField(
                        decimal_places=4, help_text="Percent: 8.875 = 8.875 %.", max_digits=7
                    ),
                ),
            ],
        ),
        migrations.AddConstraint(
            model_name="taxrate",
            constraint=models.CheckConstraint(
                condition=models.Q(("rate_percent__gte", 0), ("rate_percent__lte", 100)), name="tax_rate_0_100_percent"
            ),
        ),
    ]
