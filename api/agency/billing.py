"""Usage records (PLAN-3), invoices (INV-1), charges with their attempts (COL, RET), support requests (RET-4,
COL-1), the notices log and the Billing Setup."""

from __future__ import annotations

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response

from accounts.permissions import Capability as C
from api.agency.clients import VIEW, client_or_404
from api.base import ApiView, if_none_match, with_etag
from api.common import (
    MaskedAmountField,
    MaskedDecimalField,
    MaskedWholeMinorField,
    MonthField,
    NextInvoiceOutput,
    agency_today,
    path_uuid,
    query_filters,
    uuid_or_404,
    validated,
)
from api.fields import (
    CODE_PATTERN,
    StrictBooleanField,
    StrictCharField,
    StrictChoiceField,
    StrictDateTimeField,
    StrictEmailField,
    StrictIntegerField,
    StrictListField,
    StrictSerializer,
    StrictUUIDField,
    pattern_field,
)
from api.pagination import list_parameters, page_of, paginate, paginate_rows
from api.schema import IF_NONE_MATCH, NOT_MODIFIED
from billing.billing_setup import AGENCY_FIELDS, SETTINGS_FIELDS, billing_setup_update
from billing.models import BillingSettings, Charge, Invoice, RequestKind, SupportRequest
from billing.pdf import invoice_pdf, invoice_pdf_etag, pdf_filename, stored_pdf_etag
from billing.selectors import (
    agency_next_invoice,
    billing_settings,
    charge_list_for_user,
    invoice_list_for_user,
    usage_list_for_user,
)
from billing.statuses import AttemptKind, AttemptOutcome, ChargeStatus, DisputeStatus
from billing.support import agency_invoiced_request, retry_request
from billing.usage import UsageInput, usage_now, usage_record_bulk
from clients.models import Client
from clients.selectors import client_visibility
from core.categories import BillingCategory
from core.errors import ApplicationError
from notifications.catalog import NoticeKind
from notifications.models import Notice, OutboxStatus
from notifications.selectors import notices_about_client
from tenants.models import Agency

MAX_USAGE_RECORDS = 1000


# --- usage -------------------------------------------------------------------------------------------------


class UsageRecordOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    client = serializers.UUIDField(
        source="client.public_id", allow_null=True, default=None, help_text="null: the agency's own usage."
    )
    product_code = serializers.CharField()
    quantity = serializers.IntegerField()
    occurred_at = serializers.DateTimeField()
    idempotency_key = serializers.CharField()
    created_at = serializers.DateTimeField()


class UsageRecordInput(StrictSerializer):
    client = StrictUUIDField(
        required=False,
        allow_null=True,
        default=None,
        help_text="The client's id; omit or null for the agency's own usage.",
    )
    product_code = pattern_field(CODE_PATTERN, "Letters, digits, - and _ only.", max_length=40)
    quantity = StrictIntegerField(min_value=1)
    occurred_at = StrictDateTimeField()
    idempotency_key = StrictCharField(
        max_length=120, help_text="Unique per usage record: resending it stores nothing new."
    )


