"""SetupIntents."""

from __future__ import annotations

from localstripe.errors import UserError
from localstripe.resources import (
    Customer,
    PaymentMethod,
    random_id,
)

from .cards import _decline_info
from .connect import _require_account
from .core import _invalid, _StripeError, _to_bool, _unknown
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
        obj.status = "requires_action"
        obj.next_action = {
            "type": "use_stripe_sdk",
            "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": ""},
        }
        _emit("setup_intent.requires_action", obj)
        return
    obj.status = "succeeded"
    obj.next_action = None
    obj.last_setup_error = None
    if pm.type in ("sepa_debit", "us_bank_account"):
        obj.mandate = "mandate_" + random_id(24)
    if obj.customer and pm.customer is None:
        pm.customer = obj.customer
        _emit("payment_method.attached", pm)
    _emit("setup_intent.succeeded", obj)


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
