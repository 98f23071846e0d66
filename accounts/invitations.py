"""Invitations (ONB-1): a one-time, expiring, revocable link that lets a new user choose their password.

An invitation belongs to the schema of its user: agency staff and client users in their agency's schema, billing
support in the public schema. Only a digest of the link's secret is stored, so a database reader cannot use a
pending link. "Works once" is a conditional UPDATE (accepted only while open and unexpired) and "one open link per
user" a partial unique constraint: resending revokes the open link in the same transaction that issues the new one.

Agency invitations are mailed through the agency's notice outbox by `tenants.onboarding.user_invitation_send` (sent
after commit, at most once per link); the platform's own invitations (the first billing-support user) are printed by
the command that makes them.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import connection, transaction

from accounts.models import Invitation, User, audit_record
from core.errors import ApplicationError
from core.links import absolute_url


class InvitationInvalid(ApplicationError):
    """The link is unknown, used, revoked or expired: nothing was changed."""

    code = "invitation_invalid"
    status = 400


MESSAGES = {
    "unknown": "This invitation link is not valid. Check that you copied all of it, or ask for a new one.",
    "accepted": "This invitation link has already been used. Sign in with the password you chose.",
    "revoked": "This invitation link was withdrawn. Ask for a new one.",
    "expired": "This invitation link has expired. Ask for a new one.",
}


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Invitation
    token: str  # the link's secret: known only now, never stored
    url: str  # the link, on the host of the schema the invitation lives in


def _digest(token: str) -> str:
    return hashlib.sha256(f"invitation:{token}".encode()).hexdigest()


def invitation_ttl() -> timedelta:
    return timedelta(days=settings.INVITATION_TTL_DAYS)


def invitation_url(token: str, *, schema_name: str | None = None) -> str:
    """The link for the schema the invitation lives in: the agency's site, or the platform's."""
    schema = schema_name or connection.schema_name  # type: ignore[attr-defined]
    return absolute_url(f"/invitations/{token}/", agency=None if schema == "public" else schema)


def _actor_name(actor: User | str | None) -> str:
    return actor.email if isinstance(actor, User) else (actor or "system")


def invitation_issue(*, user: User, actor: User | str | None, now: datetime) -> IssuedInvitation:
    """A new link for `user` (in the current schema), revoking any open one. The user must not have a password yet
    or must have been invited before; an active user who chose a password signs in instead."""
    if user.has_usable_password():
        raise ApplicationError(
            f"{user.email} has already chosen a password.",
            code="invitation_not_needed",
            fields={"user": ["This user already has a password; they can reset it from the sign-in page."]},
        )
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        revoked = Invitation.objects.filter(user=user, accepted_at__isnull=True, revoked_at__isnull=True).update(
            revoked_at=now
        )
        invitation = Invitation.objects.create(
            user=user,
            digest=_digest(token),
            created_by=_actor_name(actor),
            created_at=now,
            expires_at=now + invitation_ttl(),
        )
        audit_record(
            actor=actor,
            action="invitation.resend" if revoked else "invitation.issue",
            obj=user,
            after={"invitation": str(invitation.public_id), "expires_at": invitation.expires_at.isoformat()},
        )
    return IssuedInvitation(invitation, token, invitation_url(token))


def invitation_revoke(*, invitation: Invitation, actor: User | str | None, now: datetime) -> Invitation:
    """Withdraw an open link. Revoking a revoked or expired link changes nothing; a used one cannot be revoked."""
    with transaction.atomic():
        locked = Invitation.objects.select_for_update().select_related("user").get(pk=invitation.pk)
        if locked.accepted_at is not None:
            raise InvitationInvalid(
                "This invitation has already been used; deactivate the user instead.",
                code="invitation_used",
                fields={"invitation": ["Already used."]},
            )
        if locked.revoked_at is None:
            locked.revoked_at = now
            locked.save(update_fields=["revoked_at"])
            audit_record(
                actor=actor, action="invitation.revoke", obj=locked.user, before={"invitation": str(locked.public_id)}
            )
    return locked


def invitation_by_token(token: str) -> Invitation | None:
    if not token or not isinstance(token, str) or len(token) > 200:
        return None
    return Invitation.objects.select_related("user").filter(digest=_digest(token)).first()


def invitation_check(token: str, *, now: datetime) -> Invitation:
    """The open invitation for this link, or InvitationInvalid saying why it cannot be used."""
    invitation = invitation_by_token(token)
    if invitation is None:
        raise InvitationInvalid(MESSAGES["unknown"], code="invitation_unknown", fields={"token": ["Unknown link."]})
    status = invitation.status_at(now)
    if status != "pending":
        raise InvitationInvalid(MESSAGES[status], code=f"invitation_{status}", fields={"token": [MESSAGES[status]]})
    if not invitation.user.is_active:
        raise InvitationInvalid(MESSAGES["revoked"], code="invitation_revoked", fields={"token": [MESSAGES["revoked"]]})
    return invitation


def invitation_accept(*, token: str, password: str, password_again: str, now: datetime) -> User:
    """Use the link once: set the user's password. A link already used, revoked or expired, or a password refused,
    changes nothing."""
    invitation = invitation_check(token, now=now)
    user = invitation.user
    errors: dict[str, list[str]] = {}
    if password != password_again:
        errors["password_again"] = ["The two passwords differ."]
    try:
        validate_password(password, user)
    except ValidationError as exc:
        errors["password"] = list(exc.messages)
    if errors:
        raise ApplicationError("Choose another password.", code="password_invalid", fields=errors)
    with transaction.atomic():
        claimed = Invitation.objects.filter(
            pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
        ).update(accepted_at=now)
        if not claimed:  # used or withdrawn a moment ago, by another request
            invitation_check(token, now=now)
            raise InvitationInvalid(MESSAGES["accepted"], code="invitation_accepted")
        user = User.objects.select_for_update().get(pk=user.pk)
        user.set_password(password)
        user.save(update_fields=["password"])
        audit_record(actor=user, action="invitation.accept", obj=user, after={"invitation": str(invitation.public_id)})
    return user
