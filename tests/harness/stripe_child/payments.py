"""Payment methods, charges and PaymentIntents: Stripe's params, declines, 3-D Secure and bank debits."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import Any

from localstripe import resources as ls
from localstripe.errors import UserError
from localstripe.resources import (
    Charge,
    Customer,
    List,
    PaymentMethod,
    StripeObject,
    fingerprint,
    random_id,
    store,
)

from . import ledger
from .cards import (
    ACH_TEST_PAYMENT_METHODS,
    AUTH_REQUIRED,
    AUTH_REQUIRED_DECLINE,
    CARD_DECLINES,
    CARD_TEST_PAYMENT_METHODS,
    CHARGE_ONLY_DECLINES,
    DEBIT_FAILURE_MESSAGES,
    MAX_AMOUNT,
    MIN_AMOUNTS,
    STATEMENT_DESCRIPTOR_FORBIDDEN,
    _aba_ok,
    _bank_failure,
    _card_brand,
    _decline_info,
)
from .connect import Transfer, _require_account, _require_transfers
from .core import (
    S,
    _background_context,
    _blank_to_none,
    _created_filter,
    _ctx_account,
    _ctx_idem,
    _ctx_request_id,
    _invalid,
    _list_of,
    _missing,
    _objects,
    _StripeError,
    _to_bool,
    _to_int,
    _unknown,
)
from .webhooks import _emit


def _check_statement_descriptor(value: Any, param: str, minimum: int) -> str | None:
    value = _blank_to_none(value)
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not minimum <= len(value) <= 22
        or not re.search("[A-Za-z]", value)
        or STATEMENT_DESCRIPTOR_FORBIDDEN & set(value)
    ):
        raise _invalid(
            param,
            f"Invalid {param}: it must be {minimum} to 22 characters long, contain at least one "
            "letter and none of < > \\ ' \" *.",
        )
    return value


def _resolve_pm(pm_id: Any, param: str = "payment_method") -> Any:
    if not isinstance(pm_id, str) or not pm_id:
        raise _invalid(param)
    if not pm_id.startswith(("pm_", "src_", "card_")):
        raise _StripeError(400, f"No such PaymentMethod: '{pm_id}'", code="resource_missing", param=param)
    try:
        return PaymentMethod._api_retrieve(pm_id)
    except UserError:
        raise _StripeError(400, f"No such PaymentMethod: '{pm_id}'", code="resource_missing", param=param) from None


def _billing_details(value: Any) -> dict:
    if value is not None and not isinstance(value, dict):
        raise _invalid("billing_details")
    value = value or {}
    address = value.get("address") or {}
    return {
        "address": {k: address.get(k) for k in ("city", "country", "line1", "line2", "postal_code", "state")},
        "email": value.get("email"),
        "name": value.get("name"),
        "phone": value.get("phone"),
    }


def _pm_init(
    self,
    type=None,
    billing_details=None,
    card=None,
    sepa_debit=None,
    us_bank_account=None,
    metadata=None,
    allow_redisplay=None,
    **kwargs,
):
    if kwargs:
        raise _unknown(kwargs)
    if type is None:
        raise _missing("type")
    if type not in ("card", "sepa_debit", "us_bank_account"):
        raise _invalid("type", f"Invalid type: must be one of card, sepa_debit, us_bank_account (got {type!r}).")
    details = _billing_details(billing_details)
    if type == "card":
        if not isinstance(card, dict):
            raise _missing("card")
        number = re.sub(r"[\s-]", "", str(card.get("number") or ""))
        if not number:
            raise _missing("card[number]")
        if not number.isdigit() or not 13 <= len(number) <= 19:
            raise _StripeError(
                402, "Your card number is incorrect.", type="card_error", code="incorrect_number", param="number"
            )
        exp_month = _to_int(card.get("exp_month"), "card[exp_month]")
        exp_year = _to_int(card.get("exp_year"), "card[exp_year]")
        if 0 < exp_year < 100:
            exp_year += 2000
        if not 1 <= exp_month <= 12:
            raise _StripeError(
                402,
                "Your card's expiration month is invalid.",
                type="card_error",
                code="invalid_expiry_month",
                param="exp_month",
            )
        now = time.gmtime()
        if not (now.tm_year, now.tm_mon) <= (exp_year, exp_month) or exp_year > now.tm_year + 50:
            raise _StripeError(
                402,
                "Your card's expiration year is invalid.",
                type="card_error",
                code="invalid_expiry_year",
                param="exp_year",
            )
        unexpected = set(card) - {"number", "exp_month", "exp_year", "cvc"}
        if unexpected:
            raise _unknown({f"card[{sorted(unexpected)[0]}]": None})
    elif type == "sepa_debit":
        if not isinstance(sepa_debit, dict) or not sepa_debit.get("iban"):
            raise _missing("sepa_debit[iban]")
        iban = re.sub(r"\s", "", str(sepa_debit["iban"])).upper()
        if not 14 <= len(iban) <= 34 or not re.match(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]+$", iban):
            raise _invalid("sepa_debit[iban]", "The IBAN you provided is invalid.", code="invalid_bank_account_iban")
        for field in ("name", "email"):
            if not details[field]:
                raise _missing(f"billing_details[{field}]")
    else:
        if not isinstance(us_bank_account, dict):
            raise _missing("us_bank_account")
        if us_bank_account.get("financial_connections_account"):
            routing, account_number = "110000000", "000123456789"
        else:
            routing = str(us_bank_account.get("routing_number") or "")
            account_number = str(us_bank_account.get("account_number") or "")
            if not routing:
                raise _missing("us_bank_account[routing_number]")
            if not account_number:
                raise _missing("us_bank_account[account_number]")
            if not _aba_ok(routing):
                raise _invalid(
                    "us_bank_account[routing_number]",
                    "Routing number must have 9 digits and be valid.",
                    code="routing_number_invalid",
                )
            if not account_number.isdigit() or not 4 <= len(account_number) <= 17:
                raise _invalid(
                    "us_bank_account[account_number]", "Invalid account number.", code="account_number_invalid"
                )
        holder_type = us_bank_account.get("account_holder_type") or "individual"
        account_type = us_bank_account.get("account_type") or "checking"
        if holder_type not in ("individual", "company"):
            raise _invalid("us_bank_account[account_holder_type]")
        if account_type not in ("checking", "savings"):
            raise _invalid("us_bank_account[account_type]")
        if not details["name"]:
            raise _missing("billing_details[name]")
    if metadata is not None and not isinstance(metadata, dict):
        raise _invalid("metadata")

    StripeObject.__init__(self)
    self.type = type
    self.billing_details = details
    self.customer = None
    self.metadata = metadata or {}
    self.allow_redisplay = allow_redisplay or "unspecified"
    if type == "card":
        self._card_number = number
        brand = _card_brand(number)
        self.card = {
            "brand": brand,
            "display_brand": brand,
            "country": "US",
            "exp_month": exp_month,
            "exp_year": exp_year,
            "fingerprint": fingerprint(number),
            "funding": "debit" if number in ("4000056655665556", "5200828282828210") else "credit",
            "last4": number[-4:],
            "checks": {
                "address_line1_check": None,
                "address_postal_code_check": None,
                "cvc_check": "pass" if card.get("cvc") else None,
            },
            "networks": {"available": [brand], "preferred": None},
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
            "generated_from": None,
        }
    elif type == "sepa_debit":
        self._sepa_debit_iban = iban
        self.sepa_debit = {
            "bank_code": iban[4:12],
            "branch_code": "",
            "country": iban[:2],
            "fingerprint": fingerprint(iban),
            "last4": iban[-4:],
            "generated_from": None,
        }
    else:
        self._routing_number = routing
        self._account_number = account_number
        self.us_bank_account = {
            "account_holder_type": holder_type,
            "account_type": account_type,
            "bank_name": "STRIPE TEST BANK",
            "financial_connections_account": us_bank_account.get("financial_connections_account"),
            "fingerprint": fingerprint(routing + ":" + account_number),
            "last4": account_number[-4:],
            "networks": {"preferred": "ach", "supported": ["ach"]},
            "routing_number": routing,
            "status_details": {},
        }


def _pm_canonical(cls, id):
    if id in CARD_TEST_PAYMENT_METHODS:
        return PaymentMethod(
            type="card",
            card={
                "number": CARD_TEST_PAYMENT_METHODS[id],
                "exp_month": "12",
                "exp_year": str(time.gmtime().tm_year + 3),
                "cvc": "123",
            },
        )
    if id in ACH_TEST_PAYMENT_METHODS:
        return PaymentMethod(
            type="us_bank_account",
            billing_details={"name": "Jenny Rosen"},
            us_bank_account={"routing_number": "110000000", "account_number": ACH_TEST_PAYMENT_METHODS[id]},
        )
    return None


def _pm_requires_authentication(self):
    return self.type == "card" and self._card_number in AUTH_REQUIRED


def _pm_attaching_is_declined(self):
    return self.type == "card" and self._card_number in CARD_DECLINES and self._card_number not in CHARGE_ONLY_DECLINES


def _pm_charging_is_declined(self):
    if self.type == "card":
        return self._card_number in CARD_DECLINES
    return _bank_failure(self) is not None


def _pm_list(cls, url, customer=None, type=None, limit=None, starting_after=None, ending_before=None):
    if customer is not None:
        Customer._api_retrieve(customer)
    objs = [
        pm
        for pm in _objects("payment_method")
        if (customer is None or pm.customer == customer) and (type is None or pm.type == type)
    ]
    return _list_of(url, objs, limit, starting_after, ending_before)


def _card_error(message: str, code: str, decline_code: str | None, **fields: Any) -> _StripeError:
    return _StripeError(402, message, type="card_error", code=code, decline_code=decline_code, **fields)


def _pm_api_attach(cls, id, customer=None, **kwargs):
    if kwargs:
        raise _unknown(kwargs)
    if not customer:
        raise _missing("customer")
    obj = PaymentMethod._api_retrieve(id)
    Customer._api_retrieve(customer)
    if obj.customer and obj.customer != customer:
        raise _StripeError(
            400,
            "The payment method you provided has already been attached to a customer.",
            code="payment_method_unexpected_state",
        )
    if obj._attaching_is_declined():
        code, decline_code, message = _decline_info(obj)
        raise _card_error(message, code, decline_code, payment_method=obj._export())
    if obj.customer != customer:
        obj.customer = customer
        _emit("payment_method.attached", obj)
    return obj


def _customer_payment_methods(id, type=None, limit=None, starting_after=None, ending_before=None, **kwargs):
    if kwargs:
        raise _unknown(kwargs)
    return _pm_list(
        PaymentMethod,
        f"/v1/customers/{id}/payment_methods",
        customer=id,
        type=type,
        limit=limit,
        starting_after=starting_after,
        ending_before=ending_before,
    )


# ------------------------------------------------------------------------------------------------ charges
def _charge_is_async(self):
    pm = PaymentMethod._api_retrieve(self.payment_method)
    return pm.type in ("sepa_debit", "us_bank_account")


def _charge_set_auth_failure(self):
    forced = getattr(self, "_forced_failure", None)
    code, decline_code, message = forced or _decline_info(PaymentMethod._api_retrieve(self.payment_method))
    self.status = "failed"
    self.failure_code = code
    self.failure_message = message
    self._decline_code = decline_code
    self.outcome = {
        "network_status": "declined_by_network",
        "reason": decline_code,
        "risk_level": "normal",
        "seller_message": "The bank did not return any further details with this decline.",
        "type": "issuer_declined",
    }


def _charge_raise_failure(self):
    raise _card_error(self.failure_message, self.failure_code, getattr(self, "_decline_code", None), charge=self.id)


def _charge_initialize(self, on_success=None, on_failure_now=None, on_failure_later=None):
    if self._is_async_payment_method():
        # Bank debits stay `pending` (PaymentIntent: processing) until settled: POST /_test/settle, or
        # bank_settle_delay seconds later if configured. The outcome follows the test account number.
        self.status = "pending"
        self._settle_callbacks = (on_success, on_failure_later)
        S.pending_bank.append(self.id)
        _emit("charge.pending", self)
        if S.bank_settle_delay is not None:
            generation, charge_id = S.generation, self.id

            def later() -> None:
                if generation == S.generation:
                    _settle_charge(charge_id)

            asyncio.get_running_loop().call_later(S.bank_settle_delay, later)
        return
    if not self._authorized:
        self._set_auth_failure()
        _emit("charge.failed", self)
        if on_failure_now:
            on_failure_now()
        return
    self.status = "succeeded"
    self.outcome = {
        "network_status": "approved_by_network",
        "reason": None,
        "risk_level": "normal",
        "seller_message": "Payment complete.",
        "type": "authorized",
    }
    if self.captured:
        self._trigger_payment(on_success)


def _settle_charge(charge_id: str, outcome: str | None = None) -> dict | None:
    charge = store.get("charge:" + charge_id)
    if charge is None or charge.status != "pending":
        return None
    with contextlib.suppress(ValueError):
        S.pending_bank.remove(charge_id)
    pm = PaymentMethod._api_retrieve(charge.payment_method)
    failure = _bank_failure(pm)
    if outcome == "failed":
        failure = failure or "insufficient_funds"
    elif outcome == "succeeded":
        failure = None
    on_success, on_failure_later = getattr(charge, "_settle_callbacks", (None, None))
    with _background_context(getattr(charge, "_account", None)):
        if failure:
            charge.status = "failed"
            charge.failure_code = failure
            charge.failure_message = DEBIT_FAILURE_MESSAGES.get(failure, "The payment failed.")
            charge._decline_code = None
            charge.outcome = {
                "network_status": "declined_by_network",
                "reason": failure,
                "risk_level": "normal",
                "seller_message": charge.failure_message,
                "type": "issuer_declined",
            }
            _emit("charge.failed", charge)
            if on_failure_later:
                on_failure_later()
        else:
            charge.status = "succeeded"
            charge.outcome = {
                "network_status": "approved_by_network",
                "reason": None,
                "risk_level": "normal",
                "seller_message": "Payment complete.",
                "type": "authorized",
            }
            if charge.payment_intent is None:
                _book_charge(charge)
            if charge.captured and on_success:
                on_success()
    return {
        "charge": charge.id,
        "payment_intent": charge.payment_intent,
        "status": charge.status,
        "failure_code": charge.failure_code,
        "amount": charge.amount,
        "currency": charge.currency,
    }


def _charge_trigger_payment(self, on_success=None):
    """Capture (localstripe books a balance transaction of its own here; the ledger books it instead)."""
    self.status = "succeeded"
    if self.payment_intent is None:  # the Charges API; PaymentIntents book in their on_success
        _book_charge(self)
        from .disputes import open_for_test_card

        open_for_test_card(self)
    if on_success:
        on_success()


def _book_charge(charge) -> None:
    """The balance transactions of a charge that just succeeded (cards: at once; bank debits: when they settle).

    Platform charge: `charge` on the platform. Destination charge: also a transfer of `amount -
    application_fee_amount` (or `transfer_data[amount]`): `transfer` on the platform, `payment` (a `py_`) on the
    connected account. Direct charge (Stripe-Account): `charge` on the account with the application fee as its
    `fee`, and `application_fee` on the platform."""
    if charge.balance_transaction:
        return
    pm = store.get("payment_method:" + str(charge.payment_method))
    source_type = "bank_account" if pm is not None and pm.type in ("sepa_debit", "us_bank_account") else "card"
    account = getattr(charge, "_account", None)
    currency, fee = charge.currency, charge.application_fee_amount or 0
    if fee:
        charge.application_fee = "fee_" + random_id(24)
    if account:  # direct charge on a connected account
        details = (
            [
                {
                    "amount": fee,
                    "application": "ca_stripe_test_server",
                    "currency": currency,
                    "description": None,
                    "type": "application_fee",
                }
            ]
            if fee
            else []
        )
        txn = ledger.record(
            account,
            currency,
            charge.amount,
            "charge",
            charge.id,
            fee=fee,
            fee_details=details,
            available_on=ledger.available_on_for(account),
            source_type=source_type,
        )
        if fee:
            ledger.record(
                None,
                currency,
                fee,
                "application_fee",
                charge.application_fee,
                available_on=txn.available_on,
                source_type=source_type,
            )
    else:
        txn = ledger.record(
            None,
            currency,
            charge.amount,
            "charge",
            charge.id,
            available_on=ledger.available_on_for(None),
            source_type=source_type,
        )
    charge.balance_transaction = txn.id
    if not account and charge.transfer_data:
        amount = charge.transfer_data.get("amount")
        amount = charge.amount - fee if amount is None else amount
        if amount > 0:
            transfer = Transfer(
                amount=amount,
                currency=currency,
                destination=charge.transfer_data["destination"],
                source_transaction=charge.id,
                transfer_group=charge.transfer_group,
                source_type=source_type,
                _destination_charge=True,
            )
            charge.transfer = transfer.id
        charge.destination = charge.transfer_data["destination"]


def _charge_refunds(self):
    """localstripe scans the whole store for a charge's refunds on every export: index them instead."""
    li = List("/v1/charges/" + self.id + "/refunds")
    li._list = [store["refund:" + r] for r in reversed(S.refunds_by_charge.get(self.id, ())) if "refund:" + r in store]
    return li


