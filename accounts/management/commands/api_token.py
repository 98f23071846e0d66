"""python manage.py api_token --email EMAIL --name NAME [--agency SLUG]

Create an API token for an Administrator of an agency (or billing support, without --agency) and print its
secret on stdout — once; only a digest is stored. For scripts and the API walkthrough; the UI's page at
/settings/api-tokens/ does the same."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import get_tenant_model, schema_context

from accounts.models import User
from accounts.tokens import api_token_create, can_manage_tokens
from core.errors import ApplicationError
from core.identifiers import identifier_key


class Command(BaseCommand):
    help = "Create an API token for an Administrator (or billing support) and print its secret once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--email", required=True, help="The user the token acts as.")
        parser.add_argument("--name", required=True, help="What uses the token.")
        parser.add_argument("--agency", help="The agency's slug; omit for a billing-support token.")

    def handle(self, *args, **options) -> None:
        schema = "public"
        if options["agency"]:
            # The tenant model by Django's setting: accounts sits below the tenants app and does not import it.
            agencies = get_tenant_model().objects.exclude(schema_name="public")
            if not agencies.filter(schema_name=options["agency"]).exists():
                raise CommandError(f"--agency: no agency with the slug {options['agency']!r}")
            schema = options["agency"]
        with schema_context(schema):
            user = User.objects.filter(email_key=identifier_key(options["email"]), is_active=True).first()
            if user is None or not can_manage_tokens(user):
                raise CommandError(
                    f"--email: {options['email']!r} is not an active Administrator "
                    f"{'of ' + schema if options['agency'] else 'of billing support'}"
                )
            try:
                _, secret = api_token_create(actor=user, name=options["name"])
            except ApplicationError as exc:
                problems = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.fields.items())
                raise CommandError(f"{exc.message} {problems}".strip()) from None
        self.stdout.write(secret)
