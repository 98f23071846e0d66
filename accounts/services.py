"""Writes on users of an agency: invitations and roles (ROLE-1). Each change is audited."""

from __future__ import annotations

from collections.abc import Callable

from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from accounts.models import AGENCY_STAFF_ROLES, Role, User, audit_record
from core.errors import ApplicationError
from core.identifiers import identifier_key, identifier_text

AGENCY_ROLES = frozenset({*AGENCY_STAFF_ROLES, Role.CLIENT})


def _role_error(role: object) -> list[str]:
    return [] if role in AGENCY_ROLES else ["Choose one of the agency roles."]


def user_invite(
    *,
    email: str,
    role: str,
    actor: User,
    first_name: str = "",
    last_name: str = "",
    client=None,
    send: Callable[[User], object] | None = None,
) -> User:
    """Create an agency user with no password yet; `send(user)` issues and mails their invitation to choose one
    (`tenants.onboarding.user_invitation_send`), in the same transaction. A CLIENT user is linked to exactly one
    client account (`client`)."""
    errors: dict[str, list[str]] = {}
    email = identifier_text(email or "")
    try:
        validate_email(email)
    except Exception:  # noqa: BLE001 - Django's ValidationError; the message is ours
        errors["email"] = ["Enter a valid email address."]
    if role_errors := _role_error(role):
        errors["role"] = role_errors
    if role == Role.CLIENT and client is None:
        errors["client"] = ["A client user must be linked to a client."]
    if role != Role.CLIENT and client is not None:
        errors["client"] = ["Only client users are linked to a client."]
    if not errors.get("email") and User.objects.filter(email_key=identifier_key(email)).exists():
        errors["email"] = ["A user with this email already exists."]
    if errors:
        raise ApplicationError("The user could not be invited.", fields=errors)
    try:
        with transaction.atomic():
            user = User.objects.create_user(
                email, None, role=role, first_name=first_name.strip()[:150], last_name=last_name.strip()[:150]
            )
            if client is not None:
                # Through the client's own relation: accounts sits below clients and does not import it.
                client.portal_users.create(user=user)
            audit_record(
                actor=actor,
                action="user.invite",
                obj=user,
                after={
                    "email": email,
                    "role": role,
                    **({"client": str(client.public_id)} if client is not None else {}),
                },
            )
            if send is not None:
                send(user)
    except IntegrityError:
        raise ApplicationError(
            "The user could not be invited.", fields={"email": ["A user with this email already exists."]}
        ) from None
    return user


def user_role_set(*, user: User, role: str, actor: User) -> User:
    """Change an agency staff user's role. Client users keep their role; the last active administrator
    cannot be demoted (the agency would lose its settings)."""
    if role_errors := _role_error(role):
        raise ApplicationError("The role could not be changed.", fields={"role": role_errors})
    if user.role == Role.CLIENT or role == Role.CLIENT:
        raise ApplicationError(
            "Client users are invited as such and keep their role.",
            fields={"role": ["Staff and client users cannot swap roles."]},
        )
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        if locked.role == role:
            return locked
        if (
            locked.role == Role.ADMINISTRATOR
            and not User.objects.filter(role=Role.ADMINISTRATOR, is_active=True).exclude(pk=locked.pk).exists()
        ):
            raise ApplicationError(
                "The agency needs at least one administrator.", fields={"role": ["This is the only administrator."]}
            )
        before = locked.role
        locked.role = role
        locked.save(update_fields=["role"])
        audit_record(actor=actor, action="user.role", obj=locked, before={"role": before}, after={"role": role})
    return locked


def user_active_set(*, user: User, active: bool, actor: User) -> User:
    """Deactivate (or reactivate) a user: a deactivated user cannot sign in; their history stays."""
    if user.pk == actor.pk and not active:
        raise ApplicationError("You cannot deactivate yourself.", fields={"active": ["This is you."]})
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        if locked.is_active == active:
            return locked
        if (
            not active
            and locked.role == Role.ADMINISTRATOR
            and not User.objects.filter(role=Role.ADMINISTRATOR, is_active=True).exclude(pk=locked.pk).exists()
        ):
            raise ApplicationError(
                "The agency needs at least one administrator.", fields={"active": ["This is the only administrator."]}
            )
        locked.is_active = active
        locked.save(update_fields=["is_active"])
        audit_record(
            actor=actor,
            action="user.activate" if active else "user.deactivate",
            obj=locked,
            before={"is_active": not active},
            after={"is_active": active},
        )
    return locked
