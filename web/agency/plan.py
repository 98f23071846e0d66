"""Billing Plan Summary (PLAN-1)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from clients.models import Client
from web.access import staff_view
from web.agency.common import C


@staff_view(C.VIEW_BILLING)
def plan_summary(request: HttpRequest) -> HttpResponse:
    agency = request.tenant  # type: ignore[attr-defined]
    plan = agency.plan
    context = {"plan": plan, "currency": plan.currency if plan else agency.currency}
    if plan is not None:
        context.update(
            {
                "products": list(plan.products.all()),
                "taxes": list(plan.taxes.all()),
                "fees": list(plan.fees.all()),
                "active_clients": Client.objects.filter(deactivated_on__isnull=True).count(),
            }
        )
    return render(request, "agency/plan.html", context)
