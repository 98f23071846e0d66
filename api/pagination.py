"""Cursor pagination: stable under inserts, opaque and signed (a forged cursor is a 400, never a query on
arbitrary input). `?limit=` sets the page size (1–200), `?ordering=` one of the view's `ordering_fields`."""

from __future__ import annotations

from django.core import signing
from rest_framework import serializers
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from core.parsing import whole_number

SALT = "api.cursor"


class ApiCursorPagination(CursorPagination):
    page_size = 50
    max_page_size = 200
    page_size_query_param = "limit"
    cursor_query_param = "cursor"
    ordering = "-created_at"

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        size = whole_number(raw, max_digits=3)
        if size is None or not 1 <= size <= self.max_page_size:
            raise serializers.ValidationError({"limit": [f"Give a whole number from 1 to {self.max_page_size}."]})
        return size

    def get_ordering(self, request, queryset, view):
        fields = getattr(view, "ordering_fields", ())
        default = getattr(view, "default_ordering", self.ordering)
        requested = request.query_params.get("ordering")
        if requested is None:
            return (default,) if isinstance(default, str) else tuple(default)
        if requested.lstrip("-") not in fields:
            raise serializers.ValidationError(
                {"ordering": [f"Order by one of: {', '.join(fields) or 'nothing'} (prefix - for descending)."]})
        return (requested,)

    def decode_cursor(self, request):
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is None:
            return None
        try:
            offset, reverse, position = signing.loads(encoded, salt=SALT)
            if type(offset) is not int or not 0 <= offset <= self.offset_cutoff or type(reverse) is not bool \
                    or not (position is None or isinstance(position, str)):
                raise ValueError
        except (signing.BadSignature, ValueError, TypeError):
            raise serializers.ValidationError({"cursor": ["Invalid cursor: use the next/previous links."]}) from None
        return Cursor(offset=offset, reverse=reverse, position=position)

    def encode_cursor(self, cursor):
        encoded = signing.dumps([cursor.offset, cursor.reverse, cursor.position], salt=SALT)
        return replace_query_param(self.base_url, self.cursor_query_param, encoded)


def paginate(*, request, view, queryset, serializer_class, context: dict | None = None) -> Response:
    """A paginated response of `serializer_class` over `queryset` (HackSoft's get_paginated_response)."""
    return Response(_page(ApiCursorPagination(), request, view, queryset, lambda rows: serializer_class(
        rows, many=True, context={"request": request, **(context or {})}).data))


def paginate_rows(*, request, view, queryset, columns: tuple[str, ...], write) -> dict:
    """The same page and cursors as `paginate`, read as `values(*columns)` (plus the field the page is ordered by,
    which the cursor needs) and each row written by `write`, without a serializer."""
    paginator = ApiCursorPagination()
    ordering = {name.lstrip("-") for name in paginator.get_ordering(request, queryset, view)}
    rows = queryset.values(*columns, *sorted(ordering.difference(columns)))
    return _page(paginator, request, view, rows, lambda page: [write(row) for row in page])


def _page(paginator: ApiCursorPagination, request, view, queryset, write_page) -> dict:
    rows = paginator.paginate_queryset(queryset, request, view=view)
    return {"next": paginator.get_next_link(), "previous": paginator.get_previous_link(), "results": write_page(rows)}


def page_of(item_serializer: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The documented shape of a page of `item_serializer` (for the schema)."""
    import re

    base = re.sub(r"(Api|Serializer)(?=\.|$)", "", item_serializer.__qualname__).replace(".", "")
    name = f"{base}PageSerializer"
    page = type(name, (serializers.Serializer,), {
        "next": serializers.URLField(allow_null=True, help_text="The next page, or null."),
        "previous": serializers.URLField(allow_null=True, help_text="The previous page, or null."),
        "results": item_serializer(many=True),
    })
    page.__qualname__ = name
    return page


def list_parameters(ordering_fields: tuple[str, ...] = ()) -> list:
    from drf_spectacular.utils import OpenApiParameter

    parameters = [
        OpenApiParameter("cursor", str, OpenApiParameter.QUERY, description="From a next/previous link."),
        OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": 200}, OpenApiParameter.QUERY,
                         description="Page size, 1–200 (default 50)."),
    ]
    if ordering_fields:
        parameters.append(OpenApiParameter(
            "ordering", str, OpenApiParameter.QUERY, enum=[*ordering_fields, *[f"-{f}" for f in ordering_fields]],
            description="Sort by this field; prefix - for descending."))
    return parameters
