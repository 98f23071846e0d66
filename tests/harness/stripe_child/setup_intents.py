"""SetupIntents: saving a card or a bank account (ACH, SEPA) for later off-session payments.

Confirmed with a card: `succeeded` and the PaymentMethod attached to the customer (`payment_method.attached`,
`setup_intent.succeeded`); Stripe's declining cards fail with 402 (`last_setup_error`, `setup_intent.setup_failed`);
3-D Secure cards go to `requires_action` (module `authentication`). Bank accounts (`us_bank_account`,
`sepa_debit`) succeed with a `mandate` (`GET /v1/mandates/{id}`); an ACH account entered by number with
`payment_method_options[us_bank_account][verification_method]=microdeposits` waits in `requires_action`
(`verify_with_microdeposits`) until `POST /v1/setup_intents/{id}/verify_microdeposits` with Stripe's test values
(`amounts` [32, 45] or `descriptor_code` SM11AA); three wrong attempts fail it. Fingerprints are those of
payment methods (stable per card number, routing + account number, IBAN).
"""

from __future__ import annotations

from localstripe.errors import UserError
from localstripe.resources import Customer, PaymentMethod, StripeObject

from .cards import _decline_info
from .connect import _require_account
from .core import S, _invalid, _now, _StripeError, _to_bool, _to_int, _unknown
from .payments import PM_TYPES, _card_error, _orig, _resolve_pm
from .webhooks import _emit

# ------------------------------------------------------------------------------------------------ setup intents
SI_EXTRA = (
    "description",
    "mandate_data",
    "on_behalf_of",
    "return_url",
    "automatic_payment_methods",
    "payment_method_options",
    "single_use",
    "flow_directions",
    "attach_to_self",
    "use_stripe_sdk",
    "payment_method_configuration",
)


def _si_init(
    self,
    customer=None,
    usage=None,
    payment_method_types=None,
    metadata=None,
    payment_method=None,
    payment_method_data=None,
    **kwargs,
):
    extras = {k: kwargs.pop(k) for k in list(kwargs) if k in SI_EXTRA}
    if kwargs:
        raise _unknown(kwargs)
    if payment_method_types is not None:
        if isinstance(payment_method_types, str):
            payment_method_types = [payment_method_types]
        if not isinstance(payment_method_types, list) or any(t not in PM_TYPES for t in payment_method_types):
            raise _invalid("payment_method_types")
    if extras.get("on_behalf_of"):
        _require_account(extras["on_behalf_of"], "on_behalf_of")
    if customer:
        try:
            Customer._api_retrieve(customer)
        except UserError:
            raise _StripeError(
                400, f"No such customer: '{customer}'", code="resource_missing", param="customer"
            ) from None
    pm = None
    if payment_method_data is not None:
        pm = PaymentMethod(**payment_method_data)
    elif payment_method:
        pm = _resolve_pm(payment_method)
    _orig["si_init"](self, customer=customer, usage=usage, payment_method_types=None, metadata=metadata)
    self.payment_method_types = payment_method_types or ["card", "link", "us_bank_account", "sepa_debit"]
    self._explicit_pmt = payment_method_types is not None
    for key in SI_EXTRA:
        setattr(self, key, extras.get(key))
    _check_verification_method(self.payment_method_options)
    self._microdeposit_attempts = 0
    self.last_setup_error = None
    self.mandate = None
    self.cancellation_reason = None
    if pm is not None:
        self.payment_method = pm.id
        self.status = "requires_confirmation"


def _si_api_create(cls, confirm=None, **data):
    confirm = _to_bool(confirm, "confirm")
    obj = cls(**data)
    _emit("setup_intent.created", obj)
    if confirm:
        _si_do_confirm(obj)
    return obj


