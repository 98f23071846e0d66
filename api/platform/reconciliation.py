"""Platform reconciliation for billing support (`billing/reconciliation.py`): per agency and range of days, collected,
refunded, disputed, held, in transit and paid out, each figure the sum of the charges listed under it."""

from __future__ import annotations

from datetime import date

from django.utils import timezone
from django_tenants.utils import tenant_context
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from api.base import ApiView
from api.common import query_filters
from api.pagination import Keyset, list_parameters, page_of
from api.platform.views import SLUG, SUPPORT, agency_or_404
from billing.reconciliation import (
    Position,
    Reconciliation,
    agency_reconciliation,
    reconciled,
    reconciliation_charges,
)
from billing.statuses import ChargeStatus
from tenants.models import Agency
from tenants.selectors import agency_business_date

MAX_DAYS = 366


class RangeFilter(serializers.Serializer):
    date_from = serializers.DateField(
        required=False, help_text="First day of collection (the agency's days); default: the 1st of its month."
    )
    date_to = serializers.DateField(required=False, help_text="Last day of collection, included; default: today.")

    def validate(self, attrs):
        start, end = attrs.get("date_from"), attrs.get("date_to")
        if start and end:
            if start > end:
                raise serializers.ValidationError({"date_to": ["Must be on or after date_from."]})
            if (end - start).days >= MAX_DAYS:
                raise serializers.ValidationError({"date_to": [f"At most {MAX_DAYS} days from date_from."]})
        return attrs


def date_range(request, agency: Agency | None = None) -> tuple[date, date]:
    """The requested range; a missing end is the agency's today (UTC's for the list of agencies), a missing start the
    1st of the end's month."""
    filters = query_filters(RangeFilter, request)
    today = agency_business_date(agency, timezone.now()) if agency else timezone.now().date()
    end = filters.get("date_to") or today
    start = filters.get("date_from") or end.replace(day=1)
    if start > end or (end - start).days >= MAX_DAYS:
        # Only one end given: the other's default is on the wrong side of it.
        raise serializers.ValidationError({"date_from": [f"Give date_from and date_to at most {MAX_DAYS} days apart."]})
    return start, end


class ReconciliationOutput(serializers.Serializer):
    agency = serializers.CharField(help_text="The agency's slug.")
    currency = serializers.CharField()
    date_from = serializers.DateField()
    date_to = serializers.DateField()
    payouts_enabled = serializers.BooleanField(help_text="false: what is collected is held for the agency (ONB-2).")
    collected_minor = serializers.IntegerField(help_text="Client charges collected on these days (PAY-1).")
    refunded_minor = serializers.IntegerField(help_text="Refunded of those charges (COR-1).")
    disputed_minor = serializers.IntegerField(help_text="Disputed of those charges, whatever the outcome (COR-2).")
    disputes_lost_minor = serializers.IntegerField(help_text="Lost in disputes (COR-2).")
    paid_out_minor = serializers.IntegerField(help_text="In payouts to the agency that were paid (PAY-2).")
    in_transit_minor = serializers.IntegerField(help_text="Collected for the agency's account, not paid out yet.")
    held_minor = serializers.IntegerField(help_text="Collected while the agency cannot be paid out (ONB-2).")
    balanced = serializers.BooleanField(
        help_text="collected - refunded - disputes lost = paid out + held + in transit, to the cent."
    )
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="Charges behind each figure.")
    charges_url = serializers.SerializerMethodField(help_text="The charges behind the figures.")

    def get_charges_url(self, value: Reconciliation) -> str:
        return (
            f"/api/v1/agencies/{value.agency}/reconciliation/charges/"
            f"?date_from={value.date_from.isoformat()}&date_to={value.date_to.isoformat()}"
        )


