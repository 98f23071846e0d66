"""The platform host's API, for billing support: agencies, partner plans, Agency Invoiced (COL-1), manual retries
(RET-4) and the audit log. Every operation needs the billing-support role."""

from __future__ import annotations

from django.utils import timezone
from django_tenants.utils import schema_context, tenant_context
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from accounts.models import AuditEntry
from accounts.permissions import Capability as C
from api.base import ApiView
from api.common import path_uuid, query_filters, uuid_or_404, validated
from api.fields import (
    CODE_PATTERN,
    SLUG_PATTERN,
    AmountField,
    DecimalTextField,
    EmptyInput,
    RatePercentField,
    StrictBooleanField,
    StrictCharField,
    StrictEmailField,
    StrictIntegerField,
    StrictListField,
    StrictSerializer,
    UnitPriceField,
    pattern_field,
)
from api.invitations import InvitationOutput
from api.pagination import list_parameters, page_of, paginate
from billing.models import Charge, RequestKind, SupportRequest
from billing.platform.models import AgencyCharge, AgencyInvoice
from billing.statuses import ChargeStatus
from billing.support import agency_charge_retry_run, agency_invoiced_clear, agency_invoiced_set, retry_run
from clients.models import Client
from core.errors import ApplicationError, Conflict
from core.money import rate_bp_or_none, unit_minor_or_none
from core.parsing import whole_number
from tenants.models import Agency, PartnerPlan
from tenants.onboarding import agency_onboard
from tenants.selectors import agency_business_date, agency_domain
from tenants.services import partner_plan_create, plan_assign

SUPPORT = (C.SUPPORT,)
# Patterns rather than enums: the services check the actual code and zone lists (and say which are valid).
CURRENCY_PATTERN = r"^[A-Z]{3}$"
TIME_ZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+\-/]{0,63}$"
SLUG = OpenApiParameter(
    "slug",
    {"type": "string", "pattern": "^[a-z][a-z0-9]{1,39}$"},
    OpenApiParameter.PATH,
    description="The agency's slug (its schema name).",
)
PLAN_ID = OpenApiParameter("plan_id", int, OpenApiParameter.PATH)


def agency_or_404(slug: str) -> Agency:
    agency = Agency.objects.exclude(schema_name="public").select_related("plan").filter(schema_name=slug).first()
    if agency is None:
        raise NotFound()
    return agency


# --- partner plans (PLAN-1) ----------------------------------------------------------------------------------


_WHOLE_HELP = (
    "Deprecated: the price in whole minor units; null when it has a fraction of one (read the _decimal field)."
)


class PlanOutput(serializers.Serializer):
    class ProductSerializer(serializers.Serializer):
        code = serializers.CharField()
        name = serializers.CharField()
        unit_price_decimal = DecimalTextField(help_text='Minor units, up to 12 decimals: "0.0875" (MON-2).')
        unit_price_minor = serializers.SerializerMethodField(help_text=_WHOLE_HELP)
        included_quantity = serializers.IntegerField()
        overage_unit_price_decimal = DecimalTextField(help_text="Minor units, up to 12 decimals (MON-2).")
        overage_unit_price_minor = serializers.SerializerMethodField(help_text=_WHOLE_HELP)

        def get_unit_price_minor(self, product) -> int | None:
            return unit_minor_or_none(product.unit_price_decimal)

        def get_overage_unit_price_minor(self, product) -> int | None:
            return unit_minor_or_none(product.overage_unit_price_decimal)

    class TaxSerializer(serializers.Serializer):
        name = serializers.CharField()
        rate_percent = DecimalTextField(help_text='Percent with up to 4 decimals: "8.875" (MON-2).')
        rate_bp = serializers.SerializerMethodField(
            help_text="Deprecated: whole basis points; null when the rate has a finer part."
        )

        def get_rate_bp(self, tax) -> int | None:
            return rate_bp_or_none(tax.rate_percent)

    class FeeSerializer(serializers.Serializer):
        name = serializers.CharField()
        amount_minor = serializers.IntegerField()

    id = serializers.IntegerField()
    name = serializers.CharField()
    currency = serializers.CharField()
    package_minimum_minor = serializers.IntegerField()
    license_fee_minor = serializers.IntegerField()
    products = ProductSerializer(many=True, source="products.all")
    taxes = TaxSerializer(many=True, source="taxes.all")
    fees = FeeSerializer(many=True, source="fees.all")
    created_at = serializers.DateTimeField()