def _charge_amount_refunded(self):
    """Refunds pending or succeeded count; failed and canceled ones gave the money back."""
    return sum(
        store["refund:" + r].amount
        for r in S.refunds_by_charge.get(self.id, ())
        if "refund:" + r in store and store["refund:" + r].status not in ("failed", "canceled")
    )


def _charge_payment_method_details(self):
    pm = store.get("payment_method:" + str(self.payment_method))
    if pm is None:
        return None
    details = {"type": pm.type}
    if pm.type == "card":
        details["card"] = {
            k: pm.card[k]
            for k in ("brand", "country", "exp_month", "exp_year", "fingerprint", "funding", "last4", "network")
            if k in pm.card
        }
    elif pm.type == "sepa_debit":
        details["sepa_debit"] = dict(pm.sepa_debit)
    elif pm.type == "us_bank_account":
        details["us_bank_account"] = {
            k: pm.us_bank_account[k]
            for k in ("account_holder_type", "account_type", "bank_name", "fingerprint", "last4", "routing_number")
        }
    return details


def _charge_list(
    cls,
    url,
    customer=None,
    payment_intent=None,
    transfer_group=None,
    created=None,
    limit=None,
    starting_after=None,
    ending_before=None,
):
    keep = _created_filter(created)
    account = _ctx_account.get()
    objs = [
        c
        for c in _objects("charge")
        if keep(c)
        and getattr(c, "_account", None) == account
        and (customer is None or c.customer == customer)
        and (payment_intent is None or c.payment_intent == payment_intent)
        and (transfer_group is None or c.transfer_group == transfer_group)
    ]
    return _list_of(url, objs, limit, starting_after, ending_before)


