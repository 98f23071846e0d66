"""Connect: connected accounts, account links, login links, transfers and reversals."""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

from aiohttp import web
from localstripe.resources import (
    Charge,
    StripeObject,
    fingerprint,
    random_id,
    store,
)

from .cards import COUNTRY_CURRENCY, EURO_COUNTRIES
from .core import (
    _account_obj,
    _available,
    _created_filter,
    _credit,
    _invalid,
    _json,
    _list_of,
    _missing,
    _objects,
    _StripeError,
    _to_bool,
    _to_int,
    _unknown,
    ls_server,
)
from .webhooks import _emit


class Account(StripeObject):
    object = "account"
    _id_prefix = "acct_"
    _fields = (
        "type",
        "country",
        "email",
        "business_type",
        "capabilities",
        "metadata",
        "business_profile",
        "company",
        "individual",
        "tos_acceptance",
        "external_account",
        "default_currency",
        "settings",
        "controller",
    )

    def __init__(
        self,
        type=None,
        country=None,
        email=None,
        business_type=None,
        capabilities=None,
        metadata=None,
        business_profile=None,
        company=None,
        individual=None,
        tos_acceptance=None,
        external_account=None,
        default_currency=None,
        settings=None,
        controller=None,
        **kwargs,
    ):
        if kwargs:
            raise _unknown(kwargs)
        if type not in (None, "standard", "express", "custom"):
            raise _invalid("type")
        country = (country or "US").upper()
        if len(country) != 2:
            raise _invalid("country")
        for name, value in (
            ("capabilities", capabilities),
            ("metadata", metadata),
            ("settings", settings),
            ("business_profile", business_profile),
            ("controller", controller),
        ):
            if value is not None and not isinstance(value, dict):
                raise _invalid(name)
        super().__init__()
        self.type = type or ("custom" if controller else "standard")
        self.country = country
        self.email = email
        self.business_type = business_type
        self.business_profile = business_profile or {}
        self.company = company
        self.individual = individual
        self.controller = controller
        self.default_currency = (
            default_currency or COUNTRY_CURRENCY.get(country) or ("eur" if country in EURO_COUNTRIES else "usd")
        ).lower()
        self.capabilities = {}
        self._set_capabilities(capabilities or {})
        self.metadata = metadata or {}
        self.charges_enabled = True
        self.payouts_enabled = True
        self.details_submitted = True
        self.requirements = {
            "currently_due": [],
            "eventually_due": [],
            "past_due": [],
            "pending_verification": [],
            "disabled_reason": None,
            "current_deadline": None,
            "errors": [],
        }
        self.settings = settings or {"payouts": {"schedule": {"interval": "manual"}}}
        self.tos_acceptance = tos_acceptance or {}
        self._bank = None
        self._set_external_account(external_account)

    def _set_capabilities(self, capabilities: dict) -> None:
        for name, value in capabilities.items():
            requested = (
                _to_bool(value.get("requested"), f"capabilities[{name}][requested]")
                if isinstance(value, dict)
                else True
            )
            self.capabilities[name] = "active" if requested is not False else "inactive"

    def _set_external_account(self, external_account: Any) -> None:
        if external_account is None:
            return
        if isinstance(external_account, dict):
            number = str(external_account.get("account_number") or "000123456789")
            routing = str(external_account.get("routing_number") or "110000000")
            currency = str(external_account.get("currency") or self.default_currency).lower()
            country = str(external_account.get("country") or self.country).upper()
        elif isinstance(external_account, str):  # a token such as btok_us_verified
            number, routing, currency, country = "000123456789", "110000000", self.default_currency, self.country
        else:
            raise _invalid("external_account")
        self._bank = {
            "id": "ba_" + random_id(24),
            "object": "bank_account",
            "account": self.id,
            "bank_name": "STRIPE TEST BANK",
            "country": country,
            "currency": currency,
            "default_for_currency": True,
            "fingerprint": fingerprint(routing + ":" + number),
            "last4": number[-4:],
            "routing_number": routing,
            "status": "new",
            "_account_number": number,
        }

    @property
    def external_accounts(self):
        data = [{k: v for k, v in self._bank.items() if not k.startswith("_")}] if self._bank else []
        return {
            "object": "list",
            "data": data,
            "has_more": False,
            "total_count": len(data),
            "url": f"/v1/accounts/{self.id}/external_accounts",
        }

    @classmethod
    def _api_update(cls, id, **data):
        obj = cls._api_retrieve(id)
        unknown = {k: v for k, v in data.items() if k not in cls._fields or k in ("type", "country", "controller")}
        if unknown:
            raise _unknown(unknown)
        if "capabilities" in data:
            obj._set_capabilities(data.pop("capabilities") or {})
        if "external_account" in data:
            obj._set_external_account(data.pop("external_account"))
        metadata = data.pop("metadata", None)
        if isinstance(metadata, dict):
            obj.metadata.update(metadata)
        for key, value in data.items():
            setattr(obj, key, value)
        _emit("account.updated", obj)
        return obj

    @classmethod
    def _api_list_all(cls, url, limit=None, starting_after=None, ending_before=None, created=None):
        keep = _created_filter(created)
        return _list_of(url, [a for a in _objects("account") if keep(a)], limit, starting_after, ending_before)


def _require_account(account_id: Any, param: str, noun: str = "account") -> Account:
    obj = _account_obj(account_id)
    if obj is None:
        raise _StripeError(400, f"No such {noun}: '{account_id}'", code="resource_missing", param=param)
    return obj


