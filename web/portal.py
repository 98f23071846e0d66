"""The client portal on the agency's domain: Monthly Service Overview (INV-3) with Export (PDF) and `< Prev`, the
balance due, the invoice history and each charge in plain words, Pay now on an open charge (POR-1), and the payment
method (add or replace, then an offer to pay at once). A client user sees only their own client account (TEN-2):
anything else answers 404."""

from __future__ import annotations

import uuid
from datetime import date

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from billing.attempts import attempts_resolve
from billing.books import client_balance_summary
from billing.models import BillingSettings, Charge, ChargeAttempt, CreditNote, Invoice, PaymentMethod
from billing.overview import invoice_status, lines_by_category, month_invoices
from billing.pay_now import attempt_for_request, charge_pay_now, open_charges
from billing.payment_methods import payment_method_attach
from billing.pdf import credit_note_pdf, credit_note_pdf_filename, invoice_pdf, pdf_filename
from billing.plain_words import (
    ChargeWords,
    charge_words,
    client_decline_reason,
    client_status_label,
    client_status_tone,
)
from billing.platform.models import SandboxPaymentIntent
from billing.providers import get_provider
from billing.providers.base import ProviderError
from billing.statuses import AttemptKind, AttemptOutcome, ChargeStatus
from clients.models import Client
from core.calendar import add_months
from core.errors import ApplicationError
from core.money import format_minor
from web.access import business_today, client_view
from web.agency.common import parse_month, pdf_response
from web.forms import SandboxPaymentMethodForm, StripePaymentMethodForm
from web.stripe_js import with_stripe_csp


def _method_labels(client: Client) -> dict[str, str]:
    """Every payment method the client has used, removed ones too: reference → "Visa ···· 4242"."""
    return {m.reference: str(m) for m in PaymentMethod.objects.filter(client=client)}


def _current_method(client: Client) -> PaymentMethod | None:
    return client.payment_methods.filter(removed_at__isnull=True).first()


def charges_in_words(charges: list[Charge], *, client: Client, agency, today: date) -> list[tuple[Charge, ChargeWords]]:
    """Each charge with its plain-words state (POR-1), the attempts of all of them read in one query."""
    attempts: dict[int, list[ChargeAttempt]] = {}
    for attempt in ChargeAttempt.objects.filter(charge__in=charges):
        attempts.setdefault(attempt.charge_id, []).append(attempt)
    labels = _method_labels(client)
    current = _current_method(client)
    return [
        (
            charge,
            charge_words(
                charge,
                attempts=attempts.get(charge.pk, []),
                method_labels=labels,
                current_method=str(current) if current else "",
                agency_name=agency.name,
                today=today,
            ),
        )
        for charge in charges
    ]


def _history(client: Client) -> list[dict]:
    """Every invoice of the client, newest first, with the status a client reads."""
    rows = []
    for invoice in Invoice.objects.filter(client=client).prefetch_related("charges").order_by("-period_start"):
        status = invoice_status(c.status for c in invoice.charges.all())
        rows.append({"invoice": invoice, "status": client_status_label(status), "tone": client_status_tone(status)})
    return rows


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
        "payment_method": _current_method(client),
        # The same balance as the API and the agency's pages (billing/books.py, MON-4).
        "balance_due": client_balance_summary(client=client, currency=agency.currency).balance_minor,
        "history": _history(client),
        "pay_key": uuid.uuid4().hex,
    }
    today = business_today(agency)
    context["open"] = charges_in_words(open_charges(client), client=client, agency=agency, today=today)
    if invoice is not None:
        order = BillingSettings.objects.values_list("category_order", flat=True).first()
        context["groups"], context["taxes"] = lines_by_category(invoice.lines.all(), order)
        charges = list(invoice.charges.order_by("installment"))
        context["charges"] = charges_in_words(charges, client=client, agency=agency, today=today)
        status = invoice_status(c.status for c in charges)
        context["status"], context["status_tone"] = client_status_label(status), client_status_tone(status)
        context["credit_notes"] = list(invoice.credit_notes.order_by("issued_on", "id"))
    return render(request, "portal/overview.html", context)


def _paid_message(attempt: ChargeAttempt | None, charge: Charge) -> tuple[int, str]:
    """(message level, words) for the outcome of a Pay now attempt."""
    amount = f"{format_minor(charge.amount_minor, charge.currency)} {charge.currency}"
    if attempt is None:
        return messages.ERROR, "No payment was made: there is no payment method on file."
    if attempt.outcome == AttemptOutcome.SUCCEEDED:
        return messages.SUCCESS, f"Thank you — {amount} paid for invoice {charge.invoice.number}."
    if attempt.outcome == AttemptOutcome.PENDING:
        return messages.SUCCESS, f"Bank debit of {amount} submitted; it takes a few business days to clear."
    if attempt.outcome == AttemptOutcome.REQUIRES_ACTION:
        return messages.INFO, "Your bank is waiting for you to confirm this payment."
    if attempt.outcome in (AttemptOutcome.STARTED, AttemptOutcome.UNKNOWN):
        return messages.INFO, "Your payment is being processed. This page will show the result shortly."
    return messages.ERROR, f"Payment failed: {client_decline_reason(attempt.decline_code)}."


