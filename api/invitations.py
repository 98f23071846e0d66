"""Invitations (ONB-1): list, resend (a new one-time link, mailed; the old one stops working) and revoke. On an
agency's host for its Administrators; on the platform host for billing support, per agency."""

from __future__ import annotations

from django.utils import timezone
from django_tenants.utils import tenant_context
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from accounts.invitations import invitation_revoke
from accounts.models import Invitation
from accounts.permissions import Capability as C
from api.base import ApiView
from api.common import path_uuid, query_filters, uuid_or_404, validated
from api.fields import EmptyInput
from api.pagination import list_parameters, page_of, paginate
from tenants.models import Agency
from tenants.onboarding import invitation_resend

SLUG = OpenApiParameter(
    "slug",
    {"type": "string", "pattern": "^[a-z][a-z0-9]{1,39}$"},
    OpenApiParameter.PATH,
    description="The agency's slug (its schema name).",
)
STATUSES = ("pending", "accepted", "revoked", "expired")


class InvitationOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    email = serializers.EmailField(source="user.email")
    role = serializers.CharField(source="user.role")
    status = serializers.SerializerMethodField(help_text="pending, accepted, revoked or expired")
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    accepted_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)

    def get_status(self, invitation) -> str:
        return invitation.status_at(timezone.now())


class _Filter(serializers.Serializer):
    status = serializers.ChoiceField(choices=STATUSES, required=False)


def _invitations(filters: dict):
    now = timezone.now()
    rows = Invitation.objects.select_related("user")
    status = filters.get("status")
    if status == "pending":
        rows = rows.filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now)
    elif status == "accepted":
        rows = rows.filter(accepted_at__isnull=False)
    elif status == "revoked":
        rows = rows.filter(accepted_at__isnull=True, revoked_at__isnull=False)
    elif status == "expired":
        rows = rows.filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__lte=now)
    return rows


def _invitation_or_404(invitation_id: str) -> Invitation:
    invitation = Invitation.objects.select_related("user").filter(public_id=uuid_or_404(invitation_id)).first()
    if invitation is None:
        raise NotFound()
    return invitation


def _agency_or_404(slug: str) -> Agency:
    agency = Agency.objects.exclude(schema_name="public").filter(schema_name=slug).first()
    if agency is None:
        raise NotFound()
    return agency


# --- on an agency's host: its Administrators -------------------------------------------------------------------


class InvitationsApi(ApiView):
    capabilities = {"get": (C.ADMINISTER,)}
    schema_tags = ("users",)
    ordering_fields = ("created_at",)
    default_ordering = "-created_at"

    @extend_schema(
        operation_id="invitations_list",
        parameters=[_Filter, *list_parameters(ordering_fields)],
        responses=page_of(InvitationOutput),
        summary="Invitations to choose a password, newest first",
    )
    def get(self, request):
        rows = _invitations(query_filters(_Filter, request))
        return paginate(request=request, view=self, queryset=rows, serializer_class=InvitationOutput)


class InvitationResendApi(ApiView):
    capabilities = {"post": (C.ADMINISTER,)}
    schema_tags = ("users",)

    @extend_schema(
        operation_id="invitation_resend",
        parameters=[path_uuid("invitation_id")],
        request=EmptyInput,
        responses={201: InvitationOutput},
        summary="Mail a new one-time link; the previous one stops working",
    )
    def post(self, request, invitation_id):
        validated(EmptyInput, request)
        issued = invitation_resend(invitation=_invitation_or_404(invitation_id), actor=self.user, now=timezone.now())
        return Response(InvitationOutput(issued.invitation).data, status=201)


class InvitationRevokeApi(ApiView):
    capabilities = {"post": (C.ADMINISTER,)}
    schema_tags = ("users",)

    @extend_schema(
        operation_id="invitation_revoke",
        parameters=[path_uuid("invitation_id")],
        request=EmptyInput,
        responses=InvitationOutput,
        summary="Withdraw an invitation: its link stops working",
    )
    def post(self, request, invitation_id):
        validated(EmptyInput, request)
        invitation = invitation_revoke(
            invitation=_invitation_or_404(invitation_id), actor=self.user, now=timezone.now()
        )
        return Response(InvitationOutput(invitation).data)


# --- on the platform host: billing support, per agency --------------------------------------------------------


class AgencyInvitationsApi(ApiView):
    capabilities = {"get": (C.SUPPORT,)}
    schema_tags = ("agencies",)
    ordering_fields = ("created_at",)
    default_ordering = "-created_at"

    @extend_schema(
        operation_id="agency_invitations_list",
        parameters=[SLUG, _Filter, *list_parameters(ordering_fields)],
        responses=page_of(InvitationOutput),
        summary="An agency's invitations (its first Administrator's among them)",
    )
    def get(self, request, slug):
        agency = _agency_or_404(slug)
        filters = query_filters(_Filter, request)
        with tenant_context(agency):
            return paginate(
                request=request, view=self, queryset=_invitations(filters), serializer_class=InvitationOutput
            )


class AgencyInvitationResendApi(ApiView):
    capabilities = {"post": (C.SUPPORT,)}
    schema_tags = ("agencies",)

    @extend_schema(
        operation_id="agency_invitation_resend",
        parameters=[SLUG, path_uuid("invitation_id")],
        request=EmptyInput,
        responses={201: InvitationOutput},
        summary="Mail a new one-time link to an agency's user; the previous one stops working",
    )
    def post(self, request, slug, invitation_id):
        agency = _agency_or_404(slug)
        validated(EmptyInput, request)
        with tenant_context(agency):
            issued = invitation_resend(
                invitation=_invitation_or_404(invitation_id), actor=self.user, now=timezone.now()
            )
            return Response(InvitationOutput(issued.invitation).data, status=201)


class AgencyInvitationRevokeApi(ApiView):
    capabilities = {"post": (C.SUPPORT,)}
    schema_tags = ("agencies",)

    @extend_schema(
        operation_id="agency_invitation_revoke",
        parameters=[SLUG, path_uuid("invitation_id")],
        request=EmptyInput,
        responses=InvitationOutput,
        summary="Withdraw an agency user's invitation",
    )
    def post(self, request, slug, invitation_id):
        agency = _agency_or_404(slug)
        validated(EmptyInput, request)
        with tenant_context(agency):
            invitation = invitation_revoke(
                invitation=_invitation_or_404(invitation_id), actor=self.user, now=timezone.now()
            )
            return Response(InvitationOutput(invitation).data)
