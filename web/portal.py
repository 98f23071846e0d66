"""The client portal on the agency's domain: Monthly Service Overview (INV-3) with Export (PDF) and `< Prev`,
and the payment method (add or replace). A client user sees only their own client account (TEN-2)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from billing.models import BillingSettings, Invoice
from billing.overview import invoice_status, lines_by_category, month_invoices
from billing.payment_methods import payment_method_attach
from billing.pdf import invoice_pdf, pdf_filename
from core.calendar import add_months
from core.errors import ApplicationError
from web.access import business_today, client_view
from web.agency.common import parse_month, pdf_response
from web.forms import SandboxPaymentMethodForm, StripePaymentMethodForm

# Stripe.js and the card frame it opens, allowed on the payment-method page only and only with a Stripe key
# (Stripe's documented CSP requirements for Elements).
STRIPE_CSP = {
    "script-src": ["https://js.stripe.com"],
    "frame-src": ["https://js.stripe.com", "https://hooks.stripe.com"],
    "connect-src": ["https://api.stripe.com"],
}


def _with_stripe_csp(response: HttpResponse) -> HttpResponse:
    policy = {name: list(values) for name, values in settings.SECURE_CSP.items()}
    for name, sources in STRIPE_CSP.items():
        policy[name] = [*policy.get(name, policy["default-src"]), *sources]
    response._csp_config = policy  # type: ignore[attr-defined] - read by Django's CSP middleware
    return response


@client_view
def service_overview(request: HttpRequest) -> HttpResponse:
    client = request.portal_client  # type: ignore[attr-defined]
    agency = request.tenant  # type: ignore[attr-defined]
    invoices = Invoice.objects.filter(client=client)
    bounds = list(invoices.order_by("period_start").values_list("period_start", flat=True))
    month = parse_month(request.GET.get("month"))
    if month is None:
        today_month = business_today(agency).replace(day=1)
        past = [d.replace(day=1) for d in bounds if d.replace(day=1) <= today_month]
        month = past[-1] if past else (bounds[-1].replace(day=1) if bounds else today_month)
    invoice = (
        month_invoices(month)
        .filter(client=client)
        .prefetch_related("lines", "charges")
        .order_by("period_start")
        .first()
    )
    context = {
        "client": client,
        "month": month,
        "invoice": invoice,
        "currency": agency.currency,
        "prev_month": add_months(month, -1) if bounds and bounds[0].replace(day=1) < month else None,
        "next_month": add_months(month, 1) if bounds and bounds[-1].replace(day=1) > month else None,
        "payment_method": client.payment_methods.filter(removed_at__isnull=True).first(),
    }
    if invoice is not None:
        order = BillingSettings.objects.values_list("category_order", flat=True).first()
        context["groups"], context["taxes"] = lines_by_category(invoice.lines.all(), order)
        charges = list(invoice.charges.all())
        context["charges"] = charges
        context["status"] = invoice_status(c.status for c in charges)
    return render(request, "portal/overview.html", context)


@client_view
def portal_invoice_pdf(request: HttpRequest, public_id) -> HttpResponse:
    invoice = get_object_or_404(Invoice, client=request.portal_client, public_id=public_id)  # type: ignore[attr-defined]
    return pdf_response(invoice_pdf(invoice=invoice, agency=request.tenant), pdf_filename(invoice))  # type: ignore[attr-defined]


@client_view
def payment_method(request: HttpRequest) -> HttpResponse:
    """Add or replace the payment method. With a Stripe publishable key the card is entered in Stripe
    Elements and only the PaymentMethod id reaches the server; without one, the sandbox's test methods."""
    client = request.portal_client  # type: ignore[attr-defined]
    stripe_key = settings.STRIPE_PUBLISHABLE_KEY
    form_class = StripePaymentMethodForm if stripe_key else SandboxPaymentMethodForm
    form = form_class(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            if stripe_key:
                token = form.cleaned_data["payment_method_id"]
            else:
                # Another physical test card with the same behaviour for each client (the sandbox's
                # "<token>:<variant>"), so two clients picking "Visa" are not the same card (COL-5).
                token = f"{form.cleaned_data['method']}:{client.public_id.hex[:12]}"
            try:
                payment_method_attach(client=client, token=token, actor=request.user)
            except ApplicationError as exc:
                form.apply_error(exc)
            else:
                messages.success(request, "Payment method saved. It will be charged on the billing date.")
                return redirect("portal-payment-method")
        status = 400
    response = render(
        request,
        "portal/payment_method.html",
        {
            "client": client,
            "form": form,
            "stripe_key": stripe_key,
            "payment_method": client.payment_methods.filter(removed_at__isnull=True).first(),
        },
        status=status,
    )
    return _with_stripe_csp(response) if stripe_key else response