# ------------------------------------------------------------------------------------------------ payment intents
# Create params localstripe refuses as "Unexpected": stored on the PaymentIntent (and echoed) ...
PI_EXTRA = {
    "description": None,
    "setup_future_usage": None,
    "transfer_data": None,
    "on_behalf_of": None,
    "application_fee_amount": None,
    "statement_descriptor": None,
    "statement_descriptor_suffix": None,
    "receipt_email": None,
    "transfer_group": None,
    "shipping": None,
    "confirmation_method": "automatic",
    "automatic_payment_methods": None,
}
# ... accepted and not echoed ...
PI_IGNORED = ("payment_method_configuration", "payment_method_data")
# ... and accepted on create only with confirm=true.
PI_CONFIRM_ONLY = (
    "mandate",
    "mandate_data",
    "return_url",
    "error_on_requires_action",
    "use_stripe_sdk",
    "radar_options",
)
PM_TYPES = ("card", "sepa_debit", "us_bank_account", "link", "ideal", "bancontact", "acss_debit", "bacs_debit")

_orig = {}


def _validate_pi_extras(extras: dict, amount: Any, currency: Any) -> None:
    td = extras.get("transfer_data")
    if td is not None:
        if not isinstance(td, dict) or not td.get("destination"):
            raise _missing("transfer_data[destination]")
        unexpected = set(td) - {"destination", "amount"}
        if unexpected:
            raise _unknown({f"transfer_data[{sorted(unexpected)[0]}]": None})
        destination = _require_account(td["destination"], "transfer_data[destination]", "destination")
        _require_transfers(destination, "transfer_data[destination]")
        normalized = {"destination": td["destination"], "amount": None}
        if td.get("amount") not in (None, ""):
            normalized["amount"] = _to_int(td["amount"], "transfer_data[amount]")
            if amount is not None and not 0 <= normalized["amount"] <= _to_int(amount, "amount"):
                raise _invalid("transfer_data[amount]", "transfer_data[amount] must be between 0 and the amount.")
        extras["transfer_data"] = normalized
    if extras.get("on_behalf_of"):
        _require_account(extras["on_behalf_of"], "on_behalf_of")
    else:
        extras["on_behalf_of"] = None
    fee = _blank_to_none(extras.get("application_fee_amount"))
    if fee is not None:
        fee = _to_int(fee, "application_fee_amount")
        if fee < 0 or (amount is not None and fee > _to_int(amount, "amount")):
            raise _invalid("application_fee_amount", "application_fee_amount must be between 0 and the amount.")
        if extras.get("transfer_data") is None and not _ctx_account.get():
            raise _StripeError(
                400,
                "Can only apply an application_fee_amount when the PaymentIntent is attempting a "
                "direct payment (using an OAuth key or Stripe-Account header) or destination "
                "payment (using `transfer_data[destination]`).",
                param="application_fee_amount",
            )
        if (extras.get("transfer_data") or {}).get("amount") is not None:
            raise _StripeError(
                400,
                "You cannot specify both `application_fee_amount` and `transfer_data[amount]`.",
                param="application_fee_amount",
            )
    extras["application_fee_amount"] = fee
    sfu = _blank_to_none(extras.get("setup_future_usage"))
    if sfu not in (None, "on_session", "off_session"):
        raise _invalid("setup_future_usage")
    extras["setup_future_usage"] = sfu
    extras["statement_descriptor"] = _check_statement_descriptor(
        extras.get("statement_descriptor"), "statement_descriptor", 5
    )
    extras["statement_descriptor_suffix"] = _check_statement_descriptor(
        extras.get("statement_descriptor_suffix"), "statement_descriptor_suffix", 1
    )
    if extras.get("description") is not None and not isinstance(extras["description"], str):
        raise _invalid("description")
    if extras.get("confirmation_method") not in (None, "automatic", "manual"):
        raise _invalid("confirmation_method")


