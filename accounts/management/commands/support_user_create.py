"""python manage.py support_user_create --email EMAIL [--first-name F] [--last-name L] [--password-stdin]

Create a billing-support user: the console and the platform API's operator (ONB-1). On a fresh installation this
makes the first one. By default it prints a one-time link (valid INVITATION_TTL_DAYS days) where that person
chooses their password; with --password-stdin the password is read from standard input instead (for scripts)."""

from __future__ import annotations

import sys

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from accounts.invitations import invitation_issue
from accounts.models import Role, User, audit_record


class Command(BaseCommand):
    help = "Create a billing-support user and print the one-time link to choose a password."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--email", required=True)
        parser.add_argument("--first-name", default="")
        parser.add_argument("--last-name", default="")
        parser.add_argument(
            "--password-stdin", action="store_true", help="Read the password from standard input (first line)."
        )

    def handle(self, *args, **options) -> None:
        email = options["email"].strip().lower()
        try:
            validate_email(email)
        except ValidationError:
            raise CommandError(f"--email: {options['email']!r} is not an email address") from None
        with schema_context("public"):
            if User.objects.filter(email=email).exists():
                raise CommandError(f"--email: a platform user {email!r} already exists")
            user = User(
                email=email,
                role=Role.BILLING_SUPPORT,
                is_staff=True,
                first_name=options["first_name"].strip()[:150],
                last_name=options["last_name"].strip()[:150],
            )
            password = None
            if options["password_stdin"]:
                password = sys.stdin.readline().rstrip("\n")
                try:
                    validate_password(password, user)
                except ValidationError as exc:
                    raise CommandError("password: " + " ".join(exc.messages)) from None
            with transaction.atomic():
                user.set_password(password)  # None: no usable password until the link is used
                user.save()
                audit_record(
                    actor="manage.py support_user_create",
                    action="user.create",
                    obj=user,
                    after={"email": email, "role": Role.BILLING_SUPPORT.value},
                )
                issued = None if password else invitation_issue(user=user, actor="manage.py", now=timezone.now())
        if issued is None:
            self.stdout.write(f"Billing-support user {email} created; they can sign in now.")
        else:
            self.stdout.write(
                f"Billing-support user {email} created. Their one-time link to choose a password "
                f"(expires {issued.invitation.expires_at:%Y-%m-%d}): {issued.url}"
            )
