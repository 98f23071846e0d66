"""Isolation generated from the URL configuration (R5): every route of the agency and platform domains — pages
added later, API operations included — is requested as every role of two agencies, a client user, billing
support and anonymous, with its own objects, another tenant's, another client's and ones that do not exist.

Nothing here lists the URLs: they come from walking the resolvers, so a new route is covered when it lands.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.db import connection
from django.test import Client as HttpClient
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.converters import IntConverter, SlugConverter, UUIDConverter
from django.urls.resolvers import RoutePattern
from django_tenants.utils import schema_context, tenant_context

from accounts.models import Role
from agencybilling import seed
from notifications.catalog import NoticeKind

DAY = date(2027, 1, 1)
PASSWORD = "pw-correct-horse-9"
STAFF_ROLES = [
    Role.ADMINISTRATOR,
    Role.COMPANY_MANAGER,
    Role.SALES_MANAGER,
    Role.MARKETING_MANAGER,
    Role.SALESPERSON,
    Role.JR_SALESPERSON,
]
AGENCY_URLCONF = "agencybilling.urls_agency"
PLATFORM_URLCONF = "agencybilling.urls_platform"
# Views that are not about objects and must not be hammered (the webhook endpoint is signature-checked, R3).
SKIP_NAMES = {"stripe-webhook"}


# --- the URL configuration, walked ------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    urlconf: str
    name: str
    template: str  # e.g. "clients/<uuid:public_id>/"
    params: tuple[tuple[str, str], ...]  # (name, kind): kind is uuid | int | slug | str

    @property
    def is_api(self) -> bool:
        return self.template.startswith("api/")

    def path(self, values: dict[str, str]) -> str:
        def fill(match: re.Match) -> str:
            return str(values[match.group("name")])

        return "/" + _PARAM.sub(fill, self.template)


_PARAM = re.compile(r"<(?:(?P<conv>[^>:]+):)?(?P<name>[^>]+)>")
_REGEX_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>[^)]*\)")


def _template(pattern) -> tuple[str, dict[str, str]]:
    """A route template with `<kind:name>` placeholders, from a path() or a re_path() pattern."""
    if isinstance(pattern, RoutePattern):
        kinds = {}
        for name, converter in pattern.converters.items():
            kinds[name] = (
                "uuid"
                if isinstance(converter, UUIDConverter)
                else "int"
                if isinstance(converter, IntConverter)
                else "slug"
                if isinstance(converter, SlugConverter)
                else "str"
            )
        return str(pattern._route), kinds
    regex = pattern.regex.pattern
    kinds = {
        m.group("name"): ("uuid" if "pk" in m.group("name") or "id" in m.group("name") else "str")
        for m in _REGEX_GROUP.finditer(regex)
    }
    text = _REGEX_GROUP.sub(lambda m: f"<{m.group('name')}>", regex)
    text = text.lstrip("^").rstrip("$").replace("\\.", ".").replace("/?", "/").replace("\\Z", "")
    return text, kinds


def walk(urlconf: str) -> list[Route]:
    """Every named route of a URL configuration, through includes (namespaces joined with ':')."""
    routes: list[Route] = []

    def visit(patterns, prefix: str, kinds: dict[str, str], namespace: str) -> None:
        for entry in patterns:
            text, found = _template(entry.pattern)
            if isinstance(entry, URLResolver):
                ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
                visit(entry.url_patterns, prefix + text, {**kinds, **found}, ns)
            elif isinstance(entry, URLPattern):
                all_kinds = {**kinds, **found}
                if "format" in all_kinds:  # DRF's `.json` suffix variant of a route listed anyway
                    continue
                template = prefix + text
                for name in all_kinds:
                    template = re.sub(rf"<(?:[^>:]+:)?{name}>", f"<{name}>", template)
                routes.append(
                    Route(urlconf, f"{namespace}{entry.name or ''}", template, tuple(sorted(all_kinds.items())))
                )

    visit(get_resolver(urlconf).url_patterns, "", {}, "")
    return routes


# --- two agencies' worth of data ------------------------------------------------------------------------


@dataclass
class World:
    """One agency: a user per role, a client user, four clients and their billing, and the markers (names,
    e-mails, invoice numbers, ids) that must never appear where their owner is not visible."""

    agency: object
    tag: str
    users: dict[str, object] = field(default_factory=dict)
    clients: dict[str, object] = field(default_factory=dict)
    objects: dict[str, list[str]] = field(default_factory=dict)  # kind -> public ids (as text)
    client_markers: dict[int, set[str]] = field(default_factory=dict)
    owner_of: dict[str, int] = field(default_factory=dict)  # public id -> the client it belongs to
    agency_markers: set[str] = field(default_factory=set)

    def visible_clients(self, role: str | None) -> set[int]:
        everyone = {c.pk for c in self.clients.values()}
        return {
            None: set(),
            Role.SALESPERSON: {self.clients["own-sp"].pk},
            Role.JR_SALESPERSON: {self.clients["own-jr"].pk},
            Role.CLIENT: {self.clients["portal"].pk},
        }.get(role, everyone)

    def hidden_markers(self, role: str | None) -> set[str]:
        visible = self.visible_clients(role)
        return set().union(*(m for pk, m in self.client_markers.items() if pk not in visible))


def build_world(agency, tag: str) -> World:
    from accounts.models import User
    from billing.collection import collect_due
    from billing.corrections import credit_note_issue
    from billing.disputes import dispute_event_apply
    from billing.invoicing import billing_run
    from billing.models import Charge, CreditNote, Dispute, Invoice, SupportRequest
    from billing.payment_methods import payment_method_attach
    from billing.platform.models import AgencyCharge, AgencyInvoice, Payout
    from billing.providers.base import ProviderEvent
    from billing.settlement import provider_day_settle
    from billing.statuses import CreditOutcome
    from clients.models import AgencyServiceLine, ClientUser
    from clients.services import client_create, service_line_add
    from tests.billing_helpers import with_plan

    agency = with_plan(agency)
    seed.payouts_ready(agency, today=DAY - timedelta(days=40))
    world = World(agency=agency, tag=tag)
    token = uuid.uuid4().hex[:6]
    with schema_context(agency.schema_name):
        for role in [*STAFF_ROLES, Role.CLIENT]:
            world.users[role] = User.objects.create_user(
                f"{role.lower()}-{tag}-{token}@iso.example",
                PASSWORD,
                role=role,
                first_name=f"{role.title()}{tag.title()}",
            )
        owners = {
            "own-sp": world.users[Role.SALESPERSON],
            "own-jr": world.users[Role.JR_SALESPERSON],
            "portal": None,
            "other": None,
        }
        for label, owner in owners.items():
            client = client_create(
                name=f"Iso {tag} {label} {token}",
                email=f"{label}-{tag}-{token}@client.example",
                activated_on=DAY - timedelta(days=60),
                license_price_minor=12345,
                salesperson=owner,
            )
            service_line_add(
                client=client, description=f"Service of {tag} {label} {token}", amount_minor=777, taxable=True
            )
            world.clients[label] = client
        ClientUser.objects.create(user=world.users[Role.CLIENT], client=world.clients["portal"])
        payment_method_attach(client=world.clients["portal"], token=f"pm_card_visa:{tag}{token}")
    billing_run(agency=agency, today=DAY)
    with tenant_context(agency):
        collect_due(today=DAY)
        admin = world.users[Role.ADMINISTRATOR]
        # Corrections (COR-1, COR-2): a credit note of three clients (the paid one refunded), a dispute of the paid one.
        notes = {
            label: credit_note_issue(
                invoice=Invoice.objects.get(client=world.clients[label]),
                user=admin,
                reason=f"Correction of {tag} {label} {token}",
                outcome=outcome,
                amount_minor=amount,
                today=DAY,
            )
            for label, outcome, amount in (
                ("own-sp", CreditOutcome.CREDIT, 100),
                ("other", CreditOutcome.CREDIT, 200),
                ("portal", CreditOutcome.REFUND, 300),
            )
        }
        paid = Charge.objects.get(client=world.clients["portal"])
        dispute_event_apply(
            ProviderEvent(
                "dispute",
                f"dp_iso_{tag}{token}",
                DAY,
                charge_references=(paid.paid_reference,),
                status="NEEDS_RESPONSE",
                amount_minor=1000,
                currency="USD",
                reason="fraudulent",
                due_on=DAY + timedelta(days=7),
            )
        )
        for label in ("own-sp", "other"):
            charge = Charge.objects.get(client=world.clients[label])
            SupportRequest.objects.create(
                kind="RETRY", client=world.clients[label], charge=charge, requested_by="admin", reason=f"please {tag}"
            )
        for label, client in world.clients.items():
            invoices = list(Invoice.objects.filter(client=client).values_list("public_id", "number"))
            charges = [str(c) for c in Charge.objects.filter(client=client).values_list("public_id", flat=True)]
            lines = [
                str(x) for x in AgencyServiceLine.objects.filter(client=client).values_list("public_id", flat=True)
            ]
            world.client_markers[client.pk] = {
                client.name,
                client.email,
                str(client.public_id),
                *charges,
                *lines,
                *(str(i) for i, _ in invoices),
                *(n for _, n in invoices),
            }
            credit_notes = [
                (str(i), n) for i, n in CreditNote.objects.filter(client=client).values_list("public_id", "number")
            ]
            disputes = list(Dispute.objects.filter(charge__client=client).values_list("reference", flat=True))
            world.client_markers[client.pk] |= {*(i for i, _ in credit_notes), *(n for _, n in credit_notes), *disputes}
            for public_id in [
                str(client.public_id),
                *charges,
                *lines,
                *(str(i) for i, _ in invoices),
                *(i for i, _ in credit_notes),
            ]:
                world.owner_of[public_id] = client.pk
        for public_id, client_id in SupportRequest.objects.values_list("public_id", "client_id"):
            world.owner_of[str(public_id)] = client_id
        world.objects = {
            "client": [str(c.public_id) for c in world.clients.values()],
            "invoice": [str(x) for x in Invoice.objects.values_list("public_id", flat=True)],
            "charge": [str(x) for x in Charge.objects.values_list("public_id", flat=True)],
            "service_line": [str(x) for x in AgencyServiceLine.objects.values_list("public_id", flat=True)],
            "support_request": [str(x) for x in SupportRequest.objects.values_list("public_id", flat=True)],
            "credit_note": [str(note.public_id) for note in notes.values()],
        }
    # The processor's days until the collected charges are paid out: the agency's payouts (PAY-4).
    for day in (DAY + timedelta(days=n) for n in range(1, 8)):
        provider_day_settle(agency=agency, today=day)
    world.objects["agency_invoice"] = [
        str(x) for x in AgencyInvoice.objects.filter(agency=agency).values_list("public_id", flat=True)
    ]
    world.objects["agency_charge"] = [
        str(x) for x in AgencyCharge.objects.filter(agency=agency).values_list("public_id", flat=True)
    ]
    payouts = list(Payout.objects.filter(agency=agency))
    assert payouts, "the world has a payout"
    world.objects["payout"] = [str(p.public_id) for p in payouts]
    world.agency_markers = {
        f"{agency.invoice_prefix}-0000",
        *(f"P-{agency.invoice_prefix}-0000",),
        *itertools.chain.from_iterable(world.objects.values()),
        *(u.email for u in world.users.values()),
        *(p.reference for p in payouts),
    }
    return world


# --- requests --------------------------------------------------------------------------------------------


def session_client(world: World | None, user, host: str) -> HttpClient:
    """A test client for `host`, signed in as `user` in `world`'s schema (public for None)."""
    http = HttpClient(HTTP_HOST=host)
    if user is not None:
        with schema_context(world.agency.schema_name if world else "public"):
            http.force_login(user)
    return http