def _si_do_confirm(obj) -> None:
    if obj.status not in ("requires_payment_method", "requires_confirmation"):
        raise _StripeError(
            400,
            f"This SetupIntent's status is {obj.status}; it cannot be confirmed.",
            code="setup_intent_unexpected_state",
        )
    if not obj.payment_method:
        raise _StripeError(
            400,
            "You cannot confirm this SetupIntent because it's missing a payment method.",
            code="setup_intent_unexpected_state",
        )
    pm = PaymentMethod._api_retrieve(obj.payment_method)
    if obj._explicit_pmt and pm.type not in obj.payment_method_types:
        raise _StripeError(
            400,
            f"The PaymentMethod provided ({pm.type}) is not allowed for this SetupIntent.",
            code="setup_intent_invalid_parameter",
            param="payment_method",
        )
    if obj.customer and pm.customer and pm.customer != obj.customer:
        raise _StripeError(
            400,
            "The payment method you provided has already been attached to a customer.",
            code="payment_method_unexpected_state",
            param="payment_method",
        )
    if pm._attaching_is_declined():
        code, decline_code, message = _decline_info(pm)
        obj.status = "requires_payment_method"
        obj.last_setup_error = {
            "code": code,
            "decline_code": decline_code,
            "message": message,
            "type": "card_error",
            "payment_method": pm._export(),
        }
        _emit("setup_intent.setup_failed", obj)
        raise _card_error(message, code, decline_code, setup_intent=obj._export(), payment_method=pm._export())
    if pm._requires_authentication():
        from .authentication import next_action

        obj.status = "requires_action"
        obj.next_action = next_action(obj, obj.return_url)
        _emit("setup_intent.requires_action", obj)
        return
    if pm.type == "us_bank_account" and _verification_method(obj) == "microdeposits":
        if not pm.us_bank_account.get("financial_connections_account"):
            obj.status = "requires_action"
            obj.next_action = {
                "type": "verify_with_microdeposits",
                "verify_with_microdeposits": {
                    "arrival_date": _now() + 86_400,
                    "hosted_verification_url": f"{S.base_url}/_test/microdeposits/{obj.id}",
                    "microdeposit_type": "descriptor_code",
                },
            }
            _emit("setup_intent.requires_action", obj)
            return
    _si_succeed(obj, pm)


def _si_succeed(obj, pm) -> None:
    obj.status = "succeeded"
    obj.next_action = None
    obj.last_setup_error = None
    if pm.type in ("sepa_debit", "us_bank_account"):
        obj.mandate = Mandate(pm, obj.mandate_data, obj.customer).id
    if obj.customer and pm.customer is None:
        pm.customer = obj.customer
        _emit("payment_method.attached", pm)
    _emit("setup_intent.succeeded", obj)


def _si_failed(obj, pm, code: str, message: str) -> None:
    obj.status = "requires_payment_method"
    obj.next_action = None
    obj.payment_method = None
    obj.last_setup_error = {
        "code": code,
        "message": message,
        "type": "invalid_request_error",
        "payment_method": pm._export(),
    }
    _emit("setup_intent.setup_failed", obj)


def _si_authenticated(obj, success: bool) -> None:
    """The end of a 3-D Secure challenge (module `authentication`)."""
    pm = PaymentMethod._api_retrieve(obj.payment_method)
    if success:
        _si_succeed(obj, pm)
    else:
        _si_failed(
            obj,
            pm,
            "setup_intent_authentication_failure",
            "The latest attempt to set up the payment method has failed because authentication failed.",
        )


def _verification_method(obj) -> str:
    options = (obj.payment_method_options or {}).get("us_bank_account") or {}
    return options.get("verification_method") or "automatic"


def _check_verification_method(options) -> None:
    if options is None:
        return
    if not isinstance(options, dict):
        raise _invalid("payment_method_options")
    method = (options.get("us_bank_account") or {}).get("verification_method")
    if method not in (None, "automatic", "instant", "microdeposits"):
        raise _invalid("payment_method_options[us_bank_account][verification_method]")


MICRODEPOSIT_AMOUNTS = [32, 45]
MICRODEPOSIT_CODE = "SM11AA"
MICRODEPOSIT_ATTEMPTS = 3


