"""SetupIntents on the Stripe test server (PAY-3: the agency saves its own card or bank account as a platform
customer): cards, ACH and SEPA with stable fingerprints and mandates, microdeposit verification, 3-D Secure on
setup, declines."""

from __future__ import annotations

import pytest
import stripe

from tests.harness.helpers import ACH_OK, SECRET, ach_payment_method, make_customer

SEPA = {"type": "sepa_debit", "sepa_debit": {"iban": "DE89370400440532013000"}}
SEPA_BILLING = {"name": "Agency GmbH", "email": "billing@agency.example"}
ONLINE = {"ip_address": "127.0.0.1", "user_agent": "Mozilla/5.0"}
RETURN_URL = "http://127.0.0.1:9/billing-setup/payment-method/return"


def setup(client, customer, **params) -> stripe.SetupIntent:
    return client.v1.setup_intents.create(
        params={"customer": customer.id, "usage": "off_session", "confirm": True, **params}
    )


def test_PAY_3_card_setup_intent_for_a_platform_customer(client, server, recorder):
    server.add_webhook(recorder.url, SECRET)
    agency = make_customer(client, email="agency@example.com", name="Agency")
    si = setup(client, agency, payment_method="pm_card_mastercard", payment_method_types=["card"])
    assert si.status == "succeeded" and si.mandate is None and si.usage == "off_session"
    pm = client.v1.payment_methods.retrieve(si.payment_method)
    assert pm.customer == agency.id and pm.card.brand == "mastercard"
    # the same card held by someone else has the same fingerprint (COL-5 can refuse it)
    client_card = client.v1.payment_methods.retrieve("pm_card_mastercard")
    assert client_card.card.fingerprint == pm.card.fingerprint
    expanded = client.v1.setup_intents.retrieve(si.id, params={"expand": ["payment_method"]})
    assert expanded.payment_method.card.fingerprint == pm.card.fingerprint
    events = recorder.wait_for(lambda evs: any(e["type"] == "setup_intent.succeeded" for e in evs))
    assert [e["type"] for e in events if e["type"].startswith(("setup_intent.", "payment_method."))] == [
        "setup_intent.created",
        "payment_method.attached",
        "setup_intent.succeeded",
    ]
    # later the platform charges it off-session
    charged = client.v1.payment_intents.create(
        params={
            "amount": 9_900,
            "currency": "usd",
            "customer": agency.id,
            "payment_method": pm.id,
            "confirm": True,
            "off_session": True,
        }
    )
    assert charged.status == "succeeded"


def test_PAY_3_declined_card_on_setup(client, server):
    agency = make_customer(client)
    with pytest.raises(stripe.CardError) as err:
        setup(client, agency, payment_method="pm_card_visa_chargeDeclinedInsufficientFunds")
    assert err.value.error.decline_code == "insufficient_funds"
    si = client.v1.setup_intents.retrieve(err.value.error.setup_intent["id"])
    assert si.status == "requires_payment_method" and si.last_setup_error.decline_code == "insufficient_funds"
    assert client.v1.customers.payment_methods.list(agency.id).data == []


def test_PAY_3_ach_setup_intent_with_a_mandate_and_a_stable_fingerprint(client, server):
    agency = make_customer(client)
    si = setup(
        client,
        agency,
        payment_method_types=["us_bank_account"],
        payment_method_data={"type": "us_bank_account", "us_bank_account": ACH_OK, "billing_details": {"name": "A"}},
        mandate_data={"customer_acceptance": {"type": "online", "online": ONLINE}},
    )
    assert si.status == "succeeded" and si.mandate.startswith("mandate_")
    pm = client.v1.payment_methods.retrieve(si.payment_method)
    assert pm.customer == agency.id and pm.us_bank_account.last4 == "6789"
    other = ach_payment_method(client, make_customer(client))  # the same account, held by a client
    assert other.us_bank_account.fingerprint == pm.us_bank_account.fingerprint
    mandate = client.v1.mandates.retrieve(si.mandate)
    assert (mandate.status, mandate.type, mandate.payment_method) == ("active", "multi_use", pm.id)
    assert mandate.customer_acceptance.type == "online" and mandate.payment_method_details.type == "us_bank_account"


