"""Credit notes and refunds (COR-1) and disputes (COR-2)."""

from __future__ import annotations

from django.db.models import Q
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response

from accounts.permissions import Capability as C
from api.agency.billing import ClientRef, invoice_or_404
from api.agency.clients import VIEW
from api.base import ApiView
from api.common import MaskedAmountField, MonthField, agency_today, path_uuid, query_filters, uuid_or_404, validated
from api.fields import StrictCharField, StrictChoiceField, StrictIntegerField, StrictListField, StrictSerializer
from api.pagination import list_parameters, page_of, paginate
from billing.corrections import REASON_MAX, credit_note_issue
from billing.models import CreditNote, Dispute
from billing.pdf import credit_note_pdf, credit_note_pdf_filename
from billing.statuses import CreditOutcome, DisputeStatus, RefundStatus
from clients.selectors import client_visibility
from core.categories import BillingCategory

# --- credit notes ----------------------------------------------------------------------------------------------


class CreditNoteLineOutput(serializers.Serializer):
    position = serializers.IntegerField()
    invoice_line = serializers.IntegerField(source="invoice_line.position", help_text="The invoice line's position.")
    category = serializers.ChoiceField(choices=BillingCategory.choices)
    description = serializers.CharField()
    amount_minor = MaskedAmountField()


class RefundOutput(serializers.Serializer):
    charge = serializers.UUIDField(source="charge.public_id")
    installment = serializers.IntegerField(source="charge.installment")
    amount_minor = MaskedAmountField()
    status = serializers.ChoiceField(
        choices=RefundStatus.choices,
        help_text="STARTED: sent, answer awaited; PENDING: a bank-debit refund settling; FAILED: kept as credit.",
    )
    reference = serializers.CharField(help_text="The processor's refund id.")
    failure_reason = serializers.CharField()
    settled_on = serializers.DateField(allow_null=True)


class CreditNoteOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    number = serializers.CharField(help_text="Gap-free per agency, its own sequence (COR-1).")
    invoice = serializers.UUIDField(source="invoice.public_id")
    invoice_number = serializers.CharField(source="invoice.number")
    client = ClientRef()
    outcome = serializers.ChoiceField(choices=CreditOutcome.choices)
    reason = serializers.CharField()
    amount_minor = MaskedAmountField()
    currency = serializers.CharField()
    issued_on = serializers.DateField()
    issued_by = serializers.CharField()
    pdf_url = serializers.SerializerMethodField()

    def get_pdf_url(self, note) -> str:
        return f"/api/v1/credit-notes/{note.public_id}/pdf/"


class CreditNoteDetailOutput(CreditNoteOutput):
    lines = CreditNoteLineOutput(many=True, source="lines.all")
    refunds = RefundOutput(many=True, source="refunds.all")


def credit_notes_for_user(user):
    return CreditNote.objects.filter(client_visibility(user=user, path="client__")).select_related("client", "invoice")


def _detailed(user):
    return credit_notes_for_user(user).prefetch_related("lines__invoice_line", "refunds__charge")


def credit_note_or_404(user, credit_note_id: str) -> CreditNote:
    note = credit_notes_for_user(user).filter(public_id=uuid_or_404(credit_note_id)).first()
    if note is None:
        raise NotFound()
    return note


class CreditNoteInput(StrictSerializer):
    reason = StrictCharField(max_length=REASON_MAX, help_text="Why the invoice is corrected (shown to the client).")
    outcome = StrictChoiceField(
        choices=CreditOutcome.choices,
        help_text="REFUND: to the payment method that paid the invoice; CREDIT: kept on the account for what is "
        "open and the next invoice.",
    )
    lines = StrictListField(
        child=StrictIntegerField(min_value=1, max_value=32767),
        required=False,
        min_length=1,
        max_length=500,
        help_text="Positions of the invoice lines credited whole (their share of taxes comes with them). "
        "Give `lines` or `amount_minor`.",
    )
    amount_minor = StrictIntegerField(
        required=False, min_value=1, help_text="An amount, spread over the lines in the billing-category order."
    )

    def validate(self, data):
        if ("lines" in data) == ("amount_minor" in data):
            raise serializers.ValidationError({"lines": ["Give either lines or amount_minor."]})
        return data