class UsageRecordsApi(ApiView):
    capabilities = {"get": VIEW, "post": (C.EDIT_CLIENT_CONFIG,)}
    schema_tags = ("usage",)
    ordering_fields = ("occurred_at", "created_at")
    default_ordering = "-occurred_at"

    class FilterSerializer(serializers.Serializer):
        month = MonthField(required=False, help_text="Usage that occurred in this month (agency time).")
        client = serializers.UUIDField(required=False)
        agency_only = serializers.BooleanField(required=False, default=False, help_text="Only the agency's own usage.")
        product_code = serializers.CharField(required=False, max_length=40)

    class BulkInputSerializer(StrictSerializer):
        records = StrictListField(child=UsageRecordInput(), min_length=1, max_length=MAX_USAGE_RECORDS)

    class BulkOutputSerializer(serializers.Serializer):
        created = serializers.IntegerField()
        already_present = serializers.IntegerField()

    @extend_schema(
        operation_id="usage_records_list",
        parameters=[FilterSerializer, *list_parameters(ordering_fields)],
        responses=page_of(UsageRecordOutput),
        summary="Usage records",
    )
    def get(self, request):
        filters = query_filters(self.FilterSerializer, request)
        records = usage_list_for_user(
            user=self.user,
            agency=request.tenant,
            month=filters.get("month"),
            client_public_id=filters.get("client"),
            agency_only=bool(filters.get("agency_only")),
            product_code=filters.get("product_code"),
        )
        return paginate(request=request, view=self, queryset=records, serializer_class=UsageRecordOutput)

    @extend_schema(
        operation_id="usage_records_bulk_create",
        request=BulkInputSerializer,
        responses={201: BulkOutputSerializer, 200: BulkOutputSerializer},
        summary="Record usage in bulk (idempotent per record key)",
        examples=[
            OpenApiExample(
                "Agency usage",
                request_only=True,
                value={
                    "records": [
                        {
                            "client": None,
                            "product_code": "listings",
                            "quantity": 25,
                            "occurred_at": "2027-01-05T10:00:00Z",
                            "idempotency_key": "crm-2027-01-05-0001",
                        }
                    ]
                },
            )
        ],
    )
    def post(self, request):
        data = validated(self.BulkInputSerializer, request)
        records = data["records"]
        ids = {r["client"] for r in records if r["client"] is not None}
        clients = {c.public_id: c for c in Client.objects.filter(public_id__in=ids)}
        errors = {
            f"records[{i}].client": ["No such client."]
            for i, r in enumerate(records)
            if r["client"] is not None and r["client"] not in clients
        }
        if errors:
            raise ApplicationError("The usage records are not valid.", fields=errors)
        items = [
            UsageInput(
                product_code=r["product_code"],
                quantity=r["quantity"],
                occurred_at=r["occurred_at"],
                idempotency_key=r["idempotency_key"],
                client=clients.get(r["client"]),
            )
            for r in records
        ]
        now = usage_now(request.tenant, timezone.now())
        created, present = usage_record_bulk(agency=request.tenant, items=items, now=now)
        return Response(
            {"created": created, "already_present": present},
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


# --- invoices ------------------------------------------------------------------------------------------------


class ClientRef(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    name = serializers.CharField()

    def to_representation(self, instance):
        # The same two fields without a nested serializer's per-field machinery: this is read 50 times a page.
        return {"id": str(instance.public_id), "name": instance.name}


class InvoiceLineOutput(serializers.Serializer):
    position = serializers.IntegerField()
    category = serializers.ChoiceField(choices=BillingCategory.choices)
    description = serializers.CharField()
    quantity = serializers.IntegerField()
    unit_amount_minor = MaskedWholeMinorField(
        source="unit_amount_decimal",
        help_text="Whole minor units; null when the unit amount has a fraction of one (read unit_amount_decimal).",
    )
    unit_amount_decimal = MaskedDecimalField()
    amount_minor = MaskedAmountField()
    taxable = serializers.BooleanField()


_BILLING_DATE_HELP = "The invoice's billing date: with several autopay dates, the last of them (CYC-4)."
_DUE_ON_HELP = "This installment's due date (its autopay date): collected then; automatic retries count from it."


class ChargeSummaryOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    installment = serializers.IntegerField()
    amount_minor = MaskedAmountField()
    status = serializers.ChoiceField(choices=ChargeStatus.choices)
    billing_date = serializers.DateField(help_text=_BILLING_DATE_HELP)
    due_on = serializers.DateField(help_text=_DUE_ON_HELP)
    paid_on = serializers.DateField(allow_null=True)


class InvoiceOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    number = serializers.CharField()
    client = ClientRef()
    status = serializers.ChoiceField(
        source="collection_status",
        choices=ChargeStatus.choices,
        help_text="The collection status, from the invoice's charges.",
    )
    period_start = serializers.DateField()
    period_end = serializers.DateField(help_text="Exclusive: the next cycle's first day.")
    issued_on = serializers.DateField()
    due_on = serializers.DateField()
    currency = serializers.CharField()
    subtotal_minor = MaskedAmountField()
    tax_minor = MaskedAmountField()
    total_minor = MaskedAmountField()
    agency_invoiced = serializers.BooleanField()
    pdf_url = serializers.SerializerMethodField()

    def get_pdf_url(self, invoice) -> str:
        return f"/api/v1/invoices/{invoice.public_id}/pdf/"

    # The list writes its rows from `values()` with `row` below instead: a page of 50 through the serializer's
    # per-field machinery cost more CPU than its SQL (docs/performance.md, P5). This class stays the schema and
    # the detail's writer; tests/api/test_conventions.py checks that both write the same JSON.
    row_columns = (
        "public_id",
        "number",
        "client__public_id",
        "client__name",
        "collection_status",
        "period_start",
        "period_end",
        "issued_on",
        "due_on",
        "currency",
        "subtotal_minor",
        "tax_minor",
        "total_minor",
        "agency_invoiced",
    )

    @staticmethod
    def row(values: dict, *, amounts: bool) -> dict:
        """One invoice as the serializer writes it, from a `values(*row_columns)` dict, for `paginate_rows` (which
        writes the dates and UUIDs); amounts are null for roles that see statuses only (ROLE-1)."""
        public_id = values["public_id"]
        return {
            "id": public_id,
            "number": values["number"],
            "client": {"id": values["client__public_id"], "name": values["client__name"]},
            "status": values["collection_status"],
            "period_start": values["period_start"],
            "period_end": values["period_end"],
            "issued_on": values["issued_on"],
            "due_on": values["due_on"],
            "currency": values["currency"],
            "subtotal_minor": values["subtotal_minor"] if amounts else None,
            "tax_minor": values["tax_minor"] if amounts else None,
            "total_minor": values["total_minor"] if amounts else None,
            "agency_invoiced": values["agency_invoiced"],
            "pdf_url": f"/api/v1/invoices/{public_id}/pdf/",
        }


class InvoiceDetailOutput(InvoiceOutput):
    lines = InvoiceLineOutput(many=True, source="lines.all")
    charges = ChargeSummaryOutput(many=True, source="charges.all")
    credit_applied_minor = MaskedAmountField(
        help_text="Credit on the account used by this invoice when it was built (COR-1): its charges collect the "
        "total less this. Credit notes against it: /api/v1/invoices/{id}/credit-notes/."
    )


def invoice_or_404(user, invoice_id: str):
    invoice = invoice_list_for_user(user=user).filter(public_id=uuid_or_404(invoice_id)).first()
    if invoice is None:
        raise NotFound()
    return invoice


class InvoicesApi(ApiView):
    capabilities = {"get": VIEW}
    schema_tags = ("invoices",)
    ordering_fields = ("period_start", "number", "created_at")
    default_ordering = "-period_start"

    class FilterSerializer(serializers.Serializer):
        month = MonthField(required=False, help_text="Invoices whose cycle starts in this month.")
        status = serializers.ChoiceField(choices=ChargeStatus.choices, required=False)
        client = serializers.UUIDField(required=False)

    @extend_schema(
        operation_id="invoices_list",
        parameters=[FilterSerializer, *list_parameters(ordering_fields), IF_NONE_MATCH],
        responses={200: page_of(InvoiceOutput), 304: NOT_MODIFIED},
        summary="Client invoices, filtered by month, status, client",
    )
    def get(self, request):
        filters = query_filters(self.FilterSerializer, request)
        user, month, status = self.user, filters.get("month"), filters.get("status")
        amounts = self.can(C.VIEW_AMOUNTS)

        invoices = invoice_list_for_user(user=user, month=month, status=status, client_public_id=filters.get("client"))
        page = paginate_rows(
            request=request,
            view=self,
            model=Invoice,
            queryset=invoices,
            columns=InvoiceOutput.row_columns,
            write=lambda values: InvoiceOutput.row(values, amounts=amounts),
        )
        return with_etag(request, page)


class InvoiceApi(ApiView):
    capabilities = {"get": VIEW}
    schema_tags = ("invoices",)

    @extend_schema(
        operation_id="invoices_retrieve",
        parameters=[path_uuid("invoice_id"), IF_NONE_MATCH],
        responses={200: InvoiceDetailOutput, 304: NOT_MODIFIED},
        summary="An invoice with its lines and charges (ETag)",
    )
    def get(self, request, invoice_id):
        invoice = invoice_or_404(self.user, invoice_id)
        invoice = invoice_list_for_user(user=self.user).prefetch_related("lines", "charges").get(pk=invoice.pk)
        return with_etag(request, InvoiceDetailOutput(invoice, context={"request": request}).data)


class InvoicePdfApi(ApiView):
    capabilities = {"get": VIEW}
    schema_tags = ("invoices",)

    def perform_content_negotiation(self, request, force=False):
        # A client asking for application/pdf gets the PDF; errors are always the JSON error shape.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        operation_id="invoices_pdf",
        parameters=[path_uuid("invoice_id"), IF_NONE_MATCH],
        responses={(200, "application/pdf"): OpenApiTypes.BINARY, 304: NOT_MODIFIED},
        summary="The invoice PDF (INV-1), with an ETag",
    )
    def get(self, request, invoice_id):
        if not self.can(C.VIEW_AMOUNTS):
            raise PermissionDenied("Your role sees statuses only: no PDFs.")  # ROLE-1: Jr. Salesperson
        invoice = invoice_or_404(self.user, invoice_id)
        # Named by what the PDF is made of, so an unchanged one is answered 304 without rendering it.
        etag = invoice_pdf_etag(invoice=invoice, agency=request.tenant)
        if if_none_match(request, etag):
            return HttpResponse(status=304, headers={"ETag": etag})
        data = invoice_pdf(invoice=invoice, agency=request.tenant)
        if invoice.pdf:  # stored by this read (a settled invoice's first): named by its bytes from now on
            etag = stored_pdf_etag(data)
        return HttpResponse(
            data,
            content_type="application/pdf",
            headers={"ETag": etag, "Content-Disposition": f'attachment; filename="{pdf_filename(invoice)}"'},
        )


# --- charges -------------------------------------------------------------------------------------------------


class AttemptOutput(serializers.Serializer):
    number = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=AttemptKind.choices)
    attempted_on = serializers.DateField()
    amount_minor = MaskedAmountField()
    outcome = serializers.ChoiceField(choices=AttemptOutcome.choices)
    gateway_reference = serializers.CharField()
    decline_code = serializers.CharField()
    message = serializers.CharField()
    created_at = serializers.DateTimeField()