def _pi_init(self, **data):
    extras = {k: data.pop(k) for k in list(data) if k in PI_EXTRA or k in PI_IGNORED}
    amount, currency = data.get("amount"), data.get("currency")
    if amount is None:
        raise _missing("amount")
    if not currency:
        raise _missing("currency")
    currency = str(currency).lower()
    data["currency"] = currency
    amount = _to_int(amount, "amount")
    if amount < MIN_AMOUNTS.get(currency, 1):
        raise _StripeError(
            400,
            f"Amount must be at least {MIN_AMOUNTS.get(currency, 1)} {currency} (in the smallest currency unit)",
            code="amount_too_small",
            param="amount",
        )
    if amount > MAX_AMOUNT:
        raise _StripeError(
            400,
            f"Amount must be no more than {MAX_AMOUNT} {currency} (in the smallest currency unit)",
            code="amount_too_large",
            param="amount",
        )
    _validate_pi_extras(extras, amount, currency)
    pmt = data.get("payment_method_types")
    if pmt is not None:
        if isinstance(pmt, str):
            pmt = [pmt]
        if not isinstance(pmt, list) or not pmt or any(t not in PM_TYPES for t in pmt):
            raise _invalid("payment_method_types")
        data["payment_method_types"] = pmt
    metadata = data.get("metadata")
    if metadata is not None and metadata != "" and not isinstance(metadata, dict):
        raise _invalid("metadata")
    if data.get("customer"):
        try:
            Customer._api_retrieve(data["customer"])
        except UserError:
            raise _StripeError(
                400, f"No such customer: '{data['customer']}'", code="resource_missing", param="customer"
            ) from None
    pm_data = extras.pop("payment_method_data", None)
    if pm_data is not None:
        if not isinstance(pm_data, dict):
            raise _invalid("payment_method_data")
        data["payment_method"] = PaymentMethod(**pm_data).id
    elif data.get("payment_method"):
        data["payment_method"] = _resolve_pm(data["payment_method"]).id
    _orig["pi_init"](self, **data)
    self.payment_method_types = pmt or ["card", "link", "us_bank_account", "sepa_debit"]
    self._explicit_pmt = pmt is not None
    for key, default in PI_EXTRA.items():
        setattr(self, key, extras.get(key, default))
    self.confirmation_method = self.confirmation_method or "automatic"
    self.canceled_at = None
    self.cancellation_reason = None
    self._idempotency_key = _ctx_idem.get()
    self._request_id = _ctx_request_id.get()
    self._charges: list[str] = []
    self._off_session = False
    self._force_failure = None
    self._error_on_requires_action = None
    self._mandate = None


