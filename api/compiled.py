"""`values()` querysets compiled by the ORM once per shape, then run with each request's values.

Building and compiling the invoice list's page query took more CPU than running it (docs/performance.md, P5):
for one user, filter set and ordering the SQL is the same from one page to the next, only a few parameters
differ (the cursor, a client id). The ORM stays the one description of the query: the template is what the
ORM compiles, never SQL written by hand.

How a template is made: `build(**values)` is compiled twice, each time with stand-in values (random, of the
same types as the request's). A parameter equal to a stand-in takes that value at run time; a parameter equal
in both compilations is a constant of the shape; any other parameter (derived from a value, say a date range
from a month) means the shape cannot be templated, and the query is then compiled for every call, as before.

What the caller owes: `build` may depend only on `values` and on what `key` names (user, filters), and may not
branch on a value's content (only on whether it is None, which is part of the shape). A value it reads from
anywhere else would be kept as a constant for the next caller with the same key. Under the test
settings (`API_COMPILED_QUERY_CHECK`) every reuse is compared with a fresh compilation, so a key that misses
something fails the suite instead of answering with another user's rows.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet

from core.prepared import prepared_fetchall

logger = logging.getLogger(__name__)

MAX_TEMPLATES = 256


@dataclass(frozen=True)
class _Template:
    sql: str
    slots: tuple[tuple[bool, object], ...]  # (True, value name) or (False, constant)
    names: tuple[str, ...]  # the row's keys, as `values()` names them

    def params(self, values: dict) -> list:
        return [values[slot] if named else slot for named, slot in self.slots]


_templates: dict[tuple, _Template | None] = {}  # per process; None: a shape compiled for every call
_UNKNOWN = object()


def _stand_in(value):
    """A value of the same type that no real request carries (and which fits the type's database range)."""
    kind = type(value)
    if kind is int:
        return random.randrange(10**8, 2**31 - 1)
    if kind is str:
        return f"stand-in-{uuid.uuid4().hex}"
    if kind is uuid.UUID:
        return uuid.uuid4()
    if kind is datetime:
        return datetime(1901, 1, 1, tzinfo=UTC) + timedelta(seconds=random.randrange(10**9))
    if kind is date:
        return date(1901, 1, 1) + timedelta(days=random.randrange(10**4))
    raise TypeError(f"no stand-in for a {kind.__name__} value: put it in the key")


def _compile(queryset: QuerySet) -> tuple[str, tuple, tuple[str, ...], bool]:
    """(sql, params, row names, whether rows need converters), as the ORM's own `values()` iteration sees them."""
    query = queryset.query
    compiler = query.get_compiler(using=queryset.db)
    sql, params = compiler.as_sql()
    # As Django's ValuesIterable names the columns (`selected` keeps the order values() was given).
    names = (
        tuple(query.selected)
        if query.selected is not None
        else (*query.extra_select, *query.values_select, *query.annotation_select)
    )
    fields = [column[0] for column in compiler.select[: compiler.col_count]]
    return sql, tuple(params), names, bool(compiler.get_converters(fields))


def _template(build, values: dict) -> _Template | None:
    first = {name: _stand_in(value) for name, value in values.items()}
    second = {name: _stand_in(value) for name, value in values.items()}
    sql, params, names, converted = _compile(build(**first))
    sql_again, params_again, _, _ = _compile(build(**second))
    if converted or sql != sql_again or len(params) != len(params_again):
        return None
    slots = []
    for param, param_again in zip(params, params_again, strict=True):
        name = next((n for n, v in first.items() if type(v) is type(param) and v == param), None)
        if name is not None and second[name] == param_again:
            slots.append((True, name))
        elif param == param_again:
            slots.append((False, param))
        else:
            return None
    return _Template(sql, tuple(slots), names)


def compiled_rows(*, key: tuple, values: dict, build) -> list[dict]:
    """The rows of `build(**values)` (a sliced `values()` queryset) as dicts, like iterating it.

    `key` names everything else `build` depends on; the current schema and the values' types (None included)
    are added to it here."""
    if not getattr(settings, "API_COMPILED_QUERIES", True):
        return list(build(**values))
    shape = (connection.schema_name, key, tuple((name, type(value)) for name, value in sorted(values.items())))
    bound = {name: value for name, value in values.items() if value is not None}
    template = _templates.get(shape, _UNKNOWN)
    if template is _UNKNOWN:
        template = _template(lambda **stand_ins: build(**{**values, **stand_ins}), bound)
        if template is None:
            logger.warning("query shape %r is compiled for every call (a parameter is derived from a value)", key)
        if len(_templates) >= MAX_TEMPLATES:
            _templates.clear()
        _templates[shape] = template
    if not isinstance(template, _Template):
        return list(build(**values))
    params = template.params(bound)
    if getattr(settings, "API_COMPILED_QUERY_CHECK", False):
        fresh, fresh_params, _, _ = _compile(build(**values))
        if (fresh, list(fresh_params)) != (template.sql, params):
            raise AssertionError(
                f"compiled query of {key!r} differs from a fresh compilation: the key misses "
                "something `build` depends on"
            )
    return [dict(zip(template.names, row, strict=True)) for row in prepared_fetchall(template.sql, params)]