class PlanProductInput(StrictSerializer):
    code = pattern_field(CODE_PATTERN, "Letters, digits, - and _ only.", max_length=40)
    name = StrictCharField(max_length=120, required=False)
    unit_price_decimal = UnitPriceField(
        required=False, help_text='Minor units with up to 12 decimals, as a string: "0.0875" (MON-2). Default 0.'
    )
    unit_price_minor = AmountField(required=False, help_text="Whole minor units, instead of unit_price_decimal.")
    included_quantity = StrictIntegerField(required=False, default=0, min_value=0)
    overage_unit_price_decimal = UnitPriceField(
        required=False, help_text="Minor units with up to 12 decimals, as a string (MON-2). Default 0."
    )
    overage_unit_price_minor = AmountField(
        required=False, help_text="Whole minor units, instead of overage_unit_price_decimal."
    )


class PlanTaxInput(StrictSerializer):
    name = StrictCharField(max_length=120)
    rate_percent = RatePercentField(
        required=False, help_text='Percent with up to 4 decimals, as a string: "8.875" (MON-2).'
    )
    rate_bp = StrictIntegerField(
        required=False,
        min_value=0,
        max_value=10000,
        help_text="Deprecated: whole basis points, instead of rate_percent.",
    )


class PlanFeeInput(StrictSerializer):
    name = StrictCharField(max_length=120)
    amount_minor = AmountField()


class PlansApi(ApiView):
    capabilities = {"get": SUPPORT, "post": SUPPORT}
    schema_tags = ("partner plans",)

    class CreateInputSerializer(StrictSerializer):
        name = StrictCharField(max_length=120)
        currency = pattern_field(CURRENCY_PATTERN, "An ISO-4217 code such as USD.", max_length=3)
        package_minimum_minor = AmountField()
        license_fee_minor = AmountField()
        products = StrictListField(child=PlanProductInput(), required=False, default=list, max_length=100)
        taxes = StrictListField(child=PlanTaxInput(), required=False, default=list, max_length=20)
        fees = StrictListField(child=PlanFeeInput(), required=False, default=list, max_length=20)

    @extend_schema(operation_id="partner_plans_list", responses=PlanOutput(many=True), summary="Partner plans")
    def get(self, request):
        plans = PartnerPlan.objects.prefetch_related("products", "taxes", "fees")
        return Response(PlanOutput(plans, many=True).data)

    @extend_schema(
        operation_id="partner_plans_create",
        request=CreateInputSerializer,
        responses={201: PlanOutput},
        summary="Create a partner plan (PLAN-1)",
        examples=[
            OpenApiExample(
                "Standard",
                request_only=True,
                value={
                    "name": "Standard 2027",
                    "currency": "USD",
                    "package_minimum_minor": 20000,
                    "license_fee_minor": 2500,
                    "products": [
                        {
                            "code": "listings",
                            "name": "Listings",
                            "unit_price_decimal": "10",
                            "included_quantity": 100,
                            "overage_unit_price_decimal": "0.0875",
                        }
                    ],
                    "taxes": [{"name": "Platform tax", "rate_percent": "4.7125"}],
                    "fees": [{"name": "Processing fee", "amount_minor": 999}],
                },
            )
        ],
    )
    def post(self, request):
        data = validated(self.CreateInputSerializer, request)
        if PartnerPlan.objects.filter(name=data["name"].strip()).exists():
            raise Conflict("A partner plan with this name exists.", fields={"name": ["Already used."]})
        plan = partner_plan_create(**data)
        return Response(PlanOutput(plan).data, status=status.HTTP_201_CREATED)