class ChargeEventOutput(serializers.Serializer):
    from_status = serializers.CharField()
    to_status = serializers.CharField()
    reason = serializers.CharField()
    actor = serializers.CharField()
    business_date = serializers.DateField()
    created_at = serializers.DateTimeField()


class ChargeOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    invoice = serializers.UUIDField(source="invoice.public_id")
    invoice_number = serializers.CharField(source="invoice.number")
    client = ClientRef()
    installment = serializers.IntegerField()
    amount_minor = MaskedAmountField()
    currency = serializers.CharField()
    status = serializers.ChoiceField(choices=ChargeStatus.choices)
    billing_date = serializers.DateField(help_text=_BILLING_DATE_HELP)
    due_on = serializers.DateField(help_text=_DUE_ON_HELP)
    next_retry_on = serializers.DateField(allow_null=True)
    paid_on = serializers.DateField(allow_null=True)
    paid_out_on = serializers.DateField(allow_null=True)
    attempts = AttemptOutput(many=True, source="attempts.all")
    dispute = serializers.SerializerMethodField(
        help_text="The state of the charge's latest dispute (COR-2), shown beside its status; null when none."
    )

    @extend_schema_field(serializers.ChoiceField(choices=DisputeStatus.choices, allow_null=True))
    def get_dispute(self, charge) -> str | None:
        disputes = list(charge.disputes.all())  # prefetched by charge_list_for_user
        return max(disputes, key=lambda d: (d.opened_on, d.pk)).status if disputes else None


