"""The agency's side of the money in the API: the payout account and its onboarding link (ONB-2, Administrators only),
where the collected money is, the payouts with exactly the charges each carries (PAY-4), and the agency's own payment
method for its platform invoices with their statuses (PAY-3, Administrators only)."""

from __future__ import annotations

from django.db.models import Count
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from accounts.permissions import Capability as C
from api.base import ApiView
from api.common import path_uuid, uuid_or_404, validated
from api.fields import EmptyInput, StrictCharField, StrictSerializer
from api.pagination import list_parameters, page_of, paginate
from billing.payment_methods import agency_payment_method_attach
from billing.payout_accounts import payout_account_of, payout_onboarding_link, requirement_words
from billing.payouts import funds_summary, payout_carried, payout_charges, payouts_of
from billing.platform.models import AgencyCharge, AgencyPaymentMethod, PayoutAccountState, PayoutStatus
from billing.providers.base import ProviderError
from billing.statuses import ChargeStatus
from core.errors import ApplicationError
from core.links import absolute_url

ADMIN = (C.ADMINISTER,)
SEE_ALL = (C.VIEW_BILLING,)  # payouts carry every client's charges: not for those who see only their own


class RequirementsOutput(serializers.Serializer):
    currently_due = serializers.ListField(child=serializers.CharField())
    past_due = serializers.ListField(child=serializers.CharField())
    pending_verification = serializers.ListField(child=serializers.CharField())
    errors = serializers.ListField(child=serializers.CharField())
    disabled_reason = serializers.CharField(allow_blank=True)
    current_deadline = serializers.DateField(allow_null=True)


class FundsOutput(serializers.Serializer):
    currency = serializers.CharField()
    collected_minor = serializers.IntegerField(source="collected", help_text="Client charges Paid or Paid Out.")
    paid_out_minor = serializers.IntegerField(source="paid_out", help_text="In a paid payout.")
    awaiting_payout_minor = serializers.IntegerField(
        source="awaiting_payout", help_text="With the agency's payout account, not paid out yet."
    )
    held_minor = serializers.IntegerField(
        source="held", help_text="Collected before payouts were enabled, held until they are."
    )


class PayoutAccountOutput(serializers.Serializer):
    state = serializers.ChoiceField(choices=PayoutAccountState.choices)
    state_label = serializers.CharField()
    account = serializers.CharField(allow_null=True, help_text="The processor's connected account id.")
    payouts_enabled = serializers.BooleanField()
    bank_last4 = serializers.CharField(allow_blank=True)
    requirements = RequirementsOutput()
    requirements_in_words = serializers.ListField(child=serializers.CharField())
    funds = FundsOutput()


def _account_state(agency) -> dict:
    account = payout_account_of(agency)
    state = PayoutAccountState(account.state if account else PayoutAccountState.NOT_STARTED)
    requirements = account.requirements if account else {}
    return {
        "state": state.value,
        "state_label": state.label,
        "account": account.account_id if account else None,
        "payouts_enabled": bool(account and account.payouts_enabled),
        "bank_last4": account.bank_last4 if account else "",
        "requirements": {
            "currently_due": requirements.get("currently_due") or [],
            "past_due": requirements.get("past_due") or [],
            "pending_verification": requirements.get("pending_verification") or [],
            "errors": requirements.get("errors") or [],
            "disabled_reason": requirements.get("disabled_reason") or "",
            "current_deadline": requirements.get("current_deadline"),
        },
        "requirements_in_words": requirement_words(requirements),
        "funds": funds_summary(currency=agency.currency),
    }


class PayoutAccountApi(ApiView):
    capabilities = {"get": ADMIN}
    schema_tags = ("payouts",)

    @extend_schema(
        operation_id="payout_account_retrieve",
        responses=PayoutAccountOutput,
        summary="The payout account's state (ONB-2), what the processor still needs, and where the money is",
    )
    def get(self, request):
        return Response(PayoutAccountOutput(_account_state(request.tenant)).data)