def _pi_api_create(cls, confirm=None, off_session=None, **data):
    confirm = _to_bool(confirm, "confirm")
    off_session = _to_bool(off_session, "off_session") if off_session not in ("one_off", "recurring") else True
    if off_session is not None and not confirm:
        raise _StripeError(400, "You may only specify `off_session` when `confirm` is true.", param="off_session")
    confirm_params = {k: data.pop(k) for k in PI_CONFIRM_ONLY if k in data}
    if confirm_params and not confirm:
        first = next(iter(confirm_params))
        raise _StripeError(400, f"You may only specify `{first}` when `confirm` is true.", param=first)
    obj = cls(**data)
    obj._error_on_requires_action = _to_bool(confirm_params.get("error_on_requires_action"), "error_on_requires_action")
    obj._mandate = confirm_params.get("mandate")
    obj._auth_return_url = confirm_params.get("return_url")
    _emit("payment_intent.created", obj)
    if confirm:
        obj._off_session = bool(off_session)
        obj._confirm(on_failure_now=obj._report_failure)
    return obj


def _pi_check_payment_method(self, pm) -> None:
    if self._explicit_pmt and pm.type not in self.payment_method_types:
        raise _StripeError(
            400,
            f"The PaymentMethod provided ({pm.type}) is not allowed for this PaymentIntent. "
            "Please attach a PaymentMethod of one of the following types: "
            f"{', '.join(self.payment_method_types)}. Alternatively update the allowed "
            f'payment_method_types for this PaymentIntent to include "{pm.type}".',
            code="payment_intent_invalid_parameter",
            param="payment_method",
        )
    required = {"us_bank_account": "usd", "sepa_debit": "eur"}.get(pm.type)
    if required and self.currency != required:
        raise _StripeError(
            400,
            f"The currency provided ({self.currency}) is invalid. Payments with {pm.type} "
            f"support the following currencies: {required}.",
            code="payment_intent_invalid_parameter",
            param="currency",
        )
    if pm.customer and self.customer and pm.customer != self.customer:
        raise _StripeError(
            400,
            f"The provided PaymentMethod {pm.id} belongs to the Customer {pm.customer}. Please "
            "use the Customer ID that this PaymentMethod belongs to.",
            param="payment_method",
        )
    if pm.customer and not self.customer:
        raise _StripeError(
            400,
            f"The PaymentMethod {pm.id} belongs to the Customer {pm.customer}. Please include "
            "the Customer in the `customer` parameter on the PaymentIntent.",
            param="payment_method",
        )


