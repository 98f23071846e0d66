"""Usage is billed once on each side, whenever it is recorded: each record names the client invoice and the agency
invoice that carried it. Records already stored count as billed by the first invoice after them (the one whose
cycle they fell in) — usage recorded late before this change was never billed, and is not billed months later by
surprise (docs/decisions.md, "Usage that cannot be billed")."""

from django.db import migrations, models
import django.db.models.deletion

_TIME_ZONE = "coalesce((SELECT a.time_zone FROM public.tenants_agency a WHERE a.schema_name = current_schema()), 'UTC')"

MARK_BILLED = f"""
UPDATE billing_usagerecord u SET client_invoice_id = (
    SELECT i.id FROM billing_invoice i
    WHERE i.client_id = coalesce(
        (SELECT g.primary_id FROM clients_client c JOIN clients_clientgroup g ON g.id = c.group_id WHERE c.id = u.client_id),
        u.client_id)
      AND i.period_start > (u.occurred_at AT TIME ZONE {_TIME_ZONE})::date
    ORDER BY i.period_start LIMIT 1)
WHERE u.client_id IS NOT NULL;
UPDATE billing_usagerecord u SET agency_invoice_id = (
    SELECT i.id FROM public.platform_billing_agencyinvoice i
    JOIN public.tenants_agency a ON a.id = i.agency_id AND a.schema_name = current_schema()
    WHERE i.period_end > (u.occurred_at AT TIME ZONE {_TIME_ZONE})::date
    ORDER BY i.period_end LIMIT 1);
"""


class Migration(migrations.Migration):
    dependencies = [("billing", "0014_books")]

    operations = [
        migrations.AddField(
            model_name="usagerecord",
            name="client_invoice",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="usage_records",
                to="billing.invoice",
            ),
        ),
        migrations.AddField(
            model_name="usagerecord", name="agency_invoice_id", field=models.BigIntegerField(blank=True, null=True)
        ),
        migrations.RunSQL(MARK_BILLED, migrations.RunSQL.noop),
        migrations.AddIndex(
            model_name="usagerecord",
            index=models.Index(
                condition=models.Q(("client_invoice__isnull", True)), fields=["client", "occurred_at"], name="usage_unbilled"
            ),
        ),
        migrations.AddIndex(
            model_name="usagerecord",
            index=models.Index(
                condition=models.Q(("agency_invoice_id__isnull", True)), fields=["occurred_at"], name="usage_agency_unbilled"
            ),
        ),
    ]
