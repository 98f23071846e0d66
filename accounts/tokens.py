"""API tokens: created and revoked by the people ROLE-1 allows (agency Administrators; billing support on the
platform), stored as a SHA-256 digest, shown once. Writes and reads on tokens live here."""

from __future__ import annotations

import functools
import hashlib
import secrets
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import QuerySet

from accounts.models import AGENCY_STAFF_ROLES, ApiToken, Role, User, audit_record
from accounts.permissions import Capability, has_capability
from core.errors import ApplicationError, PermissionDenied

TOKEN_PREFIX = "abk_"
PREFIX_LENGTH = 12  # "abk_" and 8 characters of the secret: enough to tell tokens apart in a list
# last_used_at is written at most this often per token, so a busy integration does not update a row per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def token_digest(secret: str) -> str:
    """Tokens carry 256 random bits, so a fast hash is as good as a slow one and keeps lookups one index hit."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def can_manage_tokens(user: User | None) -> bool:
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    return has_capability(user, Capability.ADMINISTER) or user.role == Role.BILLING_SUPPORT


def _owner_roles(actor: User) -> frozenset[str]:
    """Who may own a token the actor creates: agency staff on an agency, billing support on the platform."""
    if actor.role == Role.BILLING_SUPPORT:
        return frozenset({Role.BILLING_SUPPORT})
    return frozenset(AGENCY_STAFF_ROLES)


def _require_manager(actor: User) -> None:
    if not can_manage_tokens(actor):
        raise PermissionDenied("Your role cannot manage API tokens.")


def token_owner_choices(*, actor: User) -> QuerySet[User]:
    """Users the actor may create a token for (same schema, active, a staff role)."""
    _require_manager(actor)
    return User.objects.filter(is_active=True, role__in=_owner_roles(actor)).order_by("email")


def api_token_list(*, actor: User) -> QuerySet[ApiToken]:
    _require_manager(actor)
    return ApiToken.objects.select_related("user").filter(user__role__in=_owner_roles(actor))


def api_token_create(*, actor: User, name: str, owner: User | None = None) -> tuple[ApiToken, str]:
    """Create a token for `owner` (default: the actor). Returns the token and its secret, which is never
    stored and cannot be shown again."""
    _require_manager(actor)
    owner = owner or actor
    errors: dict[str, list[str]] = {}
    if not isinstance(name, str) or not name.strip():
        errors["name"] = ["A name is required."]
    elif len(name.strip()) > 100:
        errors["name"] = ["At most 100 characters."]
    if not owner.is_active or owner.role not in _owner_roles(actor):
        errors["owner"] = ["Choose an active staff user of this account."]
    if errors:
        raise ApplicationError("The API token could not be created.", fields=errors)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=owner,
            name=name.strip(),
            prefix=secret[:PREFIX_LENGTH],
            digest=token_digest(secret),
            created_by=actor.email,
        )
        audit_record(
            actor=actor,
            action="api_token.created",
            obj=token,
            after={"name": token.name, "owner": owner.email, "prefix": token.prefix},
        )
    return token, secret


def api_token_revoke(*, actor: User, token: ApiToken, now: datetime) -> ApiToken:
    _require_manager(actor)
    if token.user.role not in _owner_roles(actor):
        raise PermissionDenied("Your role cannot manage this token.")
    with transaction.atomic():
        updated = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now)
        token.refresh_from_db(fields=["revoked_at"])
        if updated:
            audit_record(
                actor=actor, action="api_token.revoked", obj=token, before={"active": True}, after={"active": False}
            )
    return token


def api_token_authenticate(*, secret: str, now: datetime) -> ApiToken | None:
    """The active token with this secret, its owner loaded, or None. Records when it was last used."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    token = _active_token_with_user(token_digest(secret))
    if token is None:
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


@functools.cache
def _token_with_user_query() -> tuple[str, list[str], list[str]]:
    """The lookup's SQL and the two models' field names, built once: they only depend on the models."""
    token_fields = ApiToken._meta.concrete_fields
    user_fields = User._meta.concrete_fields
    columns = ", ".join([*(f't."{f.column}"' for f in token_fields), *(f'u."{f.column}"' for f in user_fields)])
    sql = (
        f'SELECT {columns} FROM "{ApiToken._meta.db_table}" t '
        f'JOIN "{User._meta.db_table}" u ON u."id" = t."user_id" '
        'WHERE t."digest" = %s AND t."revoked_at" IS NULL AND u."is_active"'
    )
    return sql, [f.attname for f in token_fields], [f.attname for f in user_fields]


def _active_token_with_user(digest: str) -> ApiToken | None:
    """One indexed lookup, written as SQL: the same query through the ORM (select_related, filters on both
    tables) cost more CPU to compile than to run, on every API request (docs/performance.md, P5)."""
    sql, token_names, user_names = _token_with_user_query()
    # Constant SQL (names from the models); the digest is a parameter.
    with connection.cursor() as cursor:
        cursor.execute(sql, [digest])
        rows = cursor.fetchall()
    if not rows:
        return None
    row = rows[0]
    token = ApiToken.from_db(connection.alias, token_names, row[: len(token_names)])
    token.user = User.from_db(connection.alias, user_names, row[len(token_names) :])
    return token