class ChargeDetailOutput(ChargeOutput):
    events = ChargeEventOutput(many=True, source="events.all")


def charge_or_404(user, charge_id: str) -> Charge:
    charge = charge_list_for_user(user=user).filter(public_id=uuid_or_404(charge_id)).first()
    if charge is None:
        raise NotFound()
    return charge


class ChargesApi(ApiView):
    capabilities = {"get": VIEW}
    schema_tags = ("charges",)
    ordering_fields = ("due_on", "billing_date", "created_at")
    default_ordering = "-due_on"

    class FilterSerializer(serializers.Serializer):
        month = MonthField(required=False, help_text="Charges whose billing date is in this month.")
        status = serializers.ChoiceField(choices=ChargeStatus.choices, required=False)
        client = serializers.UUIDField(required=False)
        invoice = serializers.UUIDField(required=False)

    @extend_schema(
        operation_id="charges_list",
        parameters=[FilterSerializer, *list_parameters(ordering_fields)],
        responses=page_of(ChargeOutput),
        summary="Client charges with their attempts",
    )
    def get(self, request):
        filters = query_filters(self.FilterSerializer, request)
        charges = charge_list_for_user(
            user=self.user,
            month=filters.get("month"),
            status=filters.get("status"),
            client_public_id=filters.get("client"),
            invoice_public_id=filters.get("invoice"),
        )
        return paginate(request=request, view=self, queryset=charges, serializer_class=ChargeOutput)


