"""Users. The table exists in every schema: platform staff live in public, agency staff and client
users in their agency's schema, so a login is only ever valid where it was created (TEN-2)."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models

from core.identifiers import identifier_key, identifier_text


class Role(models.TextChoices):
    ADMINISTRATOR = "ADMINISTRATOR", "Administrator"
    COMPANY_MANAGER = "COMPANY_MANAGER", "Company Manager"
    SALES_MANAGER = "SALES_MANAGER", "Sales Manager"
    MARKETING_MANAGER = "MARKETING_MANAGER", "Marketing Manager"
    SALESPERSON = "SALESPERSON", "Salesperson"
    JR_SALESPERSON = "JR_SALESPERSON", "Jr. Salesperson"
    CLIENT = "CLIENT", "Client user"
    BILLING_SUPPORT = "BILLING_SUPPORT", "Billing support"


AGENCY_STAFF_ROLES = frozenset(
    {
        Role.ADMINISTRATOR,
        Role.COMPANY_MANAGER,
        Role.SALES_MANAGER,
        Role.MARKETING_MANAGER,
        Role.SALESPERSON,
        Role.JR_SALESPERSON,
    }
)


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=identifier_text(self.normalize_email(email)), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        extra.setdefault("role", Role.BILLING_SUPPORT)
        return self.create_user(email, password, **extra)

    def get_by_natural_key(self, username: str | None) -> User:
        """Sign-in's lookup (Django's ModelBackend): by the identifier's compared form, so every spelling of an
        address that means the account finds it, and no other (core/identifiers.py)."""
        key = identifier_key(username or "")
        if "\x00" in key:  # no text column stores a NUL: no user has it (and PostgreSQL refuses the query)
            raise self.model.DoesNotExist
        return self.get(email_key=key)


class User(AbstractUser):
    username = None  # type: ignore[assignment]
    email = models.EmailField("email address", unique=True)
    # The email in the form it is compared in (core.identifiers.identifier_key): unique, so two spellings of one
    # address are one account; sign-in, throttling, password reset and invitations look users up by it.
    email_key = models.CharField(max_length=254, unique=True, editable=False)
    role = models.CharField(max_length=32, choices=Role.choices)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS = []  # type: ignore[misc]

    objects = UserManager()  # type: ignore[assignment,misc]

    def __str__(self) -> str:
        return self.get_full_name() or self.email

    def save(self, *args, **kwargs) -> None:
        self.email_key = identifier_key(self.email or "")
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "email" in update_fields:
            kwargs["update_fields"] = {*update_fields, "email_key"}
        super().save(*args, **kwargs)

    @property
    def is_agency_staff(self) -> bool:
        return self.role in AGENCY_STAFF_ROLES


class AuditEntry(models.Model):
    """Who changed what, and why. In every schema: agency changes in the agency's, platform changes in public."""

    actor = models.CharField(max_length=254)
    actor_role = models.CharField(max_length=32, blank=True)
    action = models.CharField(max_length=80)
    object_type = models.CharField(max_length=60)
    object_id = models.CharField(max_length=64)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"])]


def audit_record(
    *,
    actor: User | str | None,
    action: str,
    obj: models.Model,
    before: dict | None = None,
    after: dict | None = None,
    reason: str = "",
) -> AuditEntry:
    """Write an audit row; call inside the transaction of the change it describes."""
    if isinstance(actor, User):
        name, role = actor.email, actor.role
    else:
        name, role = actor or "system", ""
    return AuditEntry.objects.create(
        actor=name,
        actor_role=role,
        action=action,
        object_type=obj._meta.label,
        object_id=str(getattr(obj, "public_id", obj.pk)),
        before=before or {},
        after=after or {},
        reason=reason,
    )


class ApiToken(models.Model):
    """A per-user API token (issue 7). Only a SHA-256 digest of the secret is stored: the secret is shown once,
    when the token is created. A token acts with its owner's role, in the schema where it was created, so a
    token minted on one agency means nothing on another (TEN-2)."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="The first characters of the secret, to recognise it.")
    digest = models.CharField(max_length=64, unique=True)
    created_by = models.CharField(max_length=254)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Invitation(models.Model):
    """A one-time link that lets a user choose their password (ONB-1). Only a SHA-256 digest of the link's secret
    is stored. A user has at most one open invitation (the partial unique constraint): resending revokes the open
    one and issues a new link, so an older link stops working."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="invitations")
    digest = models.CharField(max_length=64, unique=True)
    created_by = models.CharField(max_length=254)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user"],
                condition=models.Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="one_open_invitation_per_user",
            ),
            models.CheckConstraint(
                condition=models.Q(expires_at__gt=models.F("created_at")), name="invitation_expires"
            ),
        ]

    def __str__(self) -> str:
        return f"Invitation for {self.user.email}"

    def status_at(self, now) -> str:
        """accepted | revoked | expired | pending"""
        if self.accepted_at is not None:
            return "accepted"
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= now else "pending"