@client_view
@require_http_methods(["GET", "POST"])
def charge_pay(request: HttpRequest, public_id) -> HttpResponse:
    """Pay now (POR-1): GET shows what will be paid and with what; POST makes the attempt. Another client's charge,
    or one of another agency, answers 404 (TEN-2)."""
    client = request.portal_client  # type: ignore[attr-defined]
    agency = request.tenant  # type: ignore[attr-defined]
    charge = get_object_or_404(Charge.objects.select_related("invoice"), client=client, public_id=public_id)
    today = business_today(agency)
    if request.method == "POST":
        key = request.POST.get("request_key", "")
        try:
            result = charge_pay_now(charge=charge, user=request.user, request_key=key, today=today)  # type: ignore[arg-type]
        except ApplicationError as exc:
            earlier = attempt_for_request(charge=charge, request_key=key)
            waiting = charge.attempts.filter(outcome=AttemptOutcome.REQUIRES_ACTION).order_by("-number").first()
            if earlier is None and waiting is not None and waiting.action_url:
                return redirect(waiting.action_url)  # an earlier Pay now still waits for the bank's confirmation
            if earlier is None:
                messages.error(request, exc.message)
                return redirect("portal-charge-pay", public_id=charge.public_id)
            result_attempt: ChargeAttempt | None = earlier
        else:
            result_attempt = result.attempt  # type: ignore[assignment]
        if result_attempt is not None and result_attempt.outcome == AttemptOutcome.REQUIRES_ACTION:
            # COL-7: the cardholder confirms on the bank's page (3-D Secure), which returns to `charge_pay_return`.
            return redirect(result_attempt.action_url)
        charge.refresh_from_db()
        level, words = _paid_message(result_attempt, charge)
        messages.add_message(request, level, words)
        if charge.status in (ChargeStatus.PAID, ChargeStatus.PAID_OUT, ChargeStatus.PENDING):
            return redirect(reverse("portal") + f"?month={charge.invoice.period_start:%Y-%m}")
        return redirect("portal-charge-pay", public_id=charge.public_id)
    [(_, words)] = charges_in_words([charge], client=client, agency=agency, today=today)
    waiting = charge.attempts.filter(outcome=AttemptOutcome.REQUIRES_ACTION).order_by("-number").first()
    return render(
        request,
        "portal/pay.html",
        {
            "client": client,
            "charge": charge,
            "words": words,
            "waiting": waiting,
            "payment_method": _current_method(client),
            "pay_key": uuid.uuid4().hex,
            "currency": charge.currency,
        },
    )


@client_view
def portal_credit_note_pdf(request: HttpRequest, public_id) -> HttpResponse:
    note = get_object_or_404(
        CreditNote.objects.select_related("client", "invoice"),
        client=request.portal_client,  # type: ignore[attr-defined]
        public_id=public_id,
    )
    return pdf_response(credit_note_pdf(credit_note=note, agency=request.tenant), credit_note_pdf_filename(note))  # type: ignore[attr-defined]


@client_view
def portal_invoice_pdf(request: HttpRequest, public_id) -> HttpResponse:
    invoice = get_object_or_404(Invoice, client=request.portal_client, public_id=public_id)  # type: ignore[attr-defined]
    return pdf_response(invoice_pdf(invoice=invoice, agency=request.tenant), pdf_filename(invoice))  # type: ignore[attr-defined]


@client_view
def charge_pay_return(request: HttpRequest, public_id) -> HttpResponse:
    """Where the bank's 3-D Secure page sends the cardholder back (COL-7). The query it adds is not trusted: the
    attempt's outcome is asked of the processor, and recorded like any other."""
    client = request.portal_client  # type: ignore[attr-defined]
    agency = request.tenant  # type: ignore[attr-defined]
    charge = get_object_or_404(Charge.objects.select_related("invoice"), client=client, public_id=public_id)
    attempts_resolve(charge, today=business_today(agency))
    charge.refresh_from_db()
    attempt = charge.attempts.filter(kind=AttemptKind.CLIENT).order_by("-number").first()
    level, words = _paid_message(attempt, charge)
    messages.add_message(request, level, words)
    if charge.status in (ChargeStatus.PAID, ChargeStatus.PAID_OUT, ChargeStatus.PENDING):
        return redirect(reverse("portal") + f"?month={charge.invoice.period_start:%Y-%m}")
    return redirect("portal-charge-pay", public_id=charge.public_id)


@client_view
@require_http_methods(["GET", "POST"])
def sandbox_authenticate(request: HttpRequest, reference: str) -> HttpResponse:
    """The sandbox's stand-in for a bank's 3-D Secure page (COL-7): only with the sandbox processor, only for a
    payment of this client waiting for authentication; anything else is 404."""
    provider = get_provider()
    if provider.name != "sandbox":
        raise Http404
    client = request.portal_client  # type: ignore[attr-defined]
    intent = SandboxPaymentIntent.objects.filter(reference=reference, status="requires_action").first()
    if intent is None or intent.metadata.get("schema") != request.tenant.schema_name:  # type: ignore[attr-defined]
        raise Http404
    charge = get_object_or_404(
        Charge.objects.select_related("invoice"), client=client, public_id=intent.metadata.get("charge")
    )
    if request.method == "POST":
        try:
            back = provider.authenticate(reference, succeed=request.POST.get("outcome") == "succeeded")  # type: ignore[attr-defined]
        except ProviderError as exc:
            messages.error(request, str(exc))
            return redirect("portal-charge-pay", public_id=charge.public_id)
        return redirect(back)
    return render(
        request,
        "portal/sandbox_authenticate.html",
        {"charge": charge, "intent": intent, "currency": charge.currency},
    )


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
                unpaid = open_charges(client)
                if unpaid:
                    # POR-1: a failed charge is open; offer to pay it with the new method at once.
                    first = unpaid[0]
                    messages.success(
                        request,
                        f"Payment method saved. Invoice {first.invoice.number} is still unpaid "
                        f"({format_minor(first.amount_minor, first.currency)} {first.currency}): you can pay it now.",
                    )
                    return redirect("portal-charge-pay", public_id=first.public_id)
                messages.success(request, "Payment method saved. It will be charged on each billing date.")
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
    return with_stripe_csp(response) if stripe_key else response
