"""`migrate_schemas` leaves alone the agency schemas that already hold every migration.

django-tenants runs Django's migrate command once per schema, and each run costs ~0.2-0.3 s even when it has
nothing to do (rendering the migration state, the checks, post_migrate). With a thousand agencies a deploy
without new migrations would spend minutes doing nothing. This executor (settings.GET_EXECUTOR_FUNCTION,
django-tenants' extension point) reads every schema's `django_migrations` in a few statements first and runs
the migrate command only for the schemas missing one of the project's migrations (docs/performance.md, P6).
Runs that ask for something else (an app label or a migration name, --fake, --plan, --prune, --check) and
the public schema go through unchanged.
"""

from __future__ import annotations

from django.db import connections
from django.db.migrations.loader import MigrationLoader
from django_tenants.migration_executors import get_executor as tenants_get_executor

CHUNK = 200  # schemas read per statement
_SPECIFIC = ("app_label", "migration_name", "fake", "fake_initial", "plan", "prune", "check_unapplied")


def pending_schemas(schemas: list[str], *, database: str = "default") -> list[str]:
    """The schemas among `schemas` whose django_migrations lacks one of the project's migrations."""
    connection = connections[database]
    expected = sorted(f"{app}.{name}" for app, name in MigrationLoader(None, ignore_no_migrations=True).graph.nodes)
    complete: set[str] = set()
    with connection.cursor() as cursor:
        cursor.execute("SELECT table_schema FROM information_schema.tables WHERE table_name = 'django_migrations'")
        with_table = {row[0] for row in cursor.fetchall()}
        candidates = [schema for schema in schemas if schema in with_table]
        for start in range(0, len(candidates), CHUNK):
            chunk = candidates[start : start + CHUNK]
            sql = " UNION ALL ".join(
                f"SELECT %s, count(*) FROM {connection.ops.quote_name(schema)}.django_migrations "
                "WHERE app || '.' || name = ANY(%s)"
                for schema in chunk
            )
            params: list = []
            for schema in chunk:
                params += [schema, expected]
            cursor.execute(sql, params)
            complete.update(schema for schema, count in cursor.fetchall() if count == len(expected))
    return [schema for schema in schemas if schema not in complete]


def get_executor(codename: str | None = None):
    base = tenants_get_executor(codename)

    class SkipUpToDateExecutor(base):  # type: ignore[misc, valid-type]
        def run_migrations(self, tenants=None):
            tenants = list(tenants or [])
            if any(self.options.get(name) for name in _SPECIFIC):
                return super().run_migrations(tenants=tenants)
            agencies = [schema for schema in tenants if schema != self.PUBLIC_SCHEMA_NAME]
            todo = set(pending_schemas(agencies, database=self.options.get("database") or self.TENANT_DB_ALIAS))
            if int(self.options.get("verbosity", 1)) >= 1 and len(agencies) > 1:
                print(
                    f"{len(agencies) - len(todo)} of {len(agencies)} agency schemas already hold every migration; "
                    f"migrating {len(todo)}.",
                    flush=True,
                )
            return super().run_migrations(
                tenants=[schema for schema in tenants if schema == self.PUBLIC_SCHEMA_NAME or schema in todo]
            )

    SkipUpToDateExecutor.codename = base.codename
    return SkipUpToDateExecutor
