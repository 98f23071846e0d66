"""Keyset pagination: stable under inserts, opaque and signed (a forged cursor is a 400, never a query on
arbitrary input). `?limit=` sets the page size (1–200), `?ordering=` one of the view's `ordering_fields`.

Every page is ordered by the requested field and then the primary key, and a cursor holds the boundary row's
(value, id): the next page is the rows after that pair, read from the index like the first. DRF's cursor
pagination kept a position and an offset past the rows sharing it, which could not pass 1,000 rows of one value
(a month's invoices of a large agency all share their period start) and read every skipped row again
(docs/decisions.md, "API pagination")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import orjson
from django.core import signing
from django.db.models import Q, QuerySet
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from core.parsing import whole_number

SALT = "api.keyset"
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


@dataclass(frozen=True)
class _Cursor:
    value: str | int  # the boundary row's ordering value, as the cursor carries it
    pk: int
    backwards: bool  # the rows before the boundary (a `previous` link)


def _page_size(request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return PAGE_SIZE
    size = whole_number(raw, max_digits=3)
    if size is None or not 1 <= size <= MAX_PAGE_SIZE:
        raise serializers.ValidationError({"limit": [f"Give a whole number from 1 to {MAX_PAGE_SIZE}."]})
    return size


def _ordering(request, view) -> str:
    """The requested ordering ("field" or "-field"), one of the view's `ordering_fields`."""
    fields = getattr(view, "ordering_fields", ())
    requested = request.query_params.get("ordering")
    if requested is None:
        return getattr(view, "default_ordering", "-created_at")
    if requested.lstrip("-") not in fields:
        raise serializers.ValidationError(
            {"ordering": [f"Order by one of: {', '.join(fields) or 'nothing'} (prefix - for descending)."]}
        )
    return requested


def _decode(request) -> _Cursor | None:
    encoded = request.query_params.get("cursor")
    if encoded is None:
        return None
    try:
        value, pk, backwards = signing.loads(encoded, salt=SALT)
        if type(value) not in (str, int) or type(pk) is not int or type(backwards) is not bool:
            raise ValueError
    except (signing.BadSignature, ValueError, TypeError):
        raise serializers.ValidationError({"cursor": ["Invalid cursor: use the next/previous links."]}) from None
    return _Cursor(value, pk, backwards)


def _plain(value) -> str | int:
    """An ordering value as the cursor carries it (the database reads the ISO text back as a date/time)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


@dataclass
class Keyset:
    """One page of `queryset` for this request: `rows` (model instances or `values()` dicts, in page order) and
    the next/previous links."""

    request: Request
    field: str
    descending: bool
    size: int
    cursor: _Cursor | None

    @classmethod
    def for_request(cls, request, view) -> Keyset:
        ordering = _ordering(request, view)
        return cls(request, ordering.lstrip("-"), ordering.startswith("-"), _page_size(request), _decode(request))

    def page(self, queryset: QuerySet, *, value_of) -> tuple[list, str | None, str | None]:
        """(rows, next link, previous link); `value_of(row, name)` reads a field of a row."""
        rows = list(self.ordered(queryset, *self.boundary(queryset.model)))
        return self.links(rows, value_of=value_of)

    def boundary(self, model) -> tuple:
        """(ordering value, pk) of the cursor's boundary row, the value as `model`'s field holds it; (None, None)
        without a cursor."""
        if self.cursor is None:
            return None, None
        return model._meta.get_field(self.field).to_python(self.cursor.value), self.cursor.pk

    def ordered(self, queryset: QuerySet, boundary_value, boundary_pk) -> QuerySet:
        """`queryset` in page order after the boundary row (none: from the start), a page and one row more."""
        # Reading backwards is reading forwards in the opposite order from the boundary, then flipping the page.
        descending = self.descending != bool(self.cursor and self.cursor.backwards)
        sign = "-" if descending else ""
        ordered = queryset.order_by(f"{sign}{self.field}", f"{sign}pk")
        if boundary_pk is not None:
            after = "lt" if descending else "gt"
            ordered = ordered.filter(
                Q(**{f"{self.field}__{after}": boundary_value})
                | Q(**{self.field: boundary_value, f"pk__{after}": boundary_pk})
            )
        return ordered[: self.size + 1]

    def links(self, rows: list, *, value_of) -> tuple[list, str | None, str | None]:
        """The page out of `ordered`'s rows, in page order, and its next/previous links."""
        cursor = self.cursor
        more = len(rows) > self.size
        rows = rows[: self.size]
        if cursor is not None and cursor.backwards:
            rows.reverse()
            has_next, has_previous = True, more
        else:
            has_next, has_previous = more, cursor is not None
        return (
            rows,
            self._link(value_of, rows[-1], backwards=False) if has_next and rows else None,
            self._link(value_of, rows[0], backwards=True) if has_previous and rows else None,
        )

    def _link(self, value_of, row, *, backwards: bool) -> str:
        encoded = signing.dumps([_plain(value_of(row, self.field)), value_of(row, "pk"), backwards], salt=SALT)
        return replace_query_param(self.request.build_absolute_uri(), "cursor", encoded)


