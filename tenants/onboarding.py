"""Agency onboarding (ONB-1): one service makes a working agency — its schema and domain, its partner plan, its
time zone and billing day, and its first Administrator, who is mailed a one-time link to choose a password.

The platform API (`POST /api/v1/agencies/`), the billing-support console's form and `manage.py agency_create`
all call `agency_onboard`. Everything is checked before anything is written, and everything is written in one
transaction: a refused request leaves no agency, no schema and no user behind. The invitation email is queued in
the new agency's notice outbox in that same transaction and sent after commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core.validators import validate_email
from django.db import transaction
from django_tenants.utils import tenant_context

from accounts.invitations import MESSAGES, InvitationInvalid, IssuedInvitation, invitation_issue
from accounts.models import Invitation, Role, User, audit_record
from core.errors import ApplicationError
from notifications.catalog import NoticeKind
from notifications.services import notice_enqueue
from tenants.models import Agency, PartnerPlan
from tenants.selectors import agency_business_date, current_agency
from tenants.services import agency_create, agency_errors, plan_assign


def invitation_notify(issued: IssuedInvitation, *, agency_name: str, business_date) -> None:
    """Queue the invitation email in the current agency's notice outbox (sent after commit; at most once per
    link, NOT-7's key: the link's id is the period)."""
    invitation = issued.invitation
    user = invitation.user
    notice_enqueue(
        account=f"user:{user.pk}",
        kind=NoticeKind.INVITATION,
        period=str(invitation.public_id),
        to_email=user.email,
        context={
            "agency_name": agency_name,
            "invitee_name": user.get_full_name() or user.email,
            "role": user.get_role_display(),  # type: ignore[attr-defined]
            "invite_url": issued.url,
            "expires_on": invitation.expires_at.date().isoformat(),
        },
        business_date=business_date,
    )


def user_invitation_send(*, user: User, actor: User | str | None, now: datetime) -> IssuedInvitation:
    """Issue a link for an agency user and mail it (the current schema must be the user's agency)."""
    agency = current_agency()
    if agency is None:
        raise ApplicationError("Invitations are mailed from an agency; the platform's are printed by the command.")
    with transaction.atomic():
        issued = invitation_issue(user=user, actor=actor, now=now)
        invitation_notify(issued, agency_name=agency.name, business_date=agency_business_date(agency, now))
    return issued


def invitation_resend(*, invitation: Invitation, actor: User | str | None, now: datetime) -> IssuedInvitation:
    """A fresh link for the invitation's user (the old one stops working), mailed again. A used invitation is not
    resent: its user has a password."""
    if invitation.accepted_at is not None:
        raise InvitationInvalid(MESSAGES["accepted"], fields={"invitation": ["Already used."]})
    return user_invitation_send(user=invitation.user, actor=actor, now=now)


@dataclass(frozen=True)
class Onboarded:
    agency: Agency
    administrator: User
    invitation: IssuedInvitation


def agency_onboard(
    *,
    slug: str,
    name: str,
    plan: PartnerPlan | int | None,
    admin_email: str,
    actor: User | str | None,
    now: datetime,
    admin_first_name: str = "",
    admin_last_name: str = "",
    time_zone: str = "UTC",
    currency: str | None = None,
    billing_day: int = 1,
    email: str = "",
) -> Onboarded:
    """Create an agency with its plan and first Administrator, and mail the Administrator's invitation.
    `currency` defaults to the plan's (one currency per agency, MON-1). Refused as a whole, with every field's
    errors at once, when anything is wrong."""
    errors: dict[str, list[str]] = {}
    if isinstance(plan, int) and not isinstance(plan, bool):
        plan = PartnerPlan.objects.filter(pk=plan).first()
        if plan is None:
            errors["plan"] = ["No such partner plan."]
    elif not isinstance(plan, PartnerPlan):
        errors["plan"] = ["Choose the agency's partner plan."]
        plan = None
    currency = (currency or (plan.currency if plan else "USD") or "USD").upper()
    errors.update(agency_errors(slug=slug, name=name, time_zone=time_zone, currency=currency, billing_day=billing_day))
    if plan is not None and not errors.get("currency") and plan.currency != currency:
        errors["plan"] = [f"The plan is in {plan.currency}; the agency bills in {currency}. Choose a {currency} plan."]
    admin_email = (admin_email or "").strip().lower() if isinstance(admin_email, str) else ""
    try:
        validate_email(admin_email)
    except Exception:  # noqa: BLE001 - Django's ValidationError; the message is ours
        errors["admin_email"] = ["Enter the Administrator's email address."]
    email = (email or "").strip().lower()
    if email:
        try:
            validate_email(email)
        except Exception:  # noqa: BLE001
            errors["email"] = ["Enter a valid billing contact address, or leave it empty."]
    if errors:
        raise ApplicationError("The agency could not be created.", fields=errors)
    assert plan is not None
    with transaction.atomic():
        agency = agency_create(slug=slug, name=name, time_zone=time_zone, currency=currency, billing_day=billing_day)
        plan_assign(agency=agency, plan=plan)
        if email:
            Agency.objects.filter(pk=agency.pk).update(email=email)
            agency.email = email
        audit_record(
            actor=actor,
            action="agency.create",
            obj=agency,
            after={
                "slug": agency.schema_name,
                "name": agency.name,
                "plan": plan.name,
                "time_zone": time_zone,
                "currency": currency,
                "billing_day": billing_day,
                "administrator": admin_email,
            },
        )
        with tenant_context(agency):
            administrator = User.objects.create_user(
                admin_email,
                None,
                role=Role.ADMINISTRATOR,
                first_name=(admin_first_name or "").strip()[:150],
                last_name=(admin_last_name or "").strip()[:150],
            )
            audit_record(
                actor=actor,
                action="user.invite",
                obj=administrator,
                after={"email": admin_email, "role": Role.ADMINISTRATOR.value},
            )
            issued = user_invitation_send(user=administrator, actor=actor, now=now)
    return Onboarded(agency, administrator, issued)