def test_PAY_3_sepa_setup_intent(client, server):
    agency = make_customer(client)
    si = setup(
        client,
        agency,
        payment_method_types=["sepa_debit"],
        payment_method_data={**SEPA, "billing_details": SEPA_BILLING},
    )
    assert si.status == "succeeded"
    pm = client.v1.payment_methods.retrieve(si.payment_method)
    assert pm.sepa_debit.last4 == "3000" and pm.customer == agency.id
    again = client.v1.payment_methods.create(params={**SEPA, "billing_details": SEPA_BILLING})
    assert again.sepa_debit.fingerprint == pm.sepa_debit.fingerprint
    mandate = client.v1.mandates.retrieve(si.mandate)
    assert mandate.payment_method_details.sepa_debit.reference and mandate.customer_acceptance.type == "offline"


def test_PAY_3_ach_microdeposit_verification(client, server, recorder):
    server.add_webhook(recorder.url, SECRET)
    agency = make_customer(client)
    params = {
        "payment_method_types": ["us_bank_account"],
        "payment_method_data": {"type": "us_bank_account", "us_bank_account": ACH_OK, "billing_details": {"name": "A"}},
        "payment_method_options": {"us_bank_account": {"verification_method": "microdeposits"}},
    }
    si = setup(client, agency, **params)
    assert si.status == "requires_action" and si.next_action.type == "verify_with_microdeposits"
    assert si.next_action.verify_with_microdeposits.microdeposit_type == "descriptor_code"
    with pytest.raises(stripe.InvalidRequestError) as wrong:
        client.v1.setup_intents.verify_microdeposits(si.id, params={"amounts": [10, 11]})
    assert wrong.value.code == "payment_method_microdeposit_verification_amounts_mismatch"
    verified = client.v1.setup_intents.verify_microdeposits(si.id, params={"amounts": [32, 45]})
    assert verified.status == "succeeded" and verified.mandate
    # three wrong attempts fail the setup
    other = setup(client, make_customer(client), **params)
    for _ in range(2):
        with pytest.raises(stripe.InvalidRequestError):
            client.v1.setup_intents.verify_microdeposits(other.id, params={"descriptor_code": "SM00XX"})
    with pytest.raises(stripe.InvalidRequestError) as exceeded:
        client.v1.setup_intents.verify_microdeposits(other.id, params={"descriptor_code": "SM00XX"})
    assert exceeded.value.code == "payment_method_microdeposit_verification_attempts_exceeded"
    failed = client.v1.setup_intents.retrieve(other.id)
    assert failed.status == "requires_payment_method"
    assert failed.last_setup_error.code == "payment_method_microdeposit_verification_attempts_exceeded"
    recorder.wait_for(lambda evs: any(e["type"] == "setup_intent.setup_failed" for e in evs))


def test_PAY_3_COL_7_card_authenticated_on_setup(client, server):
    agency = make_customer(client)
    si = setup(client, agency, payment_method="pm_card_authenticationRequiredOnSetup", return_url=RETURN_URL)
    assert si.status == "requires_action" and si.next_action.type == "redirect_to_url"
    assert si.next_action.redirect_to_url.return_url == RETURN_URL
    done = server.authenticate(si.id)
    assert done["status"] == "succeeded"
    pm = client.v1.payment_methods.retrieve(si.payment_method)
    assert pm.customer == agency.id
    charged = client.v1.payment_intents.create(
        params={
            "amount": 5_000,
            "currency": "usd",
            "customer": agency.id,
            "payment_method": pm.id,
            "confirm": True,
            "off_session": True,
        }
    )
    assert charged.status == "succeeded"  # set up for off-session use
    refused = setup(client, make_customer(client), payment_method="pm_card_authenticationRequired")
    failed = server.authenticate(refused.id, succeed=False)
    assert failed["status"] == "requires_payment_method"
    assert failed["last_setup_error"]["code"] == "setup_intent_authentication_failure"
