"""Tax rates: the taxes the agency charges its clients (PLAN-2), created and changed here, ticked per client on
Client Configuration. The same services and rules as the API's tax-rates endpoint."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.permissions import has_capability
from clients.models import TaxRate
from clients.services import tax_rate_create, tax_rate_remove, tax_rate_update
from core.errors import ApplicationError
from core.money import format_rate
from web.access import staff_view
from web.agency.common import SEE_BILLING, C
from web.confirm import confirm_page, confirmed
from web.forms import TaxRateForm


def _page(request: HttpRequest, *, form: TaxRateForm | None = None, status: int = 200) -> HttpResponse:
    rates = TaxRate.objects.annotate(client_count=Count("clients")).order_by("name", "id")
    return render(
        request,
        "agency/taxes.html",
        {
            "rates": rates,
            "form": form or TaxRateForm(),
            "can_edit": has_capability(request.user, C.EDIT_CLIENT_CONFIG),  # type: ignore[arg-type]
        },
        status=status,
    )


@staff_view(SEE_BILLING)
def tax_rates(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _page(request)
    if not has_capability(request.user, C.EDIT_CLIENT_CONFIG):  # type: ignore[arg-type]
        raise PermissionDenied("Your role cannot change tax rates.")
    form = TaxRateForm(request.POST)
    if form.is_valid():
        try:
            rate = tax_rate_create(
                name=form.cleaned_data["name"], rate_percent=form.cleaned_data["rate"], actor=request.user
            )  # type: ignore[arg-type]
        except ApplicationError as exc:
            form.apply_error(exc)
        else:
            messages.success(
                request,
                f"{rate.name} ({format_rate(rate.rate_percent)} %) added. Tick it on each client it applies to.",
            )
            return redirect("tax-rates")
    return _page(request, form=form, status=400)


@staff_view(C.EDIT_CLIENT_CONFIG)
def tax_rate_edit(request: HttpRequest, public_id) -> HttpResponse:
    rate = get_object_or_404(TaxRate, public_id=public_id)
    status = 200
    if request.method == "POST":
        form = TaxRateForm(request.POST)
        if form.is_valid():
            try:
                tax_rate_update(
                    tax_rate=rate,
                    name=form.cleaned_data["name"],
                    rate_percent=form.cleaned_data["rate"],
                    actor=request.user,
                )  # type: ignore[arg-type]
            except ApplicationError as exc:
                form.apply_error(exc)
            else:
                messages.success(request, "Tax rate saved. Invoices already built keep the rate they were built with.")
                return redirect("tax-rates")
        status = 400
    else:
        form = TaxRateForm(initial={"name": rate.name, "rate": format_rate(rate.rate_percent)})
    return render(
        request,
        "agency/tax_edit.html",
        {"rate": rate, "form": form, "client_count": rate.clients.count()},
        status=status,
    )


@require_POST
@staff_view(C.EDIT_CLIENT_CONFIG)
def tax_rate_delete(request: HttpRequest, public_id) -> HttpResponse:
    rate = get_object_or_404(TaxRate, public_id=public_id)
    if not confirmed(request):
        return confirm_page(
            request,
            title=f"Remove {rate.name}?",
            message="Invoices already built keep their tax lines; no client will be charged this tax again.",
            action_label="Remove tax rate",
            cancel_url=reverse("tax-rates"),
        )
    try:
        tax_rate_remove(tax_rate=rate, actor=request.user)  # type: ignore[arg-type]
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{rate.name} removed.")
    return redirect("tax-rates")
