"""MON-2: plan tax rates become exact percentages with up to 4 decimals (825 bp → 8.2500 %), and product unit
prices minor units with up to 12 decimals (10 → 10.000000000000). Both conversions are exact."""

from django.db import migrations, models

_PRICE = {"max_digits": 31, "decimal_places": 12, "default": 0}


class Migration(migrations.Migration):
    dependencies = [("tenants", "0004_agency_branding")]

    operations = [
        migrations.RemoveConstraint(model_name="plantax", name="plan_tax_rate_lte_100"),
        migrations.RemoveConstraint(model_name="planproduct", name="plan_product_non_negative"),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE tenants_plantax ALTER COLUMN rate_bp TYPE numeric(7, 4) USING rate_bp::numeric / 100;"
                    "ALTER TABLE tenants_plantax RENAME COLUMN rate_bp TO rate_percent;"
                    "ALTER TABLE tenants_planproduct ALTER COLUMN unit_price_minor TYPE numeric(31, 12),"
                    " ALTER COLUMN overage_unit_price_minor TYPE numeric(31, 12);"
                    "ALTER TABLE tenants_planproduct RENAME COLUMN unit_price_minor TO unit_price_decimal;"
                    "ALTER TABLE tenants_planproduct RENAME COLUMN overage_unit_price_minor TO overage_unit_price_decimal;",
                    "ALTER TABLE tenants_plantax RENAME COLUMN rate_percent TO rate_bp;"
                    "ALTER TABLE tenants_plantax ALTER COLUMN rate_bp TYPE integer USING round(rate_bp * 100);"
                    "ALTER TABLE tenants_planproduct RENAME COLUMN unit_price_decimal TO unit_price_minor;"
                    "ALTER TABLE tenants_planproduct RENAME COLUMN overage_unit_price_decimal TO overage_unit_price_minor;"
                    "ALTER TABLE tenants_planproduct ALTER COLUMN unit_price_minor TYPE bigint USING round(unit_price_minor),"
                    " ALTER COLUMN overage_unit_price_minor TYPE bigint USING round(overage_unit_price_minor);",
                )
            ],
            state_operations=[
                migrations.RenameField(model_name="plantax", old_name="rate_bp", new_name="rate_percent"),
                migrations.AlterField(
                    model_name="plantax",
                    name="rate_percent",
                    field=models.DecimalField(
                        decimal_places=4, help_text="Percent, up to 4 decimals (MON-2).", max_digits=7
                    ),
                ),
                migrations.RenameField(
                    model_name="planproduct", old_name="unit_price_minor", new_name="unit_price_decimal"
                ),
                migrations.RenameField(
                    model_name="planproduct", old_name="overage_unit_price_minor", new_name="overage_unit_price_decimal"
                ),
                migrations.AlterField(
                    model_name="planproduct", name="unit_price_decimal", field=models.DecimalField(**_PRICE)
                ),
                migrations.AlterField(
                    model_name="planproduct", name="overage_unit_price_decimal", field=models.DecimalField(**_PRICE)
                ),
            ],
        ),
        migrations.AddConstraint(
            model_name="plantax",
            constraint=models.CheckConstraint(
                condition=models.Q(("rate_percent__gte", 0), ("rate_percent__lte", 100)),
                name="plan_tax_rate_0_100_percent",
            ),
        ),
        migrations.AddConstraint(
            model_name="planproduct",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("included_quantity__gte", 0), ("overage_unit_price_decimal__gte", 0), ("unit_price_decimal__gte", 0)
                ),
                name="plan_product_non_negative",
            ),
        ),
    ]