class PlanApi(ApiView):
    capabilities = {"get": SUPPORT}
    schema_tags = ("partner plans",)

    @extend_schema(
        operation_id="partner_plans_retrieve", parameters=[PLAN_ID], responses=PlanOutput, summary="A partner plan"
    )
    def get(self, request, plan_id):
        pk = whole_number(str(plan_id))
        plan = PartnerPlan.objects.filter(pk=pk).first() if pk is not None else None
        if plan is None:
            raise NotFound()
        return Response(PlanOutput(plan).data)


# --- agencies ------------------------------------------------------------------------------------------------


class AgencyOutput(serializers.Serializer):
    slug = serializers.CharField(source="schema_name")
    name = serializers.CharField()
    domain = serializers.SerializerMethodField()
    time_zone = serializers.CharField()
    currency = serializers.CharField()
    billing_day = serializers.IntegerField()
    plan = serializers.IntegerField(source="plan_id", allow_null=True)
    email = serializers.CharField()
    clock_date = serializers.DateField(allow_null=True, help_text="The last agency-local day the clock has run.")
    created_at = serializers.DateTimeField()

    def get_domain(self, agency) -> str:
        return agency_domain(agency.schema_name)


class OnboardedOutput(AgencyOutput):
    class AdministratorSerializer(serializers.Serializer):
        email = serializers.EmailField()
        first_name = serializers.CharField()
        last_name = serializers.CharField()
        invitation = InvitationOutput()

    administrator = AdministratorSerializer()


class AgenciesApi(ApiView):
    capabilities = {"get": SUPPORT, "post": SUPPORT}
    schema_tags = ("agencies",)
    ordering_fields = ("created_at",)
    default_ordering = "created_at"

    class CreateInputSerializer(StrictSerializer):
        class AdministratorInput(StrictSerializer):
            email = StrictEmailField(help_text="Mailed a one-time link to choose a password.")
            first_name = StrictCharField(max_length=150, required=False, default="")
            last_name = StrictCharField(max_length=150, required=False, default="")

        slug = pattern_field(
            SLUG_PATTERN,
            "Use 2–40 lowercase letters or digits, starting with a letter.",
            max_length=40,
            help_text="2–40 lowercase letters or digits, starting with a letter.",
        )
        name = StrictCharField(max_length=200)
        plan = StrictIntegerField(min_value=1, help_text="The partner plan's id (PLAN-1).")
        administrator = AdministratorInput(help_text="The agency's first Administrator (ONB-1).")
        time_zone = pattern_field(
            TIME_ZONE_PATTERN, "An IANA time zone such as Europe/Paris.", max_length=64, required=False, default="UTC"
        )
        currency = pattern_field(
            CURRENCY_PATTERN,
            "An ISO-4217 code such as USD.",
            max_length=3,
            required=False,
            default=None,
            help_text="Defaults to the plan's currency; must be the plan's.",
        )
        billing_day = StrictIntegerField(min_value=1, max_value=28, required=False, default=1)
        email = StrictEmailField(required=False, default="", help_text="The agency's billing contact address.")

    @extend_schema(
        operation_id="agencies_list",
        parameters=list_parameters(ordering_fields),
        responses=page_of(AgencyOutput),
        summary="Agencies",
    )
    def get(self, request):
        return paginate(
            request=request,
            view=self,
            queryset=Agency.objects.exclude(schema_name="public"),
            serializer_class=AgencyOutput,
        )

    @extend_schema(
        operation_id="agencies_create",
        request=CreateInputSerializer,
        responses={201: OnboardedOutput},
        summary="Create an agency with its plan and first Administrator, who is mailed an invitation (ONB-1)",
        examples=[
            OpenApiExample(
                "Agency",
                request_only=True,
                value={
                    "slug": "acme",
                    "name": "Acme Marketing",
                    "plan": 1,
                    "administrator": {"email": "owner@acme.example", "first_name": "Ada", "last_name": "Owner"},
                    "time_zone": "America/New_York",
                    "billing_day": 1,
                },
            )
        ],
    )
    def post(self, request):
        data = validated(self.CreateInputSerializer, request)
        admin = data.pop("administrator")
        onboarded = agency_onboard(
            **data,
            admin_email=admin["email"],
            admin_first_name=admin["first_name"],
            admin_last_name=admin["last_name"],
            actor=self.user,
            now=timezone.now(),
        )
        agency, administrator = onboarded.agency, onboarded.administrator
        body = {
            **AgencyOutput(agency).data,
            "administrator": {
                "email": administrator.email,
                "first_name": administrator.first_name,
                "last_name": administrator.last_name,
                "invitation": InvitationOutput(onboarded.invitation.invitation).data,
            },
        }
        return Response(body, status=status.HTTP_201_CREATED)