class ChargeApi(ApiView):
    capabilities = {"get": VIEW}
    schema_tags = ("charges",)

    @extend_schema(
        operation_id="charges_retrieve",
        parameters=[path_uuid("charge_id")],
        responses=ChargeDetailOutput,
        summary="A charge with its attempts and status history",
    )
    def get(self, request, charge_id):
        charge = charge_or_404(self.user, charge_id)
        charge = charge_list_for_user(user=self.user).prefetch_related("events").get(pk=charge.pk)
        return Response(ChargeDetailOutput(charge, context={"request": request}).data)


# --- support requests (RET-4, COL-1) -------------------------------------------------------------------------


class SupportRequestOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    kind = serializers.ChoiceField(choices=RequestKind.choices)
    client = ClientRef()
    charge = serializers.UUIDField(source="charge.public_id", allow_null=True, default=None)
    requested_by = serializers.CharField()
    reason = serializers.CharField()
    status = serializers.ChoiceField(choices=["OPEN", "DONE", "REJECTED"])
    resolved_by = serializers.CharField()
    resolved_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class ReasonInput(StrictSerializer):
    reason = StrictCharField(max_length=2000, required=False, allow_blank=True, default="")


class RetryRequestsApi(ApiView):
    capabilities = {"post": (C.REQUEST_SUPPORT,)}
    schema_tags = ("support",)

    @extend_schema(
        operation_id="retry_requests_create",
        parameters=[path_uuid("charge_id")],
        request=ReasonInput,
        responses={201: SupportRequestOutput},
        summary="Ask billing support to retry a Retrying or Uncollectable charge (RET-4)",
    )
    def post(self, request, charge_id):
        charge = charge_or_404(self.user, charge_id)
        data = validated(ReasonInput, request)
        support_request = retry_request(charge=charge, user=self.user, reason=data["reason"])
        return Response(SupportRequestOutput(support_request).data, status=status.HTTP_201_CREATED)


class AgencyInvoicedRequestsApi(ApiView):
    capabilities = {"post": (C.REQUEST_SUPPORT,)}
    schema_tags = ("support",)

    class InputSerializer(StrictSerializer):
        reason = StrictCharField(max_length=2000)

    @extend_schema(
        operation_id="agency_invoiced_requests_create",
        parameters=[path_uuid("client_id")],
        request=InputSerializer,
        responses={201: SupportRequestOutput},
        summary="Ask billing support to switch a client to Agency Invoiced (COL-1)",
    )
    def post(self, request, client_id):
        client = client_or_404(self.user, client_id)
        data = validated(self.InputSerializer, request)
        support_request = agency_invoiced_request(client=client, user=self.user, reason=data["reason"])
        return Response(SupportRequestOutput(support_request).data, status=status.HTTP_201_CREATED)


