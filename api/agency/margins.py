"""Margin per client (billing/margins.py): a month for every client, or one client's months. For the roles that
see every client with amounts."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from accounts.permissions import Capability as C
from api.agency.clients import client_or_404
from api.base import ApiView
from api.common import MonthField, agency_today, path_uuid, query_filters
from billing.margins import ClientMargin, client_margins, month_margins
from billing.overview import months_with_invoices

ROLES = (C.VIEW_BILLING,)


class ClientMarginOutput(serializers.Serializer):
    client = serializers.UUIDField(source="public_id")
    name = serializers.CharField()
    month = serializers.SerializerMethodField()
    invoice_number = serializers.CharField(help_text="The client's invoice billed in the month ('' when none).")
    billed_by_category = serializers.DictField(
        child=serializers.IntegerField(), help_text="Minor units by billing category, without taxes & fees."
    )
    billed_minor = serializers.IntegerField(help_text="Billed without taxes & fees.")
    billed_taxes_minor = serializers.IntegerField()
    license_fee_minor = serializers.IntegerField(help_text="The platform's license fee for this client.")
    usage_minor = serializers.IntegerField(help_text="This client's share of the platform's usage lines.")
    platform_minor = serializers.IntegerField()
    margin_minor = serializers.IntegerField(help_text="billed_minor - platform_minor.")

    def get_month(self, margin: ClientMargin) -> str:
        return f"{margin.month:%Y-%m}"


class MonthMarginsOutput(serializers.Serializer):
    month = serializers.CharField()
    currency = serializers.CharField()
    agency_invoice_number = serializers.CharField(help_text="The platform's invoice billed in the month.")
    agency_invoice_total_minor = serializers.IntegerField()
    not_per_client_minor = serializers.IntegerField(
        help_text="Package minimum, the agency's own usage, the platform's taxes and fees."
    )
    clients = ClientMarginOutput(many=True)


def _default_month(request):
    _, last = months_with_invoices()
    return last or agency_today(request).replace(day=1)


class _MarginsView(ApiView):
    capabilities = {"get": ROLES}
    schema_tags = ("margins",)

    def check_amounts(self) -> None:
        if not self.can(C.VIEW_AMOUNTS):
            raise PermissionDenied("Your role sees statuses only.")

    class FilterSerializer(serializers.Serializer):
        month = MonthField(required=False, help_text="Billing month, YYYY-MM (default: the latest).")


class MarginsApi(_MarginsView):
    @extend_schema(
        operation_id="margins_month",
        parameters=[_MarginsView.FilterSerializer],
        responses=MonthMarginsOutput,
        summary="Every client's margin in a billing month",
    )
    def get(self, request):
        self.check_amounts()
        month = query_filters(self.FilterSerializer, request).get("month") or _default_month(request)
        report = month_margins(agency=request.tenant, month=month)
        return Response(
            MonthMarginsOutput(
                {
                    "month": f"{month:%Y-%m}",
                    "currency": report.currency,
                    "agency_invoice_number": report.agency_invoice_number,
                    "agency_invoice_total_minor": report.agency_invoice_total_minor,
                    "not_per_client_minor": report.not_per_client_minor,
                    "clients": list(report.clients.values()),
                }
            ).data
        )


class ClientMarginsApi(_MarginsView):
    @extend_schema(
        operation_id="margins_client",
        parameters=[path_uuid("client_id"), _MarginsView.FilterSerializer],
        responses=ClientMarginOutput(many=True),
        summary="One client's margin for the 12 billing months ending with `month`, oldest first",
    )
    def get(self, request, client_id):
        self.check_amounts()
        client = client_or_404(self.user, client_id)
        month = query_filters(self.FilterSerializer, request).get("month") or _default_month(request)
        return Response(
            ClientMarginOutput(client_margins(agency=request.tenant, client=client, last_month=month), many=True).data
        )