class AgencyApi(ApiView):
    capabilities = {"get": SUPPORT, "patch": SUPPORT}
    schema_tags = ("agencies",)

    class UpdateInputSerializer(StrictSerializer):
        plan = StrictIntegerField(min_value=1, help_text="Assign this partner plan (same currency).")

    @extend_schema(operation_id="agencies_retrieve", parameters=[SLUG], responses=AgencyOutput, summary="An agency")
    def get(self, request, slug):
        return Response(AgencyOutput(agency_or_404(slug)).data)

    @extend_schema(
        operation_id="agencies_update",
        parameters=[SLUG],
        request=UpdateInputSerializer,
        responses=AgencyOutput,
        summary="Assign a partner plan",
    )
    def patch(self, request, slug):
        agency = agency_or_404(slug)
        data = validated(self.UpdateInputSerializer, request)
        plan = PartnerPlan.objects.filter(pk=data["plan"]).first()
        if plan is None:
            raise ApplicationError("No such partner plan.", fields={"plan": ["No such partner plan."]})
        return Response(AgencyOutput(plan_assign(agency=agency, plan=plan)).data)


# --- an agency's clients, Agency Invoiced, retries ------------------------------------------------------------


class SupportClientOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    name = serializers.CharField()
    email = serializers.EmailField()
    license_price_minor = serializers.IntegerField()
    agency_invoiced = serializers.BooleanField()
    agency_invoiced_reason = serializers.CharField()
    created_at = serializers.DateTimeField()


class AgencyClientsApi(ApiView):
    capabilities = {"get": SUPPORT}
    schema_tags = ("support",)
    ordering_fields = ("name", "created_at")
    default_ordering = "name"

    class FilterSerializer(serializers.Serializer):
        agency_invoiced = serializers.BooleanField(required=False, allow_null=True, default=None)
        search = serializers.CharField(required=False, max_length=200)

    @extend_schema(
        operation_id="agency_clients_list",
        parameters=[SLUG, FilterSerializer, *list_parameters(ordering_fields)],
        responses=page_of(SupportClientOutput),
        summary="An agency's clients",
    )
    def get(self, request, slug):
        agency = agency_or_404(slug)
        filters = query_filters(self.FilterSerializer, request)
        with tenant_context(agency):
            clients = Client.objects.all()
            if filters.get("agency_invoiced") is not None:
                clients = clients.filter(agency_invoiced=filters["agency_invoiced"])
            if filters.get("search"):
                clients = clients.filter(name__icontains=filters["search"])
            return paginate(request=request, view=self, queryset=clients, serializer_class=SupportClientOutput)


class AgencyInvoicedApi(ApiView):
    capabilities = {"post": SUPPORT}
    schema_tags = ("support",)

    class InputSerializer(StrictSerializer):
        agency_invoiced = StrictBooleanField(help_text="true: switch to Agency Invoiced; false: clear it.")
        reason = StrictCharField(max_length=2000, help_text="Why; kept in the audit log.")

    @extend_schema(
        operation_id="agency_invoiced_set",
        parameters=[SLUG, path_uuid("client_id")],
        request=InputSerializer,
        responses=SupportClientOutput,
        summary="Set or clear Agency Invoiced on a client, with a reason (COL-1)",
    )
    def post(self, request, slug, client_id):
        agency = agency_or_404(slug)
        data = validated(self.InputSerializer, request)
        with tenant_context(agency):
            client = Client.objects.filter(public_id=uuid_or_404(client_id)).first()
            if client is None:
                raise NotFound()
            if data["agency_invoiced"]:
                client = agency_invoiced_set(
                    client=client,
                    user=self.user,
                    reason=data["reason"],
                    today=agency_business_date(agency, timezone.now()),
                )
            else:
                client = agency_invoiced_clear(client=client, user=self.user, reason=data["reason"])
            return Response(SupportClientOutput(client).data)


class AgencySupportRequestOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    kind = serializers.ChoiceField(choices=RequestKind.choices)
    client = serializers.UUIDField(source="client.public_id")
    client_name = serializers.CharField(source="client.name")
    charge = serializers.UUIDField(source="charge.public_id", allow_null=True, default=None)
    charge_status = serializers.CharField(source="charge.status", allow_null=True, default=None)
    requested_by = serializers.CharField()
    reason = serializers.CharField()
    status = serializers.CharField()
    resolved_by = serializers.CharField()
    resolved_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class AgencySupportRequestsApi(ApiView):
    capabilities = {"get": SUPPORT}
    schema_tags = ("support",)
    ordering_fields = ("created_at",)
    default_ordering = "-created_at"

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=["OPEN", "DONE", "REJECTED"], required=False)

    @extend_schema(
        operation_id="agency_support_requests_list",
        parameters=[SLUG, FilterSerializer, *list_parameters(ordering_fields)],
        responses=page_of(AgencySupportRequestOutput),
        summary="What the agency asked billing support",
    )
    def get(self, request, slug):
        agency = agency_or_404(slug)
        filters = query_filters(self.FilterSerializer, request)
        with tenant_context(agency):
            requests = SupportRequest.objects.select_related("client", "charge")
            if filters.get("status"):
                requests = requests.filter(status=filters["status"])
            return paginate(request=request, view=self, queryset=requests, serializer_class=AgencySupportRequestOutput)


class ChargeRetryOutput(serializers.Serializer):
    # No docstring: the OpenAPI document would take it as each operation's output description.
    charge = serializers.UUIDField()
    status = serializers.ChoiceField(choices=ChargeStatus.choices)
    attempt_number = serializers.IntegerField(allow_null=True)
    outcome = serializers.CharField(allow_null=True)


class ChargeRetryApiBase(ApiView):
    # No docstring: the OpenAPI document would take it as each operation's description.
    capabilities = {"post": SUPPORT}
    schema_tags = ("support",)
    idempotency_atomic = False  # the attempt row commits before the processor is called

    @staticmethod
    def retried(charge: Charge | AgencyCharge, attempt) -> Response:
        """The charge as the retry left it, and the attempt it made (none when it made none)."""
        charge.refresh_from_db()
        return Response(
            {
                "charge": charge.public_id,
                "status": charge.status,
                "attempt_number": attempt.number if attempt else None,
                "outcome": attempt.outcome if attempt else None,
            }
        )


class RetryRunApi(ChargeRetryApiBase):
    class OutputSerializer(ChargeRetryOutput):
        pass  # its own class: the OpenAPI component is named after it (RetryRunOutput)

    @extend_schema(
        operation_id="charge_retry_run",
        parameters=[SLUG, path_uuid("charge_id")],
        request=EmptyInput,
        responses=OutputSerializer,
        summary="Run a manual retry of a charge now (RET-4)",
    )
    def post(self, request, slug, charge_id):
        agency = agency_or_404(slug)
        validated(EmptyInput, request)
        with tenant_context(agency):
            charge = Charge.objects.select_related("client", "invoice").filter(public_id=uuid_or_404(charge_id)).first()
            if charge is None:
                raise NotFound()
            attempt = retry_run(charge=charge, user=self.user, today=agency_business_date(agency, timezone.now()))
            return self.retried(charge, attempt)


# --- the agencies' own invoices (PAY-3) ---------------------------------------------------------------------------


class AgencyChargeOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    installment = serializers.IntegerField()
    amount_minor = serializers.IntegerField()
    currency = serializers.CharField()
    due_on = serializers.DateField()
    status = serializers.ChoiceField(choices=ChargeStatus.choices)
    next_retry_on = serializers.DateField(allow_null=True)
    paid_on = serializers.DateField(allow_null=True)
    attempts = serializers.SerializerMethodField()

    def get_attempts(self, charge) -> int:
        return len(charge.attempts.all())


class AgencyInvoiceOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    number = serializers.CharField()
    agency = serializers.CharField(source="agency.schema_name")
    period_start = serializers.DateField()
    period_end = serializers.DateField()
    total_minor = serializers.IntegerField()
    currency = serializers.CharField()
    charges = AgencyChargeOutput(many=True)


class AgencyInvoicesApi(ApiView):
    capabilities = {"get": SUPPORT}
    schema_tags = ("support",)
    ordering_fields = ("period_start", "created_at")
    default_ordering = "-period_start"

    class FilterSerializer(serializers.Serializer):
        agency = serializers.SlugField(required=False, help_text="Only this agency's invoices.")
        status = serializers.ChoiceField(choices=ChargeStatus.choices, required=False)

    @extend_schema(
        operation_id="agency_invoices_list",
        parameters=[FilterSerializer, *list_parameters(ordering_fields)],
        responses=page_of(AgencyInvoiceOutput),
        summary="The platform's invoices to agencies, with each charge's collection status (PAY-3)",
    )
    def get(self, request):
        filters = query_filters(self.FilterSerializer, request)
        invoices = AgencyInvoice.objects.select_related("agency").prefetch_related("charges__attempts")
        if filters.get("agency"):
            invoices = invoices.filter(agency__schema_name=filters["agency"])
        if filters.get("status"):
            invoices = invoices.filter(charges__status=filters["status"]).distinct()
        return paginate(request=request, view=self, queryset=invoices, serializer_class=AgencyInvoiceOutput)


class AgencyChargeRetryApi(ChargeRetryApiBase):
    class OutputSerializer(ChargeRetryOutput):
        pass  # its own class: the OpenAPI component is named after it (AgencyChargeRetryOutput)

    @extend_schema(
        operation_id="agency_charge_retry_run",
        parameters=[path_uuid("charge_id")],
        request=EmptyInput,
        responses=OutputSerializer,
        summary="Run a manual retry of an agency's platform-invoice charge now (PAY-3, RET-4)",
    )
    def post(self, request, charge_id):
        validated(EmptyInput, request)
        charge = (
            AgencyCharge.objects.select_related("agency", "invoice").filter(public_id=uuid_or_404(charge_id)).first()
        )
        if charge is None:
            raise NotFound()
        today = agency_business_date(charge.agency, timezone.now())
        attempt = agency_charge_retry_run(charge=charge, user=self.user, today=today)
        return self.retried(charge, attempt)


# --- audit log -----------------------------------------------------------------------------------------------


class AuditEntryOutput(serializers.Serializer):
    actor = serializers.CharField()
    actor_role = serializers.CharField()
    action = serializers.CharField()
    object_type = serializers.CharField()
    object_id = serializers.CharField()
    before = serializers.JSONField()
    after = serializers.JSONField()
    reason = serializers.CharField()
    created_at = serializers.DateTimeField()


class AuditLogApi(ApiView):
    capabilities = {"get": SUPPORT}
    schema_tags = ("audit",)
    ordering_fields = ("created_at",)
    default_ordering = "-created_at"

    class FilterSerializer(serializers.Serializer):
        agency = serializers.RegexField(
            r"^[a-z][a-z0-9]{1,39}$",
            required=False,
            help_text="Read this agency's log; without it, the platform's own.",
        )
        action = serializers.CharField(required=False, max_length=80)
        object_id = serializers.CharField(required=False, max_length=64)

    @extend_schema(
        operation_id="audit_log_list",
        parameters=[FilterSerializer, *list_parameters(ordering_fields)],
        responses=page_of(AuditEntryOutput),
        summary="Who changed what, and why",
    )
    def get(self, request):
        filters = query_filters(self.FilterSerializer, request)
        schema = agency_or_404(filters["agency"]).schema_name if filters.get("agency") else "public"
        with schema_context(schema):
            entries = AuditEntry.objects.all()
            if filters.get("action"):
                entries = entries.filter(action=filters["action"])
            if filters.get("object_id"):
                entries = entries.filter(object_id=filters["object_id"])
            return paginate(request=request, view=self, queryset=entries, serializer_class=AuditEntryOutput)
