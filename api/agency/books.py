"""The books (MON-4, COL-6, DUN-1): a client's ledger entries with their allocations, its balance now or as of a day
and its overdue state; every visible client's balance; the agency's own books with the platform (its platform
invoices, their charges and payments, PAY-3). Reads only (`billing/books.py`)."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from accounts.permissions import Capability as C
from accounts.permissions import has_capability
from api.agency.billing import AttemptOutput, ClientRef, InvoiceLineOutput
from api.agency.clients import VIEW, client_or_404
from api.base import ApiView
from api.common import MaskedAmountField, MonthField, agency_today, path_uuid, query_filters, uuid_or_404
from api.pagination import Keyset, list_parameters, page_of, paginate
from billing.base_models import EntryType
from billing.books import (
    Balance,
    OverdueState,
    agency_balance_summary,
    agency_invoice_open,
    agency_invoice_payments,
    agency_invoice_status,
    agency_invoices,
    agency_ledger,
    client_balance_summary,
    client_balances,
    client_ledger,
    entry_allocations,
    entry_open_minor,
    overdue_states,
)
from billing.pdf import agency_invoice_pdf, pdf_filename
from billing.statuses import ChargeStatus
from clients.selectors import client_list_for_user
from core.categories import BillingCategory

# The agency's own books are not any client's: for the roles that see every client with amounts (ROLE-1).
AGENCY_BOOKS = (C.VIEW_BILLING,)


def _amounts(context: dict) -> bool:
    request = context.get("request")
    return request is not None and has_capability(request.user, C.VIEW_AMOUNTS)


# --- ledger entries ----------------------------------------------------------------------------------------------


class InvoiceRef(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    number = serializers.CharField()


class AllocationOutput(serializers.Serializer):
    entry = serializers.UUIDField(source="entry.public_id", help_text="The other entry of the allocation.")
    entry_type = serializers.ChoiceField(source="entry.entry_type", choices=EntryType.choices)
    category = serializers.ChoiceField(source="entry.category", choices=BillingCategory.choices)
    occurred_on = serializers.DateField(source="entry.occurred_on")
    amount_minor = MaskedAmountField()


class LedgerEntryOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    entry_type = serializers.ChoiceField(choices=EntryType.choices)
    category = serializers.ChoiceField(choices=BillingCategory.choices)
    amount_minor = MaskedAmountField(
        help_text="Signed as in the ledger: charges, refunds and chargebacks positive, payments and credits negative. "
        "Null when the caller's role sees statuses only."
    )
    currency = serializers.CharField()
    occurred_on = serializers.DateField(help_text="The agency's calendar day of the entry.")
    reference = serializers.CharField(help_text="The invoice number of a charge; the payment's reference.")
    invoice = InvoiceRef(allow_null=True)
    open_minor = serializers.SerializerMethodField(
        help_text="Something owed (charge, refund, chargeback): what is still open of it. A payment or credit: what "
        "of it is applied to nothing."
    )
    allocations = serializers.SerializerMethodField(
        help_text="Something owed: the payments and credits applied to it. A payment or credit: what it paid, "
        "in the order it paid it (COL-6)."
    )
    created_at = serializers.DateTimeField()

    @extend_schema_field({"type": "integer", "nullable": True})
    def get_open_minor(self, entry) -> int | None:
        return entry_open_minor(entry) if _amounts(self.context) else None

    @extend_schema_field(AllocationOutput(many=True))
    def get_allocations(self, entry):
        return AllocationOutput(entry_allocations(entry), many=True, context=self.context).data


# One page shape for both ledgers (the client's and the agency's own): one schema component, not two of one name.
LEDGER_PAGE = page_of(LedgerEntryOutput)


class _LedgerFilter(serializers.Serializer):
    date_from = serializers.DateField(required=False, help_text="Entries on or after this day (YYYY-MM-DD).")
    date_to = serializers.DateField(required=False, help_text="Entries on or before this day (YYYY-MM-DD).")
    entry_type = serializers.ChoiceField(choices=EntryType.choices, required=False)
    category = serializers.ChoiceField(choices=BillingCategory.choices, required=False)

    def validate(self, attrs):
        if attrs.get("date_from") and attrs.get("date_to") and attrs["date_from"] > attrs["date_to"]:
            raise serializers.ValidationError({"date_to": ["Must be on or after date_from."]})
        return attrs


def _ledger_filters(request) -> dict:
    filters = query_filters(_LedgerFilter, request)
    return {name: filters.get(name) for name in ("date_from", "date_to", "entry_type", "category")}


class ClientLedgerApi(ApiView):
    capabilities = {"get": VIEW}
    schema_tags = ("books",)
    ordering_fields = ("occurred_on", "created_at")
    default_ordering = "occurred_on"

    @extend_schema(
        operation_id="client_ledger_list",
        parameters=[path_uuid("client_id"), _LedgerFilter, *list_parameters(ordering_fields)],
        responses=LEDGER_PAGE,
        summary="A client's ledger entries with their allocations (MON-4, COL-6), oldest first",
    )
    def get(self, request, client_id):
        client = client_or_404(self.user, client_id)
        entries = client_ledger(client=client, **_ledger_filters(request))
        return paginate(request=request, view=self, queryset=entries, serializer_class=LedgerEntryOutput)


# --- balances and overdue ----------------------------------------------------------------------------------------


class OverdueOutput(serializers.Serializer):
    overdue = serializers.BooleanField(help_text="Flagged overdue (DUN-1).")
    since = serializers.DateField(allow_null=True, help_text="The day the flag was set.")
    past_due_minor = MaskedAmountField(
        help_text="Still open of charges and lost disputes' chargebacks dated before today minus the grace period."
    )
    oldest_past_due_on = serializers.DateField(
        allow_null=True, help_text="The oldest of those: a charge's billing date or the day a dispute was lost."
    )
    threshold_minor = MaskedAmountField(help_text="The agency's overdue threshold.")
    grace_period_days = serializers.IntegerField()
    reached = serializers.BooleanField(help_text="The past-due amount reaches the threshold today.")
    today = serializers.DateField(help_text="The agency's day these figures are for.")


class BalanceOutput(serializers.Serializer):
    client = ClientRef()
    currency = serializers.CharField()
    as_of = serializers.DateField(allow_null=True, help_text="The end of this day; null: everything so far.")
    balance_minor = MaskedAmountField(
        help_text="charged - paid - credited + refunded + charged_back (negative: in credit)."
    )
    charged_minor = MaskedAmountField()
    paid_minor = MaskedAmountField()
    credited_minor = MaskedAmountField()
    refunded_minor = MaskedAmountField()
    charged_back_minor = MaskedAmountField(help_text="Payments taken back in lost disputes (COR-2): owed again.")
    open_minor = MaskedAmountField(help_text="Still open of what is owed.")
    unapplied_minor = MaskedAmountField(help_text="Payments and credits applied to no charge, net of refunds.")
    open_by_category = serializers.SerializerMethodField(
        help_text="Still open per billing category, in the agency's category order (COL-6)."
    )
    overdue = OverdueOutput(help_text="Today's overdue state, whatever as_of.")

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "integer"}, "nullable": True})
    def get_open_by_category(self, value) -> dict | None:
        return dict(value["balance"].open_by_category) if _amounts(self.context) else None

    def to_representation(self, value):
        balance: Balance = value["balance"]
        flat = {name: getattr(balance, name) for name in ("currency", "as_of", "open_minor")}
        for name in ("balance", "charged", "paid", "credited", "refunded", "charged_back", "unapplied"):
            flat[f"{name}_minor"] = getattr(balance, f"{name}_minor")
        return super().to_representation({**value, **flat})


class _AsOfFilter(serializers.Serializer):
    as_of = serializers.DateField(required=False, help_text="The balance at the end of this day (YYYY-MM-DD).")


class ClientBalanceApi(ApiView):
    capabilities = {"get": VIEW}
    schema_tags = ("books",)

    @extend_schema(
        operation_id="client_balance_retrieve",
        parameters=[path_uuid("client_id"), _AsOfFilter],
        responses=BalanceOutput,
        summary="A client's balance now or as of a day, what is open per category, and its overdue state",
    )
    def get(self, request, client_id):
        client = client_or_404(self.user, client_id)
        as_of = query_filters(_AsOfFilter, request).get("as_of")
        balance = client_balance_summary(client=client, currency=request.tenant.currency, as_of=as_of)
        overdue = overdue_states(clients=[client], today=agency_today(request))[client.pk]
        data = {"client": client, "balance": balance, "overdue": overdue}
        return Response(BalanceOutput(data, context={"request": request}).data)


class ClientBalanceRowOutput(serializers.Serializer):
    client = ClientRef()
    currency = serializers.CharField()
    balance_minor = MaskedAmountField()
    overdue = serializers.BooleanField()
    overdue_since = serializers.DateField(allow_null=True)
    past_due_minor = MaskedAmountField()


class BalancesApi(ApiView):
    capabilities = {"get": VIEW}
    schema_tags = ("books",)
    ordering_fields = ("name", "created_at")
    default_ordering = "name"

    class FilterSerializer(_AsOfFilter):
        overdue = serializers.BooleanField(required=False, allow_null=True, default=None, help_text="Only overdue.")

    @extend_schema(
        operation_id="balances_list",
        parameters=[FilterSerializer, *list_parameters(ordering_fields)],
        responses=page_of(ClientBalanceRowOutput),
        summary="Every client's balance (now or as of a day) and overdue state",
    )
    def get(self, request):
        filters = query_filters(self.FilterSerializer, request)
        clients = client_list_for_user(user=self.user)
        if filters.get("overdue") is not None:
            clients = clients.filter(overdue_since__isnull=not filters["overdue"])
        rows, next_link, previous_link = Keyset.for_request(request, self).page(clients, value_of=getattr)
        balances = client_balances(client_ids=[c.pk for c in rows], as_of=filters.get("as_of"))
        states: dict[int, OverdueState] = overdue_states(clients=rows, today=agency_today(request))
        results = [
            {
                "client": client,
                "currency": request.tenant.currency,
                "balance_minor": balances[client.pk],
                "overdue": states[client.pk].overdue,
                "overdue_since": states[client.pk].since,
                "past_due_minor": states[client.pk].past_due_minor,
            }
            for client in rows
        ]
        data = ClientBalanceRowOutput(results, many=True, context={"request": request}).data
        return Response({"next": next_link, "previous": previous_link, "results": data})


# --- the agency's own books with the platform (PAY-3) --------------------------------------------------------------


class AgencyChargeOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    installment = serializers.IntegerField()
    amount_minor = serializers.IntegerField()
    status = serializers.ChoiceField(choices=ChargeStatus.choices)
    billing_date = serializers.DateField()
    due_on = serializers.DateField()
    next_retry_on = serializers.DateField(allow_null=True)
    paid_on = serializers.DateField(allow_null=True)
    attempts = AttemptOutput(many=True, source="attempts.all")


class InvoicePaymentOutput(serializers.Serializer):
    entry = serializers.UUIDField(source="entry.public_id", help_text="The payment's ledger entry.")
    entry_type = serializers.ChoiceField(source="entry.entry_type", choices=EntryType.choices)
    occurred_on = serializers.DateField(source="entry.occurred_on")
    reference = serializers.CharField(source="entry.reference")
    amount_minor = serializers.IntegerField(help_text="How much of the payment went to this invoice.")


class PlatformInvoiceOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    number = serializers.CharField()
    status = serializers.SerializerMethodField(help_text="The collection status, from the invoice's charges.")
    period_start = serializers.DateField()
    period_end = serializers.DateField(help_text="Exclusive: the next cycle's first day.")
    issued_on = serializers.DateField()
    due_on = serializers.DateField()
    currency = serializers.CharField()
    subtotal_minor = serializers.IntegerField()
    tax_minor = serializers.IntegerField()
    total_minor = serializers.IntegerField()
    paid_minor = serializers.SerializerMethodField(help_text="Payments applied to this invoice.")
    open_minor = serializers.SerializerMethodField(help_text="total_minor - paid_minor.")
    charges = AgencyChargeOutput(many=True, source="charges.all")
    payments = serializers.SerializerMethodField()
    pdf_url = serializers.SerializerMethodField()

    @extend_schema_field(serializers.ChoiceField(choices=ChargeStatus.choices))
    def get_status(self, invoice) -> str:
        return agency_invoice_status(list(invoice.charges.all()))

    def get_paid_minor(self, invoice) -> int:
        return sum(p.amount_minor for p in self.context["payments"][invoice.pk])

    def get_open_minor(self, invoice) -> int:
        return agency_invoice_open(invoice, self.context["payments"][invoice.pk])

    @extend_schema_field(InvoicePaymentOutput(many=True))
    def get_payments(self, invoice):
        return InvoicePaymentOutput(self.context["payments"][invoice.pk], many=True).data

    def get_pdf_url(self, invoice) -> str:
        return f"/api/v1/platform-invoices/{invoice.public_id}/pdf/"


class PlatformInvoiceDetailOutput(PlatformInvoiceOutput):
    lines = InvoiceLineOutput(many=True, source="lines.all")


def _platform_invoice_or_404(request, invoice_id: str):
    invoice = agency_invoices(agency=request.tenant).filter(public_id=uuid_or_404(invoice_id)).first()
    if invoice is None:
        raise NotFound()
    return invoice


class PlatformInvoicesApi(ApiView):
    capabilities = {"get": AGENCY_BOOKS}
    schema_tags = ("agency books",)
    ordering_fields = ("period_start", "due_on")
    default_ordering = "-period_start"

    class FilterSerializer(serializers.Serializer):
        month = MonthField(required=False, help_text="Invoices billed (due) in this month.")

    @extend_schema(
        operation_id="platform_invoices_list",
        parameters=[FilterSerializer, *list_parameters(ordering_fields)],
        responses=page_of(PlatformInvoiceOutput),
        summary="The agency's own invoices from the platform (in arrears), with charges and payments (PAY-3)",
    )
    def get(self, request):
        filters = query_filters(self.FilterSerializer, request)
        invoices = agency_invoices(agency=request.tenant, month=filters.get("month"))
        rows, next_link, previous_link = Keyset.for_request(request, self).page(invoices, value_of=getattr)
        context = {"request": request, "payments": agency_invoice_payments(rows)}
        data = PlatformInvoiceOutput(rows, many=True, context=context).data
        return Response({"next": next_link, "previous": previous_link, "results": data})


class PlatformInvoiceApi(ApiView):
    capabilities = {"get": AGENCY_BOOKS}
    schema_tags = ("agency books",)

    @extend_schema(
        operation_id="platform_invoices_retrieve",
        parameters=[path_uuid("platform_invoice_id")],
        responses=PlatformInvoiceDetailOutput,
        summary="One of the agency's platform invoices, with its lines, charges and payments",
    )
    def get(self, request, platform_invoice_id):
        invoice = _platform_invoice_or_404(request, platform_invoice_id)
        context = {"request": request, "payments": agency_invoice_payments([invoice])}
        return Response(PlatformInvoiceDetailOutput(invoice, context=context).data)


class PlatformInvoicePdfApi(ApiView):
    capabilities = {"get": AGENCY_BOOKS}
    schema_tags = ("agency books",)

    def perform_content_negotiation(self, request, force=False):
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        operation_id="platform_invoices_pdf",
        parameters=[path_uuid("platform_invoice_id")],
        responses={(200, "application/pdf"): OpenApiTypes.BINARY},
        summary="The PDF of one of the agency's platform invoices (INV-1)",
    )
    def get(self, request, platform_invoice_id):
        invoice = _platform_invoice_or_404(request, platform_invoice_id)
        return HttpResponse(
            agency_invoice_pdf(invoice=invoice),
            content_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="{pdf_filename(invoice)}"'},
        )


class PlatformLedgerApi(ApiView):
    capabilities = {"get": AGENCY_BOOKS}
    schema_tags = ("agency books",)
    ordering_fields = ("occurred_on", "created_at")
    default_ordering = "occurred_on"

    @extend_schema(
        operation_id="platform_ledger_list",
        parameters=[_LedgerFilter, *list_parameters(ordering_fields)],
        responses=LEDGER_PAGE,
        summary="The agency's own ledger with the platform, with allocations, oldest first",
    )
    def get(self, request):
        entries = agency_ledger(agency=request.tenant, **_ledger_filters(request))
        return paginate(request=request, view=self, queryset=entries, serializer_class=LedgerEntryOutput)


class PlatformBalanceOutput(serializers.Serializer):
    currency = serializers.CharField()
    as_of = serializers.DateField(allow_null=True)
    balance_minor = serializers.IntegerField()
    charged_minor = serializers.IntegerField()
    paid_minor = serializers.IntegerField()
    credited_minor = serializers.IntegerField()
    refunded_minor = serializers.IntegerField()
    charged_back_minor = serializers.IntegerField()
    open_minor = serializers.IntegerField()
    unapplied_minor = serializers.IntegerField()
    open_by_category = serializers.DictField(child=serializers.IntegerField())


class PlatformBalanceApi(ApiView):
    capabilities = {"get": AGENCY_BOOKS}
    schema_tags = ("agency books",)

    @extend_schema(
        operation_id="platform_balance_retrieve",
        parameters=[_AsOfFilter],
        responses=PlatformBalanceOutput,
        summary="What the agency owes the platform, now or as of a day",
    )
    def get(self, request):
        as_of = query_filters(_AsOfFilter, request).get("as_of")
        return Response(PlatformBalanceOutput(agency_balance_summary(agency=request.tenant, as_of=as_of)).data)