class SupportRequestsApi(ApiView):
    capabilities = {"get": VIEW}
    schema_tags = ("support",)
    ordering_fields = ("created_at",)
    default_ordering = "-created_at"

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=["OPEN", "DONE", "REJECTED"], required=False)
        kind = serializers.ChoiceField(choices=RequestKind.choices, required=False)

    @extend_schema(
        operation_id="support_requests_list",
        parameters=[FilterSerializer, *list_parameters(ordering_fields)],
        responses=page_of(SupportRequestOutput),
        summary="Retry and Agency Invoiced requests",
    )
    def get(self, request):
        filters = query_filters(self.FilterSerializer, request)
        requests = SupportRequest.objects.filter(client_visibility(user=self.user, path="client__")).select_related(
            "client", "charge"
        )
        if filters.get("status"):
            requests = requests.filter(status=filters["status"])
        if filters.get("kind"):
            requests = requests.filter(kind=filters["kind"])
        return paginate(request=request, view=self, queryset=requests, serializer_class=SupportRequestOutput)


# --- notices log ---------------------------------------------------------------------------------------------


class NoticeOutput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=NoticeKind.choices)
    account = serializers.CharField(help_text="A client id, or agency:<email> for notices to the agency.")
    period = serializers.CharField()
    number = serializers.IntegerField()
    to_email = serializers.EmailField()
    subject = serializers.CharField()
    body = serializers.CharField()
    used_default = serializers.BooleanField(help_text="The shipped template was used.")
    status = serializers.ChoiceField(choices=OutboxStatus.choices)
    attempts = serializers.IntegerField()
    last_error = serializers.CharField()
    business_date = serializers.DateField()
    created_at = serializers.DateTimeField()
    sent_at = serializers.DateTimeField(allow_null=True)


class NoticesApi(ApiView):
    # The log holds amounts of every client: for the roles that see all clients with amounts.
    capabilities = {"get": (C.VIEW_BILLING,)}
    schema_tags = ("notices",)
    ordering_fields = ("created_at",)
    default_ordering = "-created_at"

    class FilterSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=NoticeKind.choices, required=False)
        status = serializers.ChoiceField(choices=OutboxStatus.choices, required=False)
        client = serializers.UUIDField(required=False)
        month = MonthField(required=False, help_text="Notices of this month (business date).")

    @extend_schema(
        operation_id="notices_list",
        parameters=[FilterSerializer, *list_parameters(ordering_fields)],
        responses=page_of(NoticeOutput),
        summary="The notices log (emails queued and sent)",
    )
    def get(self, request):
        filters = query_filters(self.FilterSerializer, request)
        notices = Notice.objects.all()
        if filters.get("client"):
            notices = notices_about_client(client_public_id=str(filters["client"]))
        if filters.get("kind"):
            notices = notices.filter(kind=filters["kind"])
        if filters.get("status"):
            notices = notices.filter(status=filters["status"])
        if filters.get("month"):
            month = filters["month"]
            notices = notices.filter(business_date__year=month.year, business_date__month=month.month)
        return paginate(request=request, view=self, queryset=notices, serializer_class=NoticeOutput)


# --- Billing Setup -------------------------------------------------------------------------------------------