class OnboardingLinkOutput(serializers.Serializer):
    url = serializers.URLField(help_text="The processor's hosted onboarding page; it works once.")
    expires_at = serializers.DateTimeField()


class PayoutOnboardingLinksApi(ApiView):
    capabilities = {"post": ADMIN}
    schema_tags = ("payouts",)
    idempotency_atomic = False  # the processor is called: the key is claimed and committed first

    @extend_schema(
        operation_id="payout_onboarding_link_create",
        request=EmptyInput,
        responses={201: OnboardingLinkOutput},
        summary="A one-time link to the processor's hosted onboarding (creates the payout account the first time)",
    )
    def post(self, request):
        validated(EmptyInput, request)  # a malformed or unexpected body is a 400, like every other write
        agency = request.tenant
        slug = agency.schema_name
        link = payout_onboarding_link(
            agency=agency,
            actor=self.user,
            return_url=absolute_url("/setup/payouts/return/", agency=slug),
            refresh_url=absolute_url("/setup/payouts/refresh/", agency=slug),
        )
        return Response(
            OnboardingLinkOutput({"url": link.url, "expires_at": link.expires_at}).data, status=status.HTTP_201_CREATED
        )


class FundsApi(ApiView):
    capabilities = {"get": SEE_ALL}
    schema_tags = ("payouts",)

    @extend_schema(
        operation_id="funds_retrieve",
        responses=FundsOutput,
        summary="Where the money collected from clients is: paid out, on its way, held (to the cent)",
    )
    def get(self, request):
        return Response(FundsOutput(funds_summary(currency=request.tenant.currency)).data)


class PayoutOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    reference = serializers.CharField(help_text="The processor's payout id.")
    arrival_on = serializers.DateField(help_text="The date the payout arrives (or arrived) at the bank.")
    amount_minor = serializers.IntegerField()
    currency = serializers.CharField()
    status = serializers.ChoiceField(choices=PayoutStatus.choices)
    failure_code = serializers.CharField(allow_blank=True)
    failure_message = serializers.CharField(allow_blank=True)
    charge_count = serializers.SerializerMethodField()

    def get_charge_count(self, payout) -> int:
        return len(payout_carried(payout))


class PayoutChargeOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    client = serializers.UUIDField(source="client.public_id")
    client_name = serializers.CharField(source="client.name")
    invoice = serializers.UUIDField(source="invoice.public_id")
    invoice_number = serializers.CharField(source="invoice.number")
    amount_minor = serializers.IntegerField()
    currency = serializers.CharField()
    status = serializers.CharField()
    paid_on = serializers.DateField(allow_null=True)
    paid_out_on = serializers.DateField(allow_null=True)


class PayoutDetailOutput(PayoutOutput):
    charges = serializers.SerializerMethodField()
    returned_payouts = serializers.ListField(
        child=serializers.CharField(), help_text="Earlier failed payouts whose money this one carries again."
    )

    @extend_schema_field(PayoutChargeOutput(many=True))
    def get_charges(self, payout) -> list[dict]:
        return PayoutChargeOutput(payout_charges(payout).order_by("client__name", "id"), many=True).data


class PayoutsApi(ApiView):
    capabilities = {"get": SEE_ALL}
    schema_tags = ("payouts",)
    ordering_fields = ("arrival_on", "created_at")
    default_ordering = "-arrival_on"

    @extend_schema(
        operation_id="payouts_list",
        parameters=list_parameters(ordering_fields),
        responses=page_of(PayoutOutput),
        summary="The agency's payouts: date, amount, status and how many charges each carries (PAY-4)",
    )
    def get(self, request):
        return paginate(request=request, view=self, queryset=payouts_of(request.tenant), serializer_class=PayoutOutput)