class InvoiceCreditNotesApi(ApiView):
    capabilities = {"get": VIEW, "post": (C.EDIT_CLIENT_CONFIG,)}
    schema_tags = ("corrections",)
    idempotency_atomic = False  # a refund calls the processor: the key is claimed and committed first

    @extend_schema(
        operation_id="invoice_credit_notes_list",
        parameters=[path_uuid("invoice_id")],
        responses=CreditNoteDetailOutput(many=True),
        summary="The credit notes of an invoice",
    )
    def get(self, request, invoice_id):
        invoice = invoice_or_404(self.user, invoice_id)
        notes = _detailed(self.user).filter(invoice=invoice).order_by("issued_on", "id")
        return Response(CreditNoteDetailOutput(notes, many=True, context={"request": request}).data)

    @extend_schema(
        operation_id="invoice_credit_notes_create",
        parameters=[path_uuid("invoice_id")],
        request=CreditNoteInput,
        responses={201: CreditNoteDetailOutput},
        summary="Issue a credit note: whole lines or an amount, refunded or kept as credit (COR-1)",
        examples=[
            OpenApiExample(
                "Refund part of a paid invoice",
                request_only=True,
                value={"reason": "Service started on the 15th", "outcome": "REFUND", "amount_minor": 2500},
            ),
            OpenApiExample(
                "Credit a line for the next invoice",
                request_only=True,
                value={"reason": "Listing not delivered", "outcome": "CREDIT", "lines": [2]},
            ),
        ],
    )
    def post(self, request, invoice_id):
        invoice = invoice_or_404(self.user, invoice_id)
        data = validated(CreditNoteInput, request)
        note = credit_note_issue(
            invoice=invoice,
            user=self.user,
            reason=data["reason"],
            outcome=data["outcome"],
            line_positions=data.get("lines"),
            amount_minor=data.get("amount_minor"),
            today=agency_today(request),
        )
        note = (
            credit_notes_for_user(self.user).prefetch_related("lines__invoice_line", "refunds__charge").get(pk=note.pk)
        )
        return Response(CreditNoteDetailOutput(note, context={"request": request}).data, status=status.HTTP_201_CREATED)


class CreditNotesApi(ApiView):
    capabilities = {"get": VIEW}
    schema_tags = ("corrections",)
    ordering_fields = ("issued_on", "created_at")
    default_ordering = "-issued_on"

    class FilterSerializer(serializers.Serializer):
        month = MonthField(required=False, help_text="Credit notes issued in this month.")
        client = serializers.UUIDField(required=False)
        invoice = serializers.UUIDField(required=False)
        outcome = serializers.ChoiceField(choices=CreditOutcome.choices, required=False)

    @extend_schema(
        operation_id="credit_notes_list",
        parameters=[FilterSerializer, *list_parameters(ordering_fields)],
        responses=page_of(CreditNoteOutput),
        summary="Credit notes, filtered by month, client, invoice, outcome",
    )
    def get(self, request):
        filters = query_filters(self.FilterSerializer, request)
        notes = credit_notes_for_user(self.user)
        if filters.get("month"):
            notes = notes.filter(issued_on__year=filters["month"].year, issued_on__month=filters["month"].month)
        if filters.get("client"):
            notes = notes.filter(client__public_id=filters["client"])
        if filters.get("invoice"):
            notes = notes.filter(invoice__public_id=filters["invoice"])
        if filters.get("outcome"):
            notes = notes.filter(outcome=filters["outcome"])
        return paginate(request=request, view=self, queryset=notes, serializer_class=CreditNoteOutput)