def text_of(response) -> str:
    kind = response.get("Content-Type", "")
    if not kind.startswith(("text/", "application/json", "application/problem+json")):
        return ""
    if response.streaming:  # CSV exports: read the stream once, and keep it for the caller
        body = b"".join(response.streaming_content)
        response.streaming_content = [body]
        return body.decode(errors="replace")
    return response.content.decode(errors="replace")


def is_login_redirect(response) -> bool:
    return response.status_code in (301, 302) and "/login/" in response.get("Location", "")


GENERIC_POST = {
    "reason": "isolation probe",
    "description": "probe",
    "amount": "1.00",
    "license_price": "1.00",
    "role": Role.ADMINISTRATOR,
    "active": "",
    "subject": "Hi",
    "body": "Hello",
    "email": "x@iso.example",
    "method": "pm_card_visa",
    "taxable": "on",
    "recurrence": "RECURRING",
    "query": "Iso",
    "billing_day": "3",
    "grace_period_days": "5",
}


def value_pools(world: World, other: World | None) -> dict[str, list[str]]:
    """Candidate values per parameter kind, own objects first."""
    pools: dict[str, list[str]] = {
        "int": [str(u.pk) for u in world.users.values()],
        "slug": [world.agency.schema_name] + ([other.agency.schema_name] if other else []),
        "str": [k.value for k in NoticeKind] + ["MQ", "set-password"],
    }
    return pools