class PayoutApi(ApiView):
    capabilities = {"get": SEE_ALL}
    schema_tags = ("payouts",)

    @extend_schema(
        operation_id="payouts_retrieve",
        parameters=[path_uuid("payout_id")],
        responses=PayoutDetailOutput,
        summary="A payout and exactly the client charges it carries",
    )
    def get(self, request, payout_id):
        payout = payouts_of(request.tenant).filter(public_id=uuid_or_404(payout_id)).first()
        if payout is None:
            raise NotFound()
        return Response(PayoutDetailOutput(payout).data)


# --- the agency's own payment method and platform invoices (PAY-3) ---------------------------------------------------


class PlatformChargeOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    invoice = serializers.UUIDField(source="invoice.public_id")
    invoice_number = serializers.CharField(source="invoice.number")
    amount_minor = serializers.IntegerField()
    currency = serializers.CharField()
    due_on = serializers.DateField()
    status = serializers.ChoiceField(choices=ChargeStatus.choices)
    next_retry_on = serializers.DateField(allow_null=True)
    paid_on = serializers.DateField(allow_null=True)
    attempts = serializers.IntegerField(source="attempt_count")


class AgencyPaymentMethodOutput(serializers.Serializer):
    has_payment_method = serializers.BooleanField()
    kind = serializers.CharField(allow_null=True, help_text="card, sepa_debit or us_bank_account")
    brand = serializers.CharField(allow_null=True)
    last4 = serializers.CharField(allow_null=True)
    label = serializers.CharField(allow_null=True, help_text="e.g. Visa ···· 4242")
    platform_charges = PlatformChargeOutput(
        many=True, help_text="The agency's platform invoices' charges, newest first."
    )


def _agency_payment_method_state(agency) -> dict:
    method = AgencyPaymentMethod.objects.filter(agency=agency, removed_at__isnull=True).first()
    charges = (
        AgencyCharge.objects.filter(agency=agency)
        .select_related("invoice")
        .annotate(attempt_count=Count("attempts"))
        .order_by("-due_on", "-id")[:24]
    )
    return {
        "has_payment_method": method is not None,
        "kind": method.kind if method else None,
        "brand": method.brand if method else None,
        "last4": method.last4 if method else None,
        "label": str(method) if method else None,
        "platform_charges": list(charges),
    }


class AgencyPaymentMethodApi(ApiView):
    capabilities = {"get": ADMIN, "post": ADMIN}
    schema_tags = ("settings",)
    idempotency_atomic = False  # the processor is called: the key is claimed and committed first

    class SaveInputSerializer(StrictSerializer):
        token = StrictCharField(
            max_length=120,
            help_text="A payment method from the processor (Stripe.js; set up with a SetupIntent), e.g. pm_card_visa "
            "or ach:110000000:000123456789 in the sandbox.",
        )

    @extend_schema(
        operation_id="agency_payment_method_retrieve",
        responses=AgencyPaymentMethodOutput,
        summary="The agency's own payment method and its platform invoices' charges (PAY-3)",
    )
    def get(self, request):
        return Response(AgencyPaymentMethodOutput(_agency_payment_method_state(request.tenant)).data)

    @extend_schema(
        operation_id="agency_payment_method_save",
        request=SaveInputSerializer,
        responses={201: AgencyPaymentMethodOutput},
        summary="Save (or replace) the agency's payment method for its platform invoices (card or bank account)",
        examples=[OpenApiExample("Sandbox Visa", request_only=True, value={"token": "pm_card_visa:agency"})],
    )
    def post(self, request):
        token = validated(self.SaveInputSerializer, request)["token"]
        agency = request.tenant
        try:
            agency_payment_method_attach(agency=agency, token=token, actor=self.user)
        except ProviderError as exc:
            raise ApplicationError(
                f"The processor refused the request: {exc}", code="provider_error", fields={"token": [str(exc)]}
            ) from None
        return Response(
            AgencyPaymentMethodOutput(_agency_payment_method_state(agency)).data, status=status.HTTP_201_CREATED
        )