def paginate(*, request, view, queryset, serializer_class, context: dict | None = None) -> Response:
    """A paginated response of `serializer_class` over `queryset` (HackSoft's get_paginated_response)."""
    rows, next_link, previous_link = Keyset.for_request(request, view).page(queryset, value_of=getattr)
    results = serializer_class(rows, many=True, context={"request": request, **(context or {})}).data
    return Response({"next": next_link, "previous": previous_link, "results": results})


def paginate_rows(*, request, view, model, queryset: QuerySet, columns: tuple[str, ...], write) -> bytes:
    """The same page and links as `paginate`, as the JSON body: read as `values(*columns)` (plus the ordering
    field and the primary key, which the cursor needs) and each row written by `write`, without a serializer
    (building DRF serializers for a page of 50 cost more CPU than its query, docs/performance.md, P5)."""
    keyset = Keyset.for_request(request, view)
    extra = sorted({keyset.field, "pk"}.difference(columns))
    rows = list(keyset.ordered(queryset.values(*columns, *extra), *keyset.boundary(model)))
    rows, next_link, previous_link = keyset.links(rows, value_of=lambda row, name: row[name])
    # orjson writes dates and UUIDs as the serializer does (ISO date, canonical UUID), so `write` need not.
    return orjson.dumps({"next": next_link, "previous": previous_link, "results": [write(row) for row in rows]})


def page_of(item_serializer: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The documented shape of a page of `item_serializer` (for the schema)."""
    import re

    base = re.sub(r"(Api|Serializer)(?=\.|$)", "", item_serializer.__qualname__).replace(".", "")
    name = f"{base}PageSerializer"
    page = type(
        name,
        (serializers.Serializer,),
        {
            "next": serializers.URLField(allow_null=True, help_text="The next page, or null."),
            "previous": serializers.URLField(allow_null=True, help_text="The previous page, or null."),
            "results": item_serializer(many=True),
        },
    )
    page.__qualname__ = name
    return page


def list_parameters(ordering_fields: tuple[str, ...] = ()) -> list:
    from drf_spectacular.utils import OpenApiParameter

    parameters = [
        OpenApiParameter("cursor", str, OpenApiParameter.QUERY, description="From a next/previous link."),
        OpenApiParameter(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": 200},
            OpenApiParameter.QUERY,
            description="Page size, 1–200 (default 50).",
        ),
    ]
    if ordering_fields:
        parameters.append(
            OpenApiParameter(
                "ordering",
                str,
                OpenApiParameter.QUERY,
                enum=[*ordering_fields, *[f"-{f}" for f in ordering_fields]],
                description="Sort by this field; prefix - for descending.",
            )
        )
    return parameters