class BillingSettingsOutput(serializers.Serializer):
    billing_day = serializers.IntegerField(help_text="The agency's billing day, 1–28 (CYC-1).")
    time_zone = serializers.CharField(help_text="Billing days are this zone's calendar days (CYC-5).")
    category_order = serializers.ListField(
        child=serializers.ChoiceField(choices=BillingCategory.choices),
        help_text="Payments apply to open balances in this order (COL-6).",
    )
    grace_period_days = serializers.IntegerField()
    overdue_threshold_minor = serializers.IntegerField()
    statement_days_before = serializers.IntegerField()
    statement_second_after_days = serializers.IntegerField(allow_null=True)
    statement_third_after_days = serializers.IntegerField(allow_null=True)
    overdue_second_after_days = serializers.IntegerField(allow_null=True)
    overdue_third_after_days = serializers.IntegerField(allow_null=True)
    retries_enabled = serializers.BooleanField(help_text="Retry failed autopay payments (RET-5).")
    brand_color = serializers.CharField()
    address = serializers.CharField()
    email = serializers.CharField(help_text="Where the agency's own notices go.")


def _days(**kwargs):
    return StrictIntegerField(required=False, min_value=0, max_value=60, **kwargs)


def _setup(agency, settings: BillingSettings) -> dict:
    values = {name: getattr(settings, name) for name in SETTINGS_FIELDS}
    values.update({name: getattr(agency, name) for name in AGENCY_FIELDS})
    return values


class BillingSettingsApi(ApiView):
    capabilities = {"get": (C.ADMINISTER,), "patch": (C.ADMINISTER,)}
    schema_tags = ("settings",)

    class UpdateInputSerializer(StrictSerializer):
        billing_day = StrictIntegerField(required=False, min_value=1, max_value=28)
        time_zone = StrictCharField(required=False, max_length=64)
        category_order = StrictListField(
            child=StrictChoiceField(choices=BillingCategory.choices),
            required=False,
            max_length=6,
            help_text="Each billing category exactly once.",
        )
        grace_period_days = _days()
        overdue_threshold_minor = StrictIntegerField(required=False, min_value=0)
        statement_days_before = _days()
        statement_second_after_days = _days(allow_null=True)
        statement_third_after_days = _days(allow_null=True)
        overdue_second_after_days = _days(allow_null=True)
        overdue_third_after_days = _days(allow_null=True)
        retries_enabled = StrictBooleanField(required=False)
        brand_color = pattern_field(r"^#[0-9a-fA-F]{6}$", "Use a colour such as #2f5bd3.", required=False)
        address = StrictCharField(required=False, allow_blank=True, max_length=1000)
        email = StrictEmailField(required=False, allow_blank=True)

    @extend_schema(
        operation_id="billing_settings_retrieve", responses=BillingSettingsOutput, summary="The Billing Setup"
    )
    def get(self, request):
        return Response(BillingSettingsOutput(_setup(request.tenant, billing_settings())).data)

    @extend_schema(
        operation_id="billing_settings_update",
        request=UpdateInputSerializer,
        responses=BillingSettingsOutput,
        summary="Change the Billing Setup (only the fields sent; applies from the next billing day)",
    )
    def patch(self, request):
        values = validated(self.UpdateInputSerializer, request)
        settings = billing_setup_update(agency=request.tenant, actor=self.user, values=values)
        agency = Agency.objects.get(pk=request.tenant.pk)
        return Response(BillingSettingsOutput(_setup(agency, settings)).data)


class AgencyNextInvoiceApi(ApiView):
    capabilities = {"get": (C.ADMINISTER,)}
    schema_tags = ("settings",)

    class QuerySerializer(serializers.Serializer):
        billing_day = serializers.IntegerField(
            required=False, min_value=1, max_value=28, help_text="The billing day to preview; omitted: the current."
        )

    @extend_schema(
        operation_id="billing_settings_next_invoice",
        parameters=[QuerySerializer],
        responses=NextInvoiceOutput,
        summary="The agency's next invoice (in arrears) — with its billing day, or the one given (CYC-1 preview)",
    )
    def get(self, request):
        query = query_filters(self.QuerySerializer, request)
        agency = request.tenant
        nxt = agency_next_invoice(
            agency=agency, today=agency_today(request), billing_day=query.get("billing_day", agency.billing_day)
        )
        if nxt is None:
            raise NotFound("No invoice in the next two months.")
        return Response(NextInvoiceOutput(nxt).data)
