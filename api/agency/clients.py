"""Clients, their configuration (PLAN-2), Agency Services lines, tax rates and payment-method state."""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from accounts.models import AGENCY_STAFF_ROLES, User
from accounts.permissions import Capability as C
from api.base import ApiView
from api.common import (
    DaysListField,
    MaskedAmountField,
    NextInvoiceOutput,
    agency_today,
    path_uuid,
    query_filters,
    uuid_or_404,
    validated,
)
from api.fields import (
    AmountField,
    DecimalTextField,
    RatePercentField,
    StrictBooleanField,
    StrictCharField,
    StrictDateField,
    StrictEmailField,
    StrictIntegerField,
    StrictListField,
    StrictSerializer,
    StrictUUIDField,
)
from api.pagination import list_parameters, page_of, paginate
from billing.models import PaymentMethod
from billing.payment_methods import payment_method_attach
from billing.providers.base import ProviderError
from billing.selectors import client_next_invoice
from clients.models import AgencyServiceLine, Client, ServiceRecurrence, TaxRate
from clients.selectors import client_list_for_user, client_search_for_user
from clients.services import (
    MAX_AUTOPAY_DAYS,
    client_configure,
    client_create,
    service_line_add,
    service_line_remove,
    tax_rate_create,
)
from core.errors import ApplicationError
from core.identifiers import identifier_key
from core.money import rate_bp_or_none, rate_from_bp

VIEW = (C.VIEW_BILLING, C.VIEW_OWN_BILLING)
EDIT = (C.EDIT_CLIENT_CONFIG,)


def client_or_404(user: User, client_id: str) -> Client:
    """A client the user may see; any other id — another agency's, another salesperson's — is a plain 404."""
    client = client_list_for_user(user=user).filter(public_id=uuid_or_404(client_id)).first()
    if client is None:
        raise NotFound()
    return client


def _salesperson(email: str | None) -> User | None:
    if email is None:
        return None
    user = User.objects.filter(email_key=identifier_key(email), is_active=True, role__in=AGENCY_STAFF_ROLES).first()
    if user is None:
        raise ApplicationError("No such salesperson.", fields={"salesperson": ["No active staff user has this email."]})
    return user


def _taxes(ids: list) -> list[TaxRate]:
    rates = list(TaxRate.objects.filter(public_id__in=ids))
    if len(rates) != len(set(ids)):
        raise ApplicationError("Unknown tax rate.", fields={"taxes": ["One of these tax rates does not exist."]})
    return rates


class TaxRateOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    name = serializers.CharField()
    rate_percent = DecimalTextField(help_text='Percent with up to 4 decimals, as a string: "8.875" (MON-2).')
    rate_bp = serializers.SerializerMethodField(
        help_text="Deprecated: the rate in whole basis points (825 = 8.25 %); null when it has a finer part."
    )

    def get_rate_bp(self, rate) -> int | None:
        return rate_bp_or_none(rate.rate_percent)


def rate_input(data: dict) -> Decimal:
    """The rate of a tax-rate request: `rate_percent` (a string, up to 4 decimals) or, as before MON-2's finer
    precision, `rate_bp` (whole basis points) — exactly one of them."""
    if ("rate_percent" in data) == ("rate_bp" in data):
        message = 'Give the rate as rate_percent, such as "8.875" (or rate_bp in whole basis points), once.'
        raise ApplicationError(message, code="invalid_tax_rate", fields={"rate_percent": [message]})
    return data["rate_percent"] if "rate_percent" in data else rate_from_bp(data["rate_bp"])


class ServiceLineOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    description = serializers.CharField()
    amount_minor = MaskedAmountField()
    recurrence = serializers.ChoiceField(choices=ServiceRecurrence.choices)
    taxable = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class ClientOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    name = serializers.CharField()
    email = serializers.EmailField()
    salesperson = serializers.EmailField(source="salesperson.email", allow_null=True, default=None)
    currency = serializers.SerializerMethodField()
    license_price_minor = MaskedAmountField()
    taxes = TaxRateOutput(many=True, source="taxes.all")
    billing_day = serializers.IntegerField(allow_null=True, help_text="Custom billing day; null: the agency's.")
    autopay_days = serializers.ListField(child=serializers.IntegerField())
    service_lines = serializers.SerializerMethodField()
    agency_invoiced = serializers.BooleanField()
    agency_invoiced_reason = serializers.CharField()
    activated_on = serializers.DateField()
    deactivated_on = serializers.DateField(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_currency(self, client) -> str:
        return self.context["request"].tenant.currency

    @extend_schema_field(ServiceLineOutput(many=True))
    def get_service_lines(self, client):
        lines = [line for line in client.service_lines.all() if line.removed_at is None]
        return ServiceLineOutput(lines, many=True, context=self.context).data


def _client_queryset(queryset):
    return queryset.select_related("salesperson").prefetch_related("taxes", "service_lines")


class ClientsApi(ApiView):
    capabilities = {"get": VIEW, "post": EDIT}
    schema_tags = ("clients",)
    ordering_fields = ("name", "created_at")
    default_ordering = "name"

    class FilterSerializer(serializers.Serializer):
        search = serializers.CharField(required=False, max_length=200, help_text="Part of the client's name.")
        agency_invoiced = serializers.BooleanField(required=False, allow_null=True, default=None)
        salesperson = serializers.EmailField(required=False, help_text="The salesperson's email.")

    class CreateInputSerializer(StrictSerializer):
        name = StrictCharField(max_length=200)
        email = StrictEmailField()
        license_price_minor = AmountField(required=False, default=0)
        salesperson = StrictEmailField(required=False, allow_null=True, default=None)
        billing_day = StrictIntegerField(required=False, allow_null=True, default=None, min_value=1, max_value=28)
        autopay_days = StrictListField(
            child=StrictIntegerField(min_value=1, max_value=28), required=False, max_length=28, default=list
        )
        taxes = StrictListField(
            child=StrictUUIDField(), required=False, max_length=50, default=list, help_text="Tax rate ids."
        )
        activated_on = StrictDateField(required=False, help_text="Default: today in the agency's time zone.")

    @extend_schema(
        operation_id="clients_list",
        parameters=[FilterSerializer, *list_parameters(ordering_fields)],
        responses=page_of(ClientOutput),
        summary="List clients (salespeople: their own)",
    )
    def get(self, request):
        filters = query_filters(self.FilterSerializer, request)
        clients = client_search_for_user(
            user=self.user,
            search=filters.get("search"),
            agency_invoiced=filters.get("agency_invoiced"),
            salesperson_email=filters.get("salesperson"),
        )
        return paginate(request=request, view=self, queryset=_client_queryset(clients), serializer_class=ClientOutput)

    @extend_schema(
        operation_id="clients_create",
        request=CreateInputSerializer,
        responses={201: ClientOutput},
        summary="Create a client with its configuration",
    )
    def post(self, request):
        data = validated(self.CreateInputSerializer, request)
        client = client_create(
            name=data["name"],
            email=data["email"],
            activated_on=data.get("activated_on") or agency_today(request),
            license_price_minor=data["license_price_minor"],
            salesperson=_salesperson(data["salesperson"]),
            billing_day=data["billing_day"],
            autopay_days=data["autopay_days"],
            taxes=_taxes(data["taxes"]),
            actor=self.user,
        )
        client = _client_queryset(Client.objects).get(pk=client.pk)
        return Response(
            ClientOutput(client, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": f"/api/v1/clients/{client.public_id}/"},
        )


class ClientApi(ApiView):
    capabilities = {"get": VIEW, "patch": EDIT}
    schema_tags = ("clients",)

    class ConfigureInputSerializer(StrictSerializer):
        license_price_minor = AmountField(required=False)
        salesperson = StrictEmailField(required=False, allow_null=True)
        billing_day = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=28)
        autopay_days = StrictListField(
            child=StrictIntegerField(min_value=1, max_value=28), required=False, max_length=28
        )
        taxes = StrictListField(child=StrictUUIDField(), required=False, max_length=50)

    @extend_schema(
        operation_id="clients_retrieve",
        parameters=[path_uuid("client_id")],
        responses=ClientOutput,
        summary="A client and its configuration",
    )
    def get(self, request, client_id):
        client = client_or_404(self.user, client_id)
        return Response(
            ClientOutput(_client_queryset(Client.objects).get(pk=client.pk), context={"request": request}).data
        )

    @extend_schema(
        operation_id="clients_configure",
        parameters=[path_uuid("client_id")],
        request=ConfigureInputSerializer,
        responses=ClientOutput,
        summary="Change the Client Configuration (only the fields sent)",
    )
    def patch(self, request, client_id):
        client = client_or_404(self.user, client_id)
        serializer = self.ConfigureInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        if "salesperson" in changes:
            changes["salesperson"] = _salesperson(changes["salesperson"])
        if "taxes" in changes:
            changes["taxes"] = _taxes(changes["taxes"])
        client_configure(client=client, actor=self.user, **changes)
        return Response(
            ClientOutput(_client_queryset(Client.objects).get(pk=client.pk), context={"request": request}).data
        )


class ServiceLinesApi(ApiView):
    capabilities = {"get": VIEW, "post": EDIT}
    schema_tags = ("clients",)

    class AddInputSerializer(StrictSerializer):
        description = StrictCharField(max_length=200)
        amount_minor = AmountField()
        one_time = StrictBooleanField(
            required=False, default=False, help_text="Billed once, then removed automatically (PLAN-2)."
        )
        taxable = StrictBooleanField(required=False, default=True)

    @extend_schema(
        operation_id="service_lines_list",
        parameters=[path_uuid("client_id")],
        responses=ServiceLineOutput(many=True),
        summary="The client's Agency Services lines",
    )
    def get(self, request, client_id):
        client = client_or_404(self.user, client_id)
        lines = AgencyServiceLine.objects.filter(client=client, removed_at__isnull=True)
        return Response(ServiceLineOutput(lines, many=True, context={"request": request}).data)

    @extend_schema(
        operation_id="service_lines_create",
        parameters=[path_uuid("client_id")],
        request=AddInputSerializer,
        responses={201: ServiceLineOutput},
        summary="Add an Agency Services line",
    )
    def post(self, request, client_id):
        client = client_or_404(self.user, client_id)
        serializer = self.AddInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        line = service_line_add(client=client, actor=self.user, **serializer.validated_data)
        return Response(ServiceLineOutput(line, context={"request": request}).data, status=status.HTTP_201_CREATED)


class ServiceLineApi(ApiView):
    capabilities = {"delete": EDIT}
    schema_tags = ("clients",)

    @extend_schema(
        operation_id="service_lines_remove",
        parameters=[path_uuid("client_id"), path_uuid("line_id")],
        request=None,
        responses={204: None},
        summary="Remove an Agency Services line from future invoices",
    )
    def delete(self, request, client_id, line_id):
        client = client_or_404(self.user, client_id)
        line = AgencyServiceLine.objects.filter(
            client=client, public_id=uuid_or_404(line_id), removed_at__isnull=True
        ).first()
        if line is None:
            raise NotFound()
        service_line_remove(line=line, actor=self.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PaymentMethodOutput(serializers.Serializer):
    """What is on file — never card numbers: the processor keeps those."""

    has_payment_method = serializers.BooleanField()
    kind = serializers.CharField(allow_null=True, help_text="card, sepa_debit or us_bank_account")
    brand = serializers.CharField(allow_null=True)
    last4 = serializers.CharField(allow_null=True)
    label = serializers.CharField(allow_null=True, help_text="e.g. Visa ···· 4242")
    added_at = serializers.DateTimeField(allow_null=True)


def payment_method_state(client: Client) -> dict:
    method = PaymentMethod.objects.filter(client=client, removed_at__isnull=True).first()
    if method is None:
        return {
            "has_payment_method": False,
            "kind": None,
            "brand": None,
            "last4": None,
            "label": None,
            "added_at": None,
        }
    return {
        "has_payment_method": True,
        "kind": method.kind,
        "brand": method.brand or None,
        "last4": method.last4 or None,
        "label": str(method),
        "added_at": method.created_at,
    }


class PaymentMethodApi(ApiView):
    capabilities = {"get": VIEW, "post": EDIT}
    schema_tags = ("clients",)
    idempotency_atomic = False  # the processor is called: the key is claimed and committed first

    class AttachInputSerializer(StrictSerializer):
        token = StrictCharField(
            max_length=120,
            help_text="A payment-method token from the processor (Stripe.js), e.g. pm_card_visa in the sandbox.",
        )

    @extend_schema(
        operation_id="payment_method_retrieve",
        parameters=[path_uuid("client_id")],
        responses=PaymentMethodOutput,
        summary="Payment-method state of a client",
    )
    def get(self, request, client_id):
        client = client_or_404(self.user, client_id)
        return Response(PaymentMethodOutput(payment_method_state(client)).data)

    @extend_schema(
        operation_id="payment_method_attach",
        parameters=[path_uuid("client_id")],
        request=AttachInputSerializer,
        responses={201: PaymentMethodOutput},
        summary="Save (or replace) the client's payment method from a processor token",
        examples=[OpenApiExample("Sandbox Visa", request_only=True, value={"token": "pm_card_visa"})],
    )
    def post(self, request, client_id):
        client = client_or_404(self.user, client_id)
        serializer = self.AttachInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            payment_method_attach(client=client, token=serializer.validated_data["token"], actor=self.user)
        except ProviderError as exc:
            raise ApplicationError(
                f"The processor refused the request: {exc}", code="provider_error", fields={"token": [str(exc)]}
            ) from None
        return Response(PaymentMethodOutput(payment_method_state(client)).data, status=status.HTTP_201_CREATED)


class TaxRatesApi(ApiView):
    capabilities = {"get": VIEW, "post": EDIT}
    schema_tags = ("clients",)

    class CreateInputSerializer(StrictSerializer):
        name = StrictCharField(max_length=120)
        rate_percent = RatePercentField(
            required=False, help_text='Percent with up to 4 decimals, as a string: "8.875" (MON-2).'
        )
        rate_bp = StrictIntegerField(
            required=False, min_value=0, max_value=10000, help_text="Deprecated: whole basis points (825 = 8.25 %)."
        )

    @extend_schema(operation_id="tax_rates_list", responses=TaxRateOutput(many=True), summary="The agency's tax rates")
    def get(self, request):
        return Response(TaxRateOutput(TaxRate.objects.all(), many=True).data)

    @extend_schema(
        operation_id="tax_rates_create",
        request=CreateInputSerializer,
        responses={201: TaxRateOutput},
        summary="Create a tax rate",
    )
    def post(self, request):
        serializer = self.CreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        rate = tax_rate_create(name=data["name"], rate_percent=rate_input(data), actor=self.user)
        return Response(TaxRateOutput(rate).data, status=status.HTTP_201_CREATED)


class ClientNextInvoiceApi(ApiView):
    capabilities = {"get": VIEW}
    schema_tags = ("clients",)

    class QuerySerializer(serializers.Serializer):
        billing_day = serializers.RegexField(
            r"^([1-9]|1[0-9]|2[0-8]|agency)$",
            required=False,
            help_text="A billing day 1–28, or `agency` for the agency's day; omitted: the client's current one.",
        )
        autopay_days = DaysListField(
            required=False, help_text="Autopay days separated by commas (CYC-4), empty for none; omitted: current."
        )

    @extend_schema(
        operation_id="clients_next_invoice",
        parameters=[path_uuid("client_id"), QuerySerializer],
        responses=NextInvoiceOutput,
        summary="The client's next invoice — with its current billing days, or the ones given (CYC-1 preview)",
    )
    def get(self, request, client_id):
        client = client_or_404(self.user, client_id)
        query = query_filters(self.QuerySerializer, request)
        billing_day = client.billing_day
        if "billing_day" in request.query_params and "billing_day" in query:
            billing_day = None if query["billing_day"] == "agency" else int(query["billing_day"])
        autopay_days = query.get("autopay_days", list(client.autopay_days))
        if len(autopay_days) > MAX_AUTOPAY_DAYS or len(set(autopay_days)) != len(autopay_days):
            raise ApplicationError(
                "Give each autopay day once, at most four.",
                fields={"autopay_days": [f"Give each day once, at most {MAX_AUTOPAY_DAYS} days."]},
            )
        nxt = client_next_invoice(
            agency=request.tenant,
            client=client,
            today=agency_today(request),
            billing_day=billing_day,
            autopay_days=autopay_days,
        )
        if nxt is None:
            raise NotFound("No invoice in the next two months (the client is deactivated).")
        return Response(NextInvoiceOutput(nxt).data)
