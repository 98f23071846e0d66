"""Agency invoices and the agency ledger: public schema (TEN-1), built in arrears (CYC-2 a)."""

from __future__ import annotations

from django.db import models

from billing.base_models import AbstractInvoice, AbstractInvoiceLine, AbstractLedgerEntry


class AgencyInvoice(AbstractInvoice):
    agency = models.ForeignKey("tenants.Agency", on_delete=models.PROTECT, related_name="invoices")

    class Meta:
        ordering = ["-period_start"]
        constraints = [
            # CYC-3: one agency invoice per agency and cycle, whatever reruns or races.
            models.UniqueConstraint(fields=["agency", "period_start"], name="agency_invoice_once_per_period"),
        ]


class AgencyInvoiceLine(AbstractInvoiceLine):
    invoice = models.ForeignKey(AgencyInvoice, on_delete=models.PROTECT, related_name="lines")

    class Meta(AbstractInvoiceLine.Meta):
        constraints = [models.UniqueConstraint(fields=["invoice", "position"], name="agency_line_position_unique")]


class AgencyLedgerEntry(AbstractLedgerEntry):
    agency = models.ForeignKey("tenants.Agency", on_delete=models.PROTECT, related_name="ledger_entries")
    invoice = models.ForeignKey(AgencyInvoice, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="ledger_entries")

    class Meta(AbstractLedgerEntry.Meta):
        indexes = [models.Index(fields=["agency", "category"])]


class AgencyAllocation(models.Model):
    payment = models.ForeignKey(AgencyLedgerEntry, on_delete=models.PROTECT, related_name="allocations_made")
    charge = models.ForeignKey(AgencyLedgerEntry, on_delete=models.PROTECT, related_name="allocations_received")
    amount_minor = models.BigIntegerField()

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(amount_minor__gt=0), name="agency_alloc_gt_0")]


class AgencyInvoiceSequence(models.Model):
    """Next agency-invoice number per agency; incremented in the invoice's own transaction (gap-free)."""

    agency = models.OneToOneField("tenants.Agency", on_delete=models.CASCADE, related_name="invoice_sequence")
    next_number = models.PositiveBigIntegerField(default=1)