def _pi_confirm(self, on_failure_now):
    self._authentication_failed = False
    if not self.payment_method:
        raise _StripeError(
            400,
            "You cannot confirm this PaymentIntent because it's missing a payment method. "
            "Update it with a payment method and then confirm it again.",
            code="payment_intent_unexpected_state",
        )
    pm = PaymentMethod._api_retrieve(self.payment_method)
    self._check_payment_method(pm)
    if pm._requires_authentication():
        set_up_for_off_session = pm._card_number == "4000002500003155" and pm.customer is not None
        if self._off_session and set_up_for_off_session:
            pass
        elif self._off_session or self._error_on_requires_action:
            self._force_failure = AUTH_REQUIRED_DECLINE
        else:
            from .authentication import next_action

            self.next_action = next_action(self, getattr(self, "_auth_return_url", None))
            _emit("payment_intent.requires_action", self)
            return
    self._create_charge(on_failure_now=on_failure_now)


def _pi_create_charge(self, on_failure_now):
    if self.status != "requires_confirmation":
        raise _StripeError(
            400,
            f"This PaymentIntent's status is {self.status}; it cannot be confirmed.",
            code="payment_intent_unexpected_state",
        )
    charge = Charge(
        amount=self.amount,
        currency=self.currency,
        customer=self.customer,
        source=self.payment_method,
        capture=(self.capture_method != "manual"),
        description=self.description,
        metadata=dict(self.metadata or {}),
    )
    charge.payment_intent = self.id
    charge.transfer_data = self.transfer_data
    charge.application_fee_amount = self.application_fee_amount
    charge.on_behalf_of = self.on_behalf_of
    charge.transfer_group = self.transfer_group
    charge.statement_descriptor = self.statement_descriptor
    charge.statement_descriptor_suffix = self.statement_descriptor_suffix
    charge.receipt_email = self.receipt_email
    charge._account = getattr(self, "_account", None)
    if self._force_failure:
        charge._authorized = False
        charge._forced_failure = self._force_failure
        self._force_failure = None
    self.latest_charge = charge
    self._charges.append(charge.id)
    charge._initialize_charge(self._on_success, on_failure_now, self._report_async_failure)
    if charge.status == "pending":
        _emit("payment_intent.processing", self)