def bindings(route: Route, world: World) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """(values, kind of each uuid parameter): the world's own objects, nested routes (a client's charge) bound
    to objects of one client."""
    uuid_params = [name for name, kind in route.params if kind == "uuid"]
    pools = value_pools(world, None)
    others = [(name, pools.get(kind, ["x"])[:3]) for name, kind in route.params if kind != "uuid"]
    kinds = list(world.objects)
    candidates: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    for combo in itertools.product(kinds, repeat=len(uuid_params)):
        if len(uuid_params) <= 1:
            candidates += [(combo, (value,)) for value in world.objects[combo[0]]] if combo else [((), ())]
            continue
        for client_pk in {c.pk for c in world.clients.values()}:
            picks = [[x for x in world.objects[k] if world.owner_of.get(x) == client_pk][:1] for k in combo]
            if all(picks):
                candidates.append((combo, tuple(p[0] for p in picks)))
    for combo, values in candidates:
        base = dict(zip(uuid_params, values, strict=True))
        for rest in itertools.product(*(pool for _, pool in others)):
            yield (
                {**base, **dict(zip([n for n, _ in others], rest, strict=True))},
                dict(zip(uuid_params, combo, strict=True)),
            )


def schema_fingerprint(schema: str, agency_pk: int | None = None) -> dict[str, str]:
    """md5 of every table of an agency schema, and of its rows in public tables: equal before and after means
    nothing of that agency changed."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename <> 'django_migrations'", [schema]
        )
        tables = [row[0] for row in cursor.fetchall()]
        result = {}
        for table in tables:
            cursor.execute(
                f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM \"{schema}\".\"{table}\" t"
            )
            result[table] = cursor.fetchone()[0]
        if agency_pk is not None:
            cursor.execute(
                "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' "
                "AND column_name IN ('agency_id', 'tenant_id')"
            )
            for (table,) in cursor.fetchall():
                column = "agency_id" if table != "tenants_domain" else "tenant_id"
                cursor.execute(
                    f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) "
                    f'FROM public."{table}" t WHERE t.{column} = %s',
                    [agency_pk],
                )
                result[f"public.{table}"] = cursor.fetchone()[0]
            cursor.execute("SELECT md5(t::text) FROM public.tenants_agency t WHERE id = %s", [agency_pk])
            result["public.tenants_agency"] = cursor.fetchone()[0]
    return result
