"""Users. The table exists in every schema: platform staff live in public, agency staff and client
users in their agency's schema, so a login is only ever valid where it was created (TEN-2)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models


class Role(models.TextChoices):
    ADMINISTRATOR = "ADMINISTRATOR", "Administrator"
    COMPANY_MANAGER = "COMPANY_MANAGER", "Company Manager"
    SALES_MANAGER = "SALES_MANAGER", "Sales Manager"
    MARKETING_MANAGER = "MARKETING_MANAGER", "Marketing Manager"
    SALESPERSON = "SALESPERSON", "Salesperson"
    JR_SALESPERSON = "JR_SALESPERSON", "Jr. Salesperson"
    CLIENT = "CLIENT", "Client user"
    BILLING_SUPPORT = "BILLING_SUPPORT", "Billing support"


AGENCY_STAFF_ROLES = frozenset({
    Role.ADMINISTRATOR, Role.COMPANY_MANAGER, Role.SALES_MANAGER, Role.MARKETING_MANAGER,
    Role.SALESPERSON, Role.JR_SALESPERSON,
})


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        extra.setdefault("role", Role.BILLING_SUPPORT)
        return self.create_user(email, password, **extra)


class User(AbstractUser):
    username = None  # type: ignore[assignment]
    email = models.EmailField("email address", unique=True)
    role = models.CharField(max_length=32, choices=Role.choices)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS = []  # type: ignore[misc]

    objects = UserManager()  # type: ignore[assignment,misc]

    def __str__(self) -> str:
        return self.get_full_name() or self.email

    @property
    def is_agency_staff(self) -> bool:
        return self.role in AGENCY_STAFF_ROLES