def _pi_on_success(self):
    charge = self.latest_charge
    _book_charge(charge)
    if self.setup_future_usage and self.customer:
        pm = PaymentMethod._api_retrieve(self.payment_method)
        if pm.customer is None:
            pm.customer = self.customer
            _emit("payment_method.attached", pm)
    _emit("charge.succeeded", charge)
    _orig["pi_on_success"](self)
    from .disputes import open_for_test_card

    open_for_test_card(charge)


def _pi_report_failure(self):
    _emit("payment_intent.payment_failed", self)
    if self.invoice:
        ls.Invoice._api_retrieve(self.invoice)._on_payment_failure_now()
    charge = self.latest_charge
    pm = PaymentMethod._api_retrieve(charge.payment_method)
    raise _card_error(
        charge.failure_message,
        charge.failure_code,
        getattr(charge, "_decline_code", None),
        charge=charge.id,
        payment_intent=self._export(),
        payment_method=pm._export(),
    )


def _pi_last_payment_error(self):
    if self._authentication_failed:
        failed = store.get("payment_method:" + str(getattr(self, "_failed_payment_method", None)))
        return {
            "code": "payment_intent_authentication_failure",
            "type": "invalid_request_error",
            "message": "The provided PaymentMethod has failed authentication. You can provide payment_method_data "
            "or a new PaymentMethod to attempt to fulfill this PaymentIntent again.",
            "payment_method": failed._export() if failed is not None else None,
        }
    charge = self.latest_charge
    if charge is not None and charge.status == "failed":
        pm = PaymentMethod._api_retrieve(charge.payment_method)
        return {
            "charge": charge.id,
            "code": charge.failure_code,
            "decline_code": getattr(charge, "_decline_code", None),
            "message": charge.failure_message,
            "type": "card_error" if pm.type == "card" else "invalid_request_error",
            "payment_method": pm._export(),
        }
    return None


def _pi_export(self, expand=None):
    expand = list(expand or [])
    out = _orig["pi_export"](self, expand=expand)
    out.pop("charges", None)
    if not any(e == "latest_charge" or e.startswith("latest_charge.") for e in expand):
        if isinstance(out.get("latest_charge"), dict):
            out["latest_charge"] = out["latest_charge"]["id"]
    status = out.get("status")
    out["amount_received"] = self.amount if status == "succeeded" else 0
    out["amount_capturable"] = self.amount if status == "requires_capture" else 0
    return out


