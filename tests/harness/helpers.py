"""Helpers of the Stripe test server's own tests: customers, cards, bank accounts, plain HTTP for its pages."""

from __future__ import annotations

import http.client
import re
import urllib.parse

import stripe

SECRET = "whsec_test_harness"
ACH_OK = {"routing_number": "110000000", "account_number": "000123456789", "account_holder_type": "individual"}
ACH_CLOSED = {"routing_number": "110000000", "account_number": "000111111113", "account_holder_type": "individual"}


def make_customer(client: stripe.StripeClient, **params) -> stripe.Customer:
    return client.v1.customers.create(params={"email": "payer@example.com", "name": "Payer", **params})


def card_customer(client: stripe.StripeClient, pm: str = "pm_card_visa") -> tuple[stripe.Customer, str]:
    customer = make_customer(client)
    payment_method = client.v1.payment_methods.attach(pm, params={"customer": customer.id})
    return customer, payment_method.id


def off_session(client, customer, pm, amount=2500, **extra) -> stripe.PaymentIntent:
    return client.v1.payment_intents.create(
        params={
            "amount": amount,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": pm,
            "confirm": True,
            "off_session": True,
            **extra,
        }
    )


def ach_payment_method(client, customer, account=ACH_OK) -> stripe.PaymentMethod:
    pm = client.v1.payment_methods.create(
        params={"type": "us_bank_account", "us_bank_account": account, "billing_details": {"name": "Jenny Rosen"}}
    )
    return client.v1.payment_methods.attach(pm.id, params={"customer": customer.id})


def sepa_method(client, iban="DE89370400440532013000"):
    return client.v1.payment_methods.create(
        params={
            "type": "sepa_debit",
            "sepa_debit": {"iban": iban},
            "billing_details": {"name": "Jenny Rosen", "email": "jenny@example.com"},
        }
    )


def http_request(url: str, method: str = "GET", form: dict | None = None) -> tuple[int, dict[str, str], str]:
    """One HTTP request, redirects not followed (a browser's view of the hosted pages): status, headers, body."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    body = urllib.parse.urlencode(form) if form is not None else None
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if form is not None else {}
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
    finally:
        conn.close()


def hidden_inputs(page: str) -> dict[str, str]:
    """The first form's hidden inputs of a page (name -> value)."""
    return dict(re.findall(r"<input type='hidden' name='([^']+)' value='([^']*)'>", page)[:2])
