"""What only Administrators do (ROLE-1): email templates with preview, API tokens, outbound webhooks. API tokens
are also managed by billing support on the platform host (same views, their own schema)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from accounts.models import ApiToken, User
from accounts.permissions import MATRIX
from accounts.permissions import Capability as C
from accounts.tokens import api_token_create, api_token_list, api_token_revoke
from api.base import ApiView
from api.common import path_uuid, query_filters, uuid_or_404, validated
from api.fields import (
    URL_PATTERN,
    EmptyInput,
    StrictBooleanField,
    StrictCharField,
    StrictChoiceField,
    StrictEmailField,
    StrictIntegerField,
    StrictListField,
    StrictSerializer,
    pattern_field,
)
from api.pagination import list_parameters, page_of, paginate
from core.errors import ApplicationError
from core.identifiers import identifier_key
from integrations.models import DeliveryStatus, EventKind, WebhookDelivery, WebhookEndpoint
from integrations.selectors import delivery_list, endpoint_list
from integrations.services import (
    delivery_redeliver,
    endpoint_create,
    endpoint_remove,
    endpoint_secret_roll,
    endpoint_update,
)
from notifications.catalog import CATALOG, NoticeKind
from notifications.rendering import sample_context
from notifications.selectors import notice_template_effective, notice_templates_effective
from notifications.services import notice_preview, notice_template_reset, notice_template_save

ADMIN = (C.ADMINISTER,)
KIND_PARAMETER = OpenApiParameter("kind", str, OpenApiParameter.PATH, enum=NoticeKind.values)


# --- who am I ----------------------------------------------------------------------------------------------


class MeApi(ApiView):
    capabilities = {"get": ()}
    schema_tags = ("account",)

    class OutputSerializer(serializers.Serializer):
        email = serializers.EmailField()
        role = serializers.CharField()
        capabilities = serializers.ListField(child=serializers.CharField())
        agency = serializers.CharField(allow_null=True, help_text="The agency's slug; null on the platform host.")
        authenticated_by = serializers.ChoiceField(choices=["token", "session"])

    @extend_schema(
        operation_id="me_retrieve",
        responses=OutputSerializer,
        summary="The caller: email, role and what ROLE-1 lets it do",
    )
    def get(self, request):
        tenant = request.tenant
        agency = None if tenant.schema_name == "public" else tenant.schema_name
        return Response(
            self.OutputSerializer(
                {
                    "email": self.user.email,
                    "role": self.user.role,
                    "capabilities": sorted(MATRIX.get(self.user.role, ())),
                    "agency": agency,
                    "authenticated_by": "token" if isinstance(request.auth, ApiToken) else "session",
                }
            ).data
        )


# --- email templates -------------------------------------------------------------------------------------


class TemplateOutput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=NoticeKind.choices)
    label = serializers.CharField()
    subject = serializers.CharField()
    body = serializers.CharField()
    is_default = serializers.BooleanField(help_text="The shipped template (no custom version saved).")
    variables = serializers.DictField(child=serializers.CharField(), help_text="Documented variables → meaning.")
    updated_by = serializers.CharField()
    updated_at = serializers.DateTimeField(allow_null=True)


class TemplateInput(StrictSerializer):
    subject = StrictCharField(max_length=500, trim_whitespace=False)
    body = StrictCharField(max_length=20000, trim_whitespace=False)


def _kind_or_404(kind: str) -> str:
    if kind not in NoticeKind.values:
        raise NotFound()
    return kind


class TemplatesApi(ApiView):
    capabilities = {"get": ADMIN}
    schema_tags = ("email templates",)

    @extend_schema(
        operation_id="email_templates_list",
        responses=TemplateOutput(many=True),
        summary="Every notice template, custom or default, with its documented variables",
    )
    def get(self, request):
        return Response(TemplateOutput(notice_templates_effective(), many=True).data)


class TemplateApi(ApiView):
    capabilities = {"get": ADMIN, "put": ADMIN, "delete": ADMIN}
    schema_tags = ("email templates",)

    @extend_schema(
        operation_id="email_templates_retrieve",
        parameters=[KIND_PARAMETER],
        responses=TemplateOutput,
        summary="One notice template",
    )
    def get(self, request, kind):
        return Response(TemplateOutput(notice_template_effective(kind=_kind_or_404(kind))).data)

    @extend_schema(
        operation_id="email_templates_save",
        parameters=[KIND_PARAMETER],
        request=TemplateInput,
        responses=TemplateOutput,
        summary="Save the agency's version (checked in the sandbox; errors name the line)",
    )
    def put(self, request, kind):
        kind = _kind_or_404(kind)
        data = validated(TemplateInput, request)
        notice_template_save(kind=kind, subject=data["subject"], body=data["body"], actor=self.user)
        return Response(TemplateOutput(notice_template_effective(kind=kind)).data)

    @extend_schema(
        operation_id="email_templates_reset",
        parameters=[KIND_PARAMETER],
        request=None,
        responses={200: TemplateOutput},
        summary="Go back to the shipped default",
    )
    def delete(self, request, kind):
        kind = _kind_or_404(kind)
        notice_template_reset(kind=kind, actor=self.user)
        return Response(TemplateOutput(notice_template_effective(kind=kind)).data)


class TemplatePreviewApi(ApiView):
    capabilities = {"post": ADMIN}
    schema_tags = ("email templates",)

    class OutputSerializer(serializers.Serializer):
        subject = serializers.CharField()
        body = serializers.CharField()

    @extend_schema(
        operation_id="email_templates_preview",
        parameters=[KIND_PARAMETER],
        request=TemplateInput,
        responses=OutputSerializer,
        summary="Render a draft with sample values (nothing is saved)",
    )
    def post(self, request, kind):
        kind = _kind_or_404(kind)
        data = validated(TemplateInput, request)
        rendered = notice_preview(
            kind=kind, subject=data["subject"], body=data["body"], context=sample_context(CATALOG[kind].variables)
        )
        return Response({"subject": rendered.subject, "body": rendered.body})


# --- API tokens --------------------------------------------------------------------------------------------


class TokenOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    name = serializers.CharField()
    owner = serializers.EmailField(source="user.email")
    owner_role = serializers.CharField(source="user.role")
    prefix = serializers.CharField(help_text="The start of the secret, to recognise the token.")
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)


class TokenCreatedOutput(TokenOutput):
    secret = serializers.CharField(
        allow_null=True,
        help_text="Shown this once; only a digest is stored (null when an Idempotency-Key replays the response).",
    )


TOKEN_ADMINS = (C.ADMINISTER, C.SUPPORT)


class TokensApi(ApiView):
    capabilities = {"get": TOKEN_ADMINS, "post": TOKEN_ADMINS}
    idempotency_redact = ("secret",)
    schema_tags = ("account",)
    ordering_fields = ("created_at",)
    default_ordering = "-created_at"

    class CreateInputSerializer(StrictSerializer):
        name = StrictCharField(max_length=100)
        owner = StrictEmailField(required=False, help_text="The user the token acts as (default: you).")

    @extend_schema(
        operation_id="api_tokens_list",
        parameters=list_parameters(ordering_fields),
        responses=page_of(TokenOutput),
        summary="API tokens (never their secrets)",
    )
    def get(self, request):
        return paginate(
            request=request, view=self, queryset=api_token_list(actor=self.user), serializer_class=TokenOutput
        )

    @extend_schema(
        operation_id="api_tokens_create",
        request=CreateInputSerializer,
        responses={201: TokenCreatedOutput},
        summary="Create a token; its secret is in this response only",
    )
    def post(self, request):
        data = validated(self.CreateInputSerializer, request)
        owner = self.user
        if data.get("owner"):
            owner = User.objects.filter(email_key=identifier_key(data["owner"])).first()
            if owner is None:
                raise ApplicationError("No such user.", fields={"owner": ["No user has this email."]})
        token, secret = api_token_create(actor=self.user, name=data["name"], owner=owner)
        body = {**TokenOutput(token).data, "secret": secret}
        return Response(body, status=status.HTTP_201_CREATED)


class TokenApi(ApiView):
    capabilities = {"delete": TOKEN_ADMINS}
    schema_tags = ("account",)

    @extend_schema(
        operation_id="api_tokens_revoke",
        parameters=[path_uuid("token_id")],
        request=None,
        responses={204: None},
        summary="Revoke a token (it stops working at once)",
    )
    def delete(self, request, token_id):
        token = api_token_list(actor=self.user).filter(public_id=uuid_or_404(token_id)).first()
        if token is None:
            raise NotFound()
        api_token_revoke(actor=self.user, token=token, now=timezone.now())
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- outbound webhooks -------------------------------------------------------------------------------------


class EndpointOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    url = serializers.CharField()
    description = serializers.CharField()
    event_kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=EventKind.choices), help_text="Empty: every kind."
    )
    is_active = serializers.BooleanField()
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()


class EndpointCreatedOutput(EndpointOutput):
    secret = serializers.CharField(
        allow_null=True,
        help_text="The signing secret, shown this once (null when an Idempotency-Key replays the response).",
    )


def endpoint_or_404(endpoint_id: str) -> WebhookEndpoint:
    endpoint = endpoint_list().filter(public_id=uuid_or_404(endpoint_id)).first()
    if endpoint is None:
        raise NotFound()
    return endpoint


class EndpointsApi(ApiView):
    capabilities = {"get": ADMIN, "post": ADMIN}
    idempotency_redact = ("secret",)
    schema_tags = ("webhooks",)

    class CreateInputSerializer(StrictSerializer):
        url = pattern_field(URL_PATTERN, "Enter an http(s) URL.", max_length=500)
        description = StrictCharField(max_length=200, required=False, allow_blank=True, default="")
        event_kinds = StrictListField(
            child=StrictChoiceField(choices=EventKind.choices),
            required=False,
            default=list,
            max_length=10,
            help_text="Empty: every kind.",
        )

    @extend_schema(
        operation_id="webhook_endpoints_list",
        responses=EndpointOutput(many=True),
        summary="Registered webhook endpoints",
    )
    def get(self, request):
        return Response(EndpointOutput(endpoint_list(), many=True).data)

    @extend_schema(
        operation_id="webhook_endpoints_create",
        request=CreateInputSerializer,
        responses={201: EndpointCreatedOutput},
        summary="Register an endpoint; the response carries its signing secret, once",
        examples=[
            OpenApiExample(
                "Invoices only",
                request_only=True,
                value={
                    "url": "https://hooks.example.com/agencybilling",
                    "description": "Accounting sync",
                    "event_kinds": ["invoice.finalized"],
                },
            )
        ],
    )
    def post(self, request):
        data = validated(self.CreateInputSerializer, request)
        endpoint, secret = endpoint_create(
            url=data["url"],
            description=data["description"],
            event_kinds=data["event_kinds"],
            created_by=self.user.email,
        )
        return Response({**EndpointOutput(endpoint).data, "secret": secret}, status=status.HTTP_201_CREATED)


class EndpointApi(ApiView):
    capabilities = {"get": ADMIN, "patch": ADMIN, "delete": ADMIN}
    schema_tags = ("webhooks",)

    class UpdateInputSerializer(StrictSerializer):
        url = pattern_field(URL_PATTERN, "Enter an http(s) URL.", max_length=500, required=False)
        description = StrictCharField(max_length=200, required=False, allow_blank=True)
        event_kinds = StrictListField(child=StrictChoiceField(choices=EventKind.choices), required=False, max_length=10)
        is_active = StrictBooleanField(required=False)

    @extend_schema(
        operation_id="webhook_endpoints_retrieve",
        parameters=[path_uuid("endpoint_id")],
        responses=EndpointOutput,
        summary="A webhook endpoint",
    )
    def get(self, request, endpoint_id):
        return Response(EndpointOutput(endpoint_or_404(endpoint_id)).data)

    @extend_schema(
        operation_id="webhook_endpoints_update",
        parameters=[path_uuid("endpoint_id")],
        request=UpdateInputSerializer,
        responses=EndpointOutput,
        summary="Change or pause an endpoint",
    )
    def patch(self, request, endpoint_id):
        endpoint = endpoint_or_404(endpoint_id)
        changes = validated(self.UpdateInputSerializer, request)
        return Response(EndpointOutput(endpoint_update(endpoint=endpoint, **changes)).data)

    @extend_schema(
        operation_id="webhook_endpoints_remove",
        parameters=[path_uuid("endpoint_id")],
        request=None,
        responses={204: None},
        summary="Remove an endpoint (its delivery log stays)",
    )
    def delete(self, request, endpoint_id):
        endpoint_remove(endpoint=endpoint_or_404(endpoint_id), now=timezone.now())
        return Response(status=status.HTTP_204_NO_CONTENT)


class SecretRollApi(ApiView):
    capabilities = {"post": ADMIN}
    idempotency_redact = ("secret",)
    schema_tags = ("webhooks",)

    class InputSerializer(StrictSerializer):
        previous_valid_for_hours = StrictIntegerField(
            min_value=0,
            max_value=168,
            required=False,
            default=24,
            help_text="How long the old secret still signs deliveries (a second v1 in the signature header); "
            "0 stops it at once.",
        )

    class OutputSerializer(serializers.Serializer):
        secret = serializers.CharField(
            allow_null=True,
            help_text="The new signing secret, shown this once (null when an Idempotency-Key replays the response).",
        )
        previous_secret_expires_at = serializers.DateTimeField(allow_null=True)

    @extend_schema(
        operation_id="webhook_endpoints_roll_secret",
        parameters=[path_uuid("endpoint_id")],
        request=InputSerializer,
        responses={200: OutputSerializer},
        summary="Roll the signing secret; the old one keeps signing for a while (default 24 h)",
    )
    def post(self, request, endpoint_id):
        endpoint = endpoint_or_404(endpoint_id)
        data = validated(self.InputSerializer, request)
        secret = endpoint_secret_roll(
            endpoint=endpoint, now=timezone.now(), previous_valid_for=timedelta(hours=data["previous_valid_for_hours"])
        )
        return Response(
            self.OutputSerializer(
                {"secret": secret, "previous_secret_expires_at": endpoint.previous_secret_expires_at}
            ).data
        )


class DeliveryAttemptOutput(serializers.Serializer):
    number = serializers.IntegerField()
    manual = serializers.BooleanField()
    requested_at = serializers.DateTimeField()
    duration_ms = serializers.IntegerField()
    status_code = serializers.IntegerField(allow_null=True)
    error = serializers.CharField()
    response_excerpt = serializers.CharField()


class DeliveryOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    endpoint = serializers.UUIDField(source="endpoint.public_id")
    url = serializers.CharField(source="endpoint.url")
    event_id = serializers.UUIDField(source="event.public_id")
    event_type = serializers.ChoiceField(source="event.kind", choices=EventKind.choices)
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    attempt_count = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    delivered_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class DeliveryDetailOutput(DeliveryOutput):
    payload = serializers.JSONField(source="event.payload")
    attempts = DeliveryAttemptOutput(many=True, source="attempts.all")


def delivery_or_404(delivery_id: str) -> WebhookDelivery:
    delivery = delivery_list().filter(public_id=uuid_or_404(delivery_id)).first()
    if delivery is None:
        raise NotFound()
    return delivery


class DeliveriesApi(ApiView):
    capabilities = {"get": ADMIN}
    schema_tags = ("webhooks",)
    ordering_fields = ("created_at",)
    default_ordering = "-created_at"

    class FilterSerializer(serializers.Serializer):
        endpoint = serializers.UUIDField(required=False)
        status = serializers.ChoiceField(choices=DeliveryStatus.choices, required=False)
        event_type = serializers.ChoiceField(choices=EventKind.choices, required=False)

    @extend_schema(
        operation_id="webhook_deliveries_list",
        parameters=[FilterSerializer, *list_parameters(ordering_fields)],
        responses=page_of(DeliveryOutput),
        summary="The delivery log",
    )
    def get(self, request):
        filters = query_filters(self.FilterSerializer, request)
        endpoint = None
        if filters.get("endpoint"):
            endpoint = WebhookEndpoint.objects.filter(public_id=filters["endpoint"]).first()
            if endpoint is None:
                return paginate(
                    request=request, view=self, queryset=WebhookDelivery.objects.none(), serializer_class=DeliveryOutput
                )
        deliveries = delivery_list(endpoint=endpoint, status=filters.get("status"), kind=filters.get("event_type"))
        return paginate(request=request, view=self, queryset=deliveries, serializer_class=DeliveryOutput)


class DeliveryApi(ApiView):
    capabilities = {"get": ADMIN}
    schema_tags = ("webhooks",)

    @extend_schema(
        operation_id="webhook_deliveries_retrieve",
        parameters=[path_uuid("delivery_id")],
        responses=DeliveryDetailOutput,
        summary="A delivery with its payload and every attempt",
    )
    def get(self, request, delivery_id):
        return Response(DeliveryDetailOutput(delivery_or_404(delivery_id)).data)


class RedeliverApi(ApiView):
    capabilities = {"post": ADMIN}
    schema_tags = ("webhooks",)

    @extend_schema(
        operation_id="webhook_deliveries_redeliver",
        parameters=[path_uuid("delivery_id")],
        request=EmptyInput,
        responses={202: DeliveryOutput},
        summary="Send the event again now (one manual attempt, recorded in the log)",
    )
    def post(self, request, delivery_id):
        delivery = delivery_or_404(delivery_id)
        validated(EmptyInput, request)
        delivery = delivery_redeliver(delivery=delivery)
        return Response(DeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)