def _pi_api_confirm(
    cls,
    id,
    payment_method=None,
    off_session=None,
    payment_method_data=None,
    client_secret=None,
    setup_future_usage=None,
    receipt_email=None,
    capture_method=None,
    payment_method_types=None,
    error_on_requires_action=None,
    mandate=None,
    mandate_data=None,
    return_url=None,
    payment_method_options=None,
    use_stripe_sdk=None,
    shipping=None,
    radar_options=None,
    **kwargs,
):
    if kwargs:
        raise _unknown(kwargs)
    off_session = _to_bool(off_session, "off_session") if off_session not in ("one_off", "recurring") else True
    obj = cls._api_retrieve(id)
    if client_secret is not None and client_secret != obj.client_secret:
        raise _StripeError(
            400,
            "The client_secret provided does not match the client_secret associated with the PaymentIntent.",
            param="client_secret",
        )
    if payment_method_data is not None:
        if not isinstance(payment_method_data, dict):
            raise _invalid("payment_method_data")
        payment_method = PaymentMethod(**payment_method_data).id
    if obj.status not in ("requires_payment_method", "requires_confirmation"):
        raise _StripeError(
            400,
            f"This PaymentIntent's status is {obj.status}; it cannot be confirmed.",
            code="payment_intent_unexpected_state",
        )
    if payment_method:
        obj.payment_method = _resolve_pm(payment_method).id
    if obj.latest_charge is not None and obj.latest_charge.status == "failed":
        obj.latest_charge = None  # a new attempt
    if setup_future_usage is not None:
        obj.setup_future_usage = _validate_setup_future_usage(setup_future_usage)
    if receipt_email is not None:
        obj.receipt_email = receipt_email
    if capture_method is not None:
        if capture_method not in ("automatic", "automatic_async", "manual"):
            raise _invalid("capture_method")
        obj.capture_method = capture_method
    if shipping is not None:
        obj.shipping = shipping
    if mandate is not None:
        obj._mandate = mandate
    if return_url is not None:
        obj._auth_return_url = return_url
    obj._error_on_requires_action = _to_bool(error_on_requires_action, "error_on_requires_action")
    obj._off_session = bool(off_session)
    obj._confirm(on_failure_now=obj._report_failure)
    return obj


def _validate_setup_future_usage(value: Any) -> str | None:
    value = _blank_to_none(value)
    if value not in (None, "on_session", "off_session"):
        raise _invalid("setup_future_usage")
    return value


def _pi_api_cancel(cls, id, cancellation_reason=None, **kwargs):
    if kwargs:
        raise _unknown(kwargs)
    if cancellation_reason not in (None, "duplicate", "fraudulent", "requested_by_customer", "abandoned"):
        raise _invalid("cancellation_reason")
    obj = cls._api_retrieve(id)
    if obj.status not in ("requires_payment_method", "requires_capture", "requires_confirmation", "requires_action"):
        raise _StripeError(
            400,
            f"You cannot cancel this PaymentIntent because it has a status of {obj.status}.",
            code="payment_intent_unexpected_state",
        )
    obj._canceled = True
    obj.next_action = None
    obj.canceled_at = int(time.time())
    obj.cancellation_reason = cancellation_reason
    _emit("payment_intent.canceled", obj)
    return obj


def _pi_api_update(cls, id, **data):
    obj = cls._api_retrieve(id)
    if obj.status in ("processing", "succeeded", "canceled"):
        raise _StripeError(
            400,
            f"This PaymentIntent's status is {obj.status}; it cannot be updated.",
            code="payment_intent_unexpected_state",
        )
    extras = {
        k: data[k]
        for k in (
            "transfer_data",
            "application_fee_amount",
            "on_behalf_of",
            "setup_future_usage",
            "statement_descriptor",
            "statement_descriptor_suffix",
        )
        if k in data
    }
    if extras:
        merged = {k: getattr(obj, k) for k in ("transfer_data", "application_fee_amount", "on_behalf_of")}
        merged.update(extras)
        _validate_pi_extras(merged, data.get("amount", obj.amount), obj.currency)
        for k in extras:
            data[k] = merged[k]
    if "amount" in data:
        data["amount"] = _to_int(data["amount"], "amount")
    if data.get("payment_method"):
        data["payment_method"] = _resolve_pm(data["payment_method"]).id
        if obj.latest_charge is not None and obj.latest_charge.status == "failed":
            obj.latest_charge = None
    unknown = {k: v for k, v in data.items() if not hasattr(obj, k) or k.startswith("_")}
    if unknown:
        raise _unknown(unknown)
    obj._update(**data)
    return obj


def _pi_list(cls, url, customer=None, created=None, limit=None, starting_after=None, ending_before=None):
    keep = _created_filter(created)
    account = _ctx_account.get()
    objs = [
        p
        for p in _objects("payment_intent")
        if keep(p) and getattr(p, "_account", None) == account and (customer is None or p.customer == customer)
    ]
    return _list_of(url, objs, limit, starting_after, ending_before)