class Transfer(StripeObject):
    object = "transfer"
    _id_prefix = "tr_"

    def __init__(
        self,
        amount=None,
        currency=None,
        destination=None,
        description=None,
        metadata=None,
        source_transaction=None,
        transfer_group=None,
        **kwargs,
    ):
        if kwargs:
            raise _unknown(kwargs)
        if amount is None:
            raise _missing("amount")
        amount = _to_int(amount, "amount")
        if amount <= 0:
            raise _invalid("amount", "Amount must be a positive integer.")
        if not currency:
            raise _missing("currency")
        if not destination:
            raise _missing("destination")
        _require_account(destination, "destination", "destination")
        if source_transaction:
            Charge._api_retrieve(source_transaction)
        super().__init__()
        self.amount = amount
        self.amount_reversed = 0
        self.currency = str(currency).lower()
        self.description = description
        self.destination = destination
        self.destination_payment = "py_" + random_id(24)
        self.metadata = metadata or {}
        self.reversed = False
        self.source_transaction = source_transaction
        self.source_type = "card"
        self.transfer_group = transfer_group
        self.balance_transaction = "txn_" + random_id(24)
        self._reversals: list[str] = []
        _credit(None, self.currency, -amount)
        _credit(destination, self.currency, amount)
        _emit("transfer.created", self)

    @property
    def reversals(self):
        data = [store["transfer_reversal:" + r]._export() for r in self._reversals]
        return {
            "object": "list",
            "data": data,
            "has_more": False,
            "total_count": len(data),
            "url": f"/v1/transfers/{self.id}/reversals",
        }

    @classmethod
    def _api_create(cls, **data):
        if not data.get("source_transaction") and data.get("currency") and data.get("amount") is not None:
            amount = _to_int(data["amount"], "amount")
            if amount > _available(None, str(data["currency"])):
                raise _StripeError(
                    400,
                    "You have insufficient available funds in your Stripe account. Try adding "
                    "funds directly to your available balance.",
                    code="balance_insufficient",
                )
        return cls(**data)

    @classmethod
    def _api_list_all(
        cls,
        url,
        destination=None,
        transfer_group=None,
        created=None,
        limit=None,
        starting_after=None,
        ending_before=None,
    ):
        keep = _created_filter(created)
        objs = [
            t
            for t in _objects("transfer")
            if keep(t)
            and (destination is None or t.destination == destination)
            and (transfer_group is None or t.transfer_group == transfer_group)
        ]
        return _list_of(url, objs, limit, starting_after, ending_before)

    @classmethod
    def _api_create_reversal(
        cls, id, amount=None, metadata=None, description=None, refund_application_fee=None, **kwargs
    ):
        if kwargs:
            raise _unknown(kwargs)
        transfer = cls._api_retrieve(id)
        remaining = transfer.amount - transfer.amount_reversed
        amount = remaining if amount is None else _to_int(amount, "amount")
        if amount <= 0 or amount > remaining:
            raise _invalid("amount", f"Amount must be between 1 and {remaining}.")
        return TransferReversal(transfer, amount, metadata)


class TransferReversal(StripeObject):
    object = "transfer_reversal"
    _id_prefix = "trr_"

    def __init__(self, transfer, amount, metadata=None, source_refund=None):
        super().__init__()
        self.amount = amount
        self.currency = transfer.currency
        self.transfer = transfer.id
        self.metadata = metadata or {}
        self.source_refund = source_refund
        self.destination_payment_refund = "pyr_" + random_id(24)
        self.balance_transaction = "txn_" + random_id(24)
        transfer.amount_reversed += amount
        transfer.reversed = transfer.amount_reversed >= transfer.amount
        transfer._reversals.append(self.id)
        _credit(transfer.destination, self.currency, -amount)
        _credit(None, self.currency, amount)
        _emit("transfer.reversed", transfer)


async def _own_account(request: web.Request) -> web.Response:
    account = request.headers.get("Stripe-Account")
    if account:
        return _json(_account_obj(account)._export())
    return _json(
        {
            "id": "acct_platform0000000",
            "object": "account",
            "type": "standard",
            "country": "US",
            "default_currency": "usd",
            "charges_enabled": True,
            "payouts_enabled": True,
            "details_submitted": True,
            "email": "platform@example.com",
            "livemode": False,
            "settings": {"dashboard": {"display_name": "Stripe test server platform"}},
        }
    )


async def _account_link(request: web.Request) -> web.Response:
    data = await ls_server.get_post_data(request) or {}
    account = data.get("account")
    if not account:
        raise _missing("account")
    _require_account(account, "account")
    if data.get("type") not in ("account_onboarding", "account_update"):
        raise _invalid("type")
    now = int(time.time())
    base = f"{request.scheme}://{request.host}"
    return _json(
        {
            "object": "account_link",
            "created": now,
            "expires_at": now + 300,
            "url": f"{base}/_test/onboarding/{account}?return_url="
            + urllib.parse.quote(str(data.get("return_url") or "")),
        }
    )


async def _login_link(request: web.Request) -> web.Response:
    account = request.match_info["id"]
    _require_account(account, "account")
    base = f"{request.scheme}://{request.host}"
    return _json({"object": "login_link", "created": int(time.time()), "url": f"{base}/_test/express/{account}"})


async def _onboarding(request: web.Request) -> web.Response:
    return_url = request.query.get("return_url")
    if return_url:
        raise web.HTTPFound(return_url)
    return web.Response(text="Stripe test server: onboarding complete.")