class CreditNoteApi(ApiView):
    capabilities = {"get": VIEW}
    schema_tags = ("corrections",)

    @extend_schema(
        operation_id="credit_notes_retrieve",
        parameters=[path_uuid("credit_note_id")],
        responses=CreditNoteDetailOutput,
        summary="A credit note with its lines and refunds",
    )
    def get(self, request, credit_note_id):
        note = credit_note_or_404(self.user, credit_note_id)
        note = (
            credit_notes_for_user(self.user).prefetch_related("lines__invoice_line", "refunds__charge").get(pk=note.pk)
        )
        return Response(CreditNoteDetailOutput(note, context={"request": request}).data)


class CreditNotePdfApi(ApiView):
    capabilities = {"get": VIEW}
    schema_tags = ("corrections",)

    def perform_content_negotiation(self, request, force=False):
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        operation_id="credit_notes_pdf",
        parameters=[path_uuid("credit_note_id")],
        responses={(200, "application/pdf"): OpenApiTypes.BINARY},
        summary="The credit note's PDF (the invoice's branding)",
    )
    def get(self, request, credit_note_id):
        if not self.can(C.VIEW_AMOUNTS):
            raise PermissionDenied("Your role sees statuses only: no PDFs.")  # ROLE-1: Jr. Salesperson
        note = credit_note_or_404(self.user, credit_note_id)
        data = credit_note_pdf(credit_note=note, agency=request.tenant)
        return HttpResponse(
            data,
            content_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="{credit_note_pdf_filename(note)}"'},
        )


# --- disputes --------------------------------------------------------------------------------------------------


class DisputeOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    reference = serializers.CharField(help_text="The processor's dispute id.")
    charge = serializers.UUIDField(source="charge.public_id")
    invoice = serializers.UUIDField(source="charge.invoice.public_id")
    invoice_number = serializers.CharField(source="charge.invoice.number")
    client = ClientRef(source="charge.client")
    status = serializers.ChoiceField(choices=DisputeStatus.choices)
    reason = serializers.CharField(help_text="The card holder's reason, e.g. fraudulent.")
    amount_minor = MaskedAmountField()
    currency = serializers.CharField()
    opened_on = serializers.DateField()
    due_by = serializers.DateField(allow_null=True, help_text="The last day to respond (UTC).")
    closed_on = serializers.DateField(allow_null=True)
    recovered_from_agency = serializers.SerializerMethodField(
        help_text="A lost dispute's amount was taken back from the agency's payouts."
    )

    def get_recovered_from_agency(self, dispute) -> bool:
        return bool(dispute.recovery_reference)


class DisputesApi(ApiView):
    capabilities = {"get": VIEW}
    schema_tags = ("corrections",)
    ordering_fields = ("opened_on", "created_at")
    default_ordering = "-opened_on"

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=DisputeStatus.choices, required=False)
        client = serializers.UUIDField(required=False)
        open = serializers.BooleanField(required=False, help_text="Only disputes that need a response or are reviewed.")

    @extend_schema(
        operation_id="disputes_list",
        parameters=[FilterSerializer, *list_parameters(ordering_fields)],
        responses=page_of(DisputeOutput),
        summary="Disputes (chargebacks) of client charges, with their state (COR-2)",
    )
    def get(self, request):
        filters = query_filters(self.FilterSerializer, request)
        disputes = Dispute.objects.filter(client_visibility(user=self.user, path="charge__client__")).select_related(
            "charge__client", "charge__invoice"
        )
        if filters.get("status"):
            disputes = disputes.filter(status=filters["status"])
        if filters.get("client"):
            disputes = disputes.filter(charge__client__public_id=filters["client"])
        if filters.get("open"):
            disputes = disputes.filter(Q(status=DisputeStatus.NEEDS_RESPONSE) | Q(status=DisputeStatus.UNDER_REVIEW))
        return paginate(request=request, view=self, queryset=disputes, serializer_class=DisputeOutput)