class AgencyReconciliationApi(ApiView):
    capabilities = {"get": SUPPORT}
    schema_tags = ("reconciliation",)

    @extend_schema(
        operation_id="agency_reconciliation_retrieve",
        parameters=[SLUG, RangeFilter],
        responses=ReconciliationOutput,
        summary="Where an agency's collected money is: collected, refunded, disputed, paid out, in transit, held",
    )
    def get(self, request, slug):
        agency = agency_or_404(slug)
        start, end = date_range(request, agency)
        return Response(ReconciliationOutput(agency_reconciliation(agency=agency, date_from=start, date_to=end)).data)


class ReconciledChargeOutput(serializers.Serializer):
    charge = serializers.UUIDField(source="charge.public_id")
    client = serializers.UUIDField(source="charge.client.public_id")
    client_name = serializers.CharField(source="charge.client.name")
    invoice = serializers.UUIDField(source="charge.invoice.public_id")
    invoice_number = serializers.CharField(source="charge.invoice.number")
    installment = serializers.IntegerField(source="charge.installment")
    currency = serializers.CharField(source="charge.currency")
    amount_minor = serializers.IntegerField(source="charge.amount_minor", help_text="The charge's amount.")
    status = serializers.ChoiceField(source="charge.status", choices=ChargeStatus.choices)
    collected_minor = serializers.IntegerField(
        source="moved.collected_minor", help_text="Collected on the range's days (the amount, once per collection)."
    )
    collected_on = serializers.DateField(source="moved.collected_on", help_text="The last collection in the range.")
    gateway_reference = serializers.CharField(source="charge.paid_reference")
    refunded_minor = serializers.IntegerField(source="moved.refunded_minor")
    disputed_minor = serializers.IntegerField(source="moved.disputed_minor")
    disputes_lost_minor = serializers.IntegerField(source="moved.disputes_lost_minor")
    net_minor = serializers.IntegerField(help_text="collected - refunded - disputes lost: in the charge's position.")
    position = serializers.ChoiceField(choices=Position.choices)
    payout_reference = serializers.CharField(source="charge.payout_reference")
    paid_out_on = serializers.DateField(source="charge.paid_out_on", allow_null=True)


class AgencyReconciliationChargesApi(ApiView):
    capabilities = {"get": SUPPORT}
    schema_tags = ("reconciliation",)
    ordering_fields = ("due_on", "amount_minor")
    default_ordering = "due_on"

    class FilterSerializer(RangeFilter):
        position = serializers.ChoiceField(choices=Position.choices, required=False)

    @extend_schema(
        operation_id="agency_reconciliation_charges_list",
        parameters=[SLUG, FilterSerializer, *list_parameters(ordering_fields)],
        responses=page_of(ReconciledChargeOutput),
        summary="The collected charges behind an agency's reconciliation figures, each with its position",
    )
    def get(self, request, slug):
        agency = agency_or_404(slug)
        start, end = date_range(request, agency)
        position = query_filters(self.FilterSerializer, request).get("position")
        with tenant_context(agency):
            charges = reconciliation_charges(date_from=start, date_to=end, position=position)
            rows, next_link, previous_link = Keyset.for_request(request, self).page(charges, value_of=getattr)
            rows = reconciled(rows, date_from=start, date_to=end)
            data = ReconciledChargeOutput(rows, many=True).data
        return Response({"next": next_link, "previous": previous_link, "results": data})


class ReconciliationsApi(ApiView):
    capabilities = {"get": SUPPORT}
    schema_tags = ("reconciliation",)
    ordering_fields = ("schema_name",)
    default_ordering = "schema_name"

    @extend_schema(
        operation_id="reconciliations_list",
        parameters=[RangeFilter, *list_parameters(ordering_fields)],
        responses=page_of(ReconciliationOutput),
        summary="Every agency's reconciliation figures for a range of days",
    )
    def get(self, request):
        start, end = date_range(request)
        agencies = Agency.objects.exclude(schema_name="public")
        rows, next_link, previous_link = Keyset.for_request(request, self).page(agencies, value_of=getattr)
        data = ReconciliationOutput(
            [agency_reconciliation(agency=agency, date_from=start, date_to=end) for agency in rows], many=True
        ).data
        return Response({"next": next_link, "previous": previous_link, "results": data})
