"""The agency's own audit log (Administrator): who changed what in this agency, in words, with the action
pick-list, a range of days and a CSV of the same."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from accounts.models import AuditEntry
from web.access import staff_view
from web.agency.common import C
from web.audit import CSV_HEADER, action_choices, agency_object_names, audit_filtered, csv_rows, readable
from web.csv_export import csv_response
from web.forms import AuditFilterForm

LIMIT = 300


def _link(kind: str, object_id: str) -> str:
    if kind == "client":
        return reverse("client-detail", kwargs={"public_id": object_id})
    if kind == "invoice":
        return reverse("invoice-detail", kwargs={"public_id": object_id})
    return ""


@staff_view(C.ADMINISTER)
def audit_log(request: HttpRequest) -> HttpResponse:
    agency = request.tenant  # type: ignore[attr-defined]
    codes = AuditEntry.objects.order_by().values_list("action", flat=True).distinct()
    form = AuditFilterForm(request.GET or None, actions=action_choices(codes))
    filters = form.cleaned_data if form.is_valid() else {}
    rows = list(
        audit_filtered(
            AuditEntry.objects.all(),
            action=filters.get("action") or "",
            start=filters.get("start"),
            end=filters.get("end"),
        )[:LIMIT]
    )
    items = readable(rows, currency=agency.currency, names=agency_object_names(rows, link=_link))
    if request.GET.get("format") == "csv" and form.is_valid():
        return csv_response("audit-log.csv", CSV_HEADER, csv_rows(items))
    query = request.GET.copy()
    query.pop("format", None)
    return render(
        request,
        "agency/audit.html",
        {"items": items, "form": form, "csv_query": query.urlencode(), "limit": LIMIT},
        status=200 if form.is_valid() or not request.GET else 400,
    )