def _si_verify_microdeposits(cls, id, amounts=None, descriptor_code=None, client_secret=None, **kwargs):
    if kwargs:
        raise _unknown(kwargs)
    obj = cls._api_retrieve(id)
    if client_secret and client_secret != obj.client_secret:
        raise UserError(401, "Unauthorized")
    if obj.status != "requires_action" or (obj.next_action or {}).get("type") != "verify_with_microdeposits":
        raise _StripeError(
            400,
            f"This SetupIntent's status is {obj.status}; there are no microdeposits to verify.",
            code="setup_intent_unexpected_state",
        )
    if amounts is None and descriptor_code is None:
        raise _StripeError(400, "Provide amounts or descriptor_code.", code="parameter_missing", param="amounts")
    if amounts is not None:
        if not isinstance(amounts, list) or len(amounts) != 2:
            raise _invalid("amounts", "Provide the two microdeposit amounts.")
        ok = sorted(_to_int(a, "amounts") for a in amounts) == MICRODEPOSIT_AMOUNTS
        mismatch = "payment_method_microdeposit_verification_amounts_mismatch"
    else:
        ok = str(descriptor_code) == MICRODEPOSIT_CODE
        mismatch = "payment_method_microdeposit_verification_descriptor_code_mismatch"
    pm = PaymentMethod._api_retrieve(obj.payment_method)
    if ok:
        _si_succeed(obj, pm)
        return obj
    obj._microdeposit_attempts += 1
    left = MICRODEPOSIT_ATTEMPTS - obj._microdeposit_attempts
    if left <= 0:
        code = "payment_method_microdeposit_verification_attempts_exceeded"
        message = "You have exceeded the number of allowed verification attempts."
        _si_failed(obj, pm, code, message)
        raise _StripeError(400, message, code=code, setup_intent=obj._export())
    raise _StripeError(
        400,
        "The amounts provided do not match the amounts that were sent to the bank account. "
        f"You have {left} verification attempts remaining."
        if amounts is not None
        else f"The descriptor code provided does not match. You have {left} verification attempts remaining.",
        code=mismatch,
    )


class Mandate(StripeObject):
    """The mandate a bank-account SetupIntent leaves behind (`GET /v1/mandates/{id}`)."""

    object = "mandate"
    _id_prefix = "mandate_"

    def __init__(self, pm, mandate_data=None, customer=None):
        super().__init__()
        acceptance = (mandate_data or {}).get("customer_acceptance") or {}
        kind = acceptance.get("type") or "offline"
        self.customer_acceptance = {
            "accepted_at": _now(),
            "type": kind,
            kind: acceptance.get(kind) or {},
        }
        self.multi_use = {}
        self.on_behalf_of = None
        self.payment_method = pm.id
        details = (
            {"reference": self.id[len("mandate_") :].upper()[:16], "url": f"{S.base_url}/_test/mandates/{self.id}"}
            if pm.type == "sepa_debit"
            else {"collection_method": None}
        )
        self.payment_method_details = {"type": pm.type, pm.type: details}
        self.status = "active"
        self.type = "multi_use"


def _si_api_confirm(
    cls,
    id,
    payment_method=None,
    payment_method_data=None,
    client_secret=None,
    use_stripe_sdk=None,
    mandate_data=None,
    return_url=None,
    payment_method_options=None,
    **kwargs,
):
    if kwargs:
        raise _unknown(kwargs)
    obj = cls._api_retrieve(id)
    if client_secret and client_secret != obj.client_secret:
        raise UserError(401, "Unauthorized")
    if payment_method_data is not None:
        obj.payment_method = PaymentMethod(**payment_method_data).id
    elif payment_method is not None:
        obj.payment_method = _resolve_pm(payment_method).id
    if return_url is not None:
        obj.return_url = return_url
    if mandate_data is not None:
        obj.mandate_data = mandate_data
    if payment_method_options is not None:
        _check_verification_method(payment_method_options)
        obj.payment_method_options = payment_method_options
    if obj.status == "requires_payment_method" and obj.payment_method:
        obj.status = "requires_confirmation"
    _si_do_confirm(obj)
    return obj


def _si_api_cancel(cls, id, cancellation_reason=None, client_secret=None, use_stripe_sdk=None, **kwargs):
    if kwargs:
        raise _unknown(kwargs)
    obj = cls._api_retrieve(id)
    if obj.status in ("succeeded", "canceled", "processing"):
        raise _StripeError(
            400,
            f"This SetupIntent's status is {obj.status}; it cannot be canceled.",
            code="setup_intent_unexpected_state",
        )
    obj.status = "canceled"
    obj.next_action = None
    obj.cancellation_reason = cancellation_reason
    _emit("setup_intent.canceled", obj)
    return obj
