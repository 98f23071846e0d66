"""MON-2: an invoice line's unit amount may be a fraction of the minor unit (0.0875 cents a unit). The column
becomes numeric(31, 12), converted exactly by ALTER (the line table's immutability trigger refuses row updates,
and a type change is not one: every existing value keeps its exact amount)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("platform_billing", "0005_attempt_kind_client")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE platform_billing_agencyinvoiceline ALTER COLUMN unit_amount_minor TYPE numeric(31, 12);"
                    "ALTER TABLE platform_billing_agencyinvoiceline RENAME COLUMN unit_amount_minor TO unit_amount_decimal;",
                    "ALTER TABLE platform_billing_agencyinvoiceline RENAME COLUMN unit_amount_decimal TO unit_amount_minor;"
                    "ALTER TABLE platform_billing_agencyinvoiceline ALTER COLUMN unit_amount_minor TYPE bigint"
                    " USING round(unit_amount_minor);",
                )
            ],
            state_operations=[
                migrations.RenameField(
                    model_name="agencyinvoiceline", old_name="unit_amount_minor", new_name="unit_amount_decimal"
                ),
                migrations.AlterField(
                    model_name="agencyinvoiceline",
                    name="unit_amount_decimal",
                    field=models.DecimalField(decimal_places=12, max_digits=31),
                ),
            ],
        ),
    ]
