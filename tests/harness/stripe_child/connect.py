"""Connect: connected accounts and their onboarding (Account Links, a local hosted-onboarding page), login links,
transfers, the connected account's side of a transfer (`py_` payments) and reversals (`pyr_` payment refunds).

Onboarding states (`S.connect_onboarding` true: new accounts start at `not_started`; false: at `complete`, the old
"enabled at once" behaviour). The requirement lists are those Stripe shows on a new US account:

- `not_started`: nothing submitted; charges and payouts disabled; requirements currently/eventually/past due,
  `disabled_reason` `requirements.past_due`; capabilities `inactive`.
- `pending_verification`: details submitted, Stripe verifying; nothing due, `pending_verification` listed,
  `disabled_reason` `requirements.pending_verification`; capabilities `pending`.
- `complete`: charges and payouts enabled, nothing due, capabilities `active`, a bank account on file.
- `restricted_soon`: enabled, but a document is currently due by `current_deadline` (14 days).
- `restricted`: details submitted, then verification failed: the document is past due (with an `errors` entry),
  `disabled_reason` `requirements.past_due`, charges and payouts disabled, capabilities `inactive`.

Each change emits `account.updated` (with `previous_attributes`) and `capability.updated` for each capability whose
status changed, all carrying `account`.
"""

from __future__ import annotations

import html
from typing import Any

from aiohttp import web
from localstripe.resources import Charge, StripeObject, fingerprint, random_id, store

from . import ledger
from .cards import COUNTRY_CURRENCY, EURO_COUNTRIES
from .core import (
    S,
    _account_obj,
    _background_context,
    _created_filter,
    _invalid,
    _json,
    _list_of,
    _missing,
    _now,
    _objects,
    _StripeError,
    _to_bool,
    _to_int,
    _unknown,
    ls_server,
)
from .webhooks import _emit

ONBOARDING_STATES = ("not_started", "pending_verification", "complete", "restricted_soon", "restricted")
DUE_COMPANY = [
    "business_profile.mcc",
    "business_profile.url",
    "business_type",
    "external_account",
    "representative.first_name",
    "representative.last_name",
    "tos_acceptance.date",
    "tos_acceptance.ip",
]
DUE_INDIVIDUAL = [
    "business_profile.mcc",
    "business_profile.url",
    "external_account",
    "individual.address.city",
    "individual.address.line1",
    "individual.address.postal_code",
    "individual.address.state",
    "individual.dob.day",
    "individual.dob.month",
    "individual.dob.year",
    "individual.email",
    "individual.first_name",
    "individual.last_name",
    "individual.phone",
    "individual.ssn_last_4",
    "tos_acceptance.date",
    "tos_acceptance.ip",
]
DEFAULT_CAPABILITIES = ("card_payments", "transfers")
SCHEDULE_INTERVALS = ("manual", "daily", "weekly", "monthly")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
TEST_BANK_ACCOUNT = "000123456789"
LINK_LIFETIME = 300  # seconds; Stripe's Account Links expire after a few minutes and work once


def _requirements(**due: Any) -> dict:
    return {
        "alternatives": [],
        "current_deadline": due.get("current_deadline"),
        "currently_due": list(due.get("currently_due", ())),
        "disabled_reason": due.get("disabled_reason"),
        "errors": list(due.get("errors", ())),
        "eventually_due": list(due.get("eventually_due", ())),
        "past_due": list(due.get("past_due", ())),
        "pending_verification": list(due.get("pending_verification", ())),
    }


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
        if business_type not in (None, "individual", "company", "non_profit", "government_entity"):
            raise _invalid("business_type")
        super().__init__()
        dashboard = ((controller or {}).get("stripe_dashboard") or {}).get("type")
        by_dashboard = {"express": "express", "full": "standard"}
        self.type = type or by_dashboard.get(dashboard, "custom" if controller else "standard")
        self.country = country
        self.email = email
        self.business_type = business_type
        self.business_profile = business_profile or {}
        self.company = company
        self.individual = individual
        self.controller = dict(controller, is_controller=True, type="application") if controller else None
        self.default_currency = (
            default_currency or COUNTRY_CURRENCY.get(country) or ("eur" if country in EURO_COUNTRIES else "usd")
        ).lower()
        self.capabilities = {}
        self._requested: list[str] = []
        self._set_capabilities(capabilities or {name: {"requested": True} for name in DEFAULT_CAPABILITIES})
        self.metadata = metadata or {}
        self.settings = {
            "dashboard": {"display_name": (business_profile or {}).get("name"), "timezone": "Etc/UTC"},
            "payouts": {
                "debit_negative_balances": True,
                "schedule": dict(S.payout_schedule),
                "statement_descriptor": None,
            },
        }
        self._merge_settings(settings or {})
        self.tos_acceptance = tos_acceptance or {"date": None, "ip": None, "user_agent": None}
        self.future_requirements = _requirements()
        self._bank: dict | None = None
        self._set_external_account(external_account)
        self._apply_state("not_started" if S.connect_onboarding else "complete", emit=False)

    # --------------------------------------------------------------------------------------- state
    @property
    def _event_account(self) -> str:
        return self.id

    def _capability_status(self) -> str:
        return {
            "not_started": "inactive",
            "pending_verification": "pending",
            "complete": "active",
            "restricted_soon": "active",
            "restricted": "inactive",
        }[self._state]

    def _snapshot(self) -> dict:
        return {
            "charges_enabled": self.charges_enabled,
            "payouts_enabled": self.payouts_enabled,
            "details_submitted": self.details_submitted,
            "requirements": dict(self.requirements),
            "capabilities": dict(self.capabilities),
        }

    def _apply_state(self, state: str, *, bank_account: str | None = None, emit: bool = True) -> None:
        if state not in ONBOARDING_STATES:
            raise _invalid("state", f"state must be one of {', '.join(ONBOARDING_STATES)}.")
        before = self._snapshot() if emit else None
        self._state = state
        individual = self.business_type == "individual"
        document = "individual.verification.document" if individual else "representative.verification.document"
        if state == "not_started":
            due = DUE_INDIVIDUAL if individual else DUE_COMPANY
            self.requirements = _requirements(
                currently_due=due, eventually_due=due, past_due=due, disabled_reason="requirements.past_due"
            )
        elif state == "pending_verification":
            pending = (
                ["individual.id_number", document]
                if individual
                else ["company.tax_id", "representative.id_number", document]
            )
            self.requirements = _requirements(
                pending_verification=pending, disabled_reason="requirements.pending_verification"
            )
        elif state == "restricted_soon":
            self.requirements = _requirements(
                currently_due=[document], eventually_due=[document], current_deadline=_now() + 14 * 86_400
            )
        elif state == "restricted":
            self.requirements = _requirements(
                currently_due=[document],
                eventually_due=[document],
                past_due=[document],
                disabled_reason="requirements.past_due",
                errors=[
                    {
                        "code": "verification_document_failed_other",
                        "reason": "The document could not be verified. Upload another document.",
                        "requirement": document,
                    }
                ],
            )
        else:
            self.requirements = _requirements()
        self.details_submitted = state != "not_started"
        enabled = state in ("complete", "restricted_soon")
        self.charges_enabled = enabled
        self.payouts_enabled = enabled
        if state != "not_started":
            self.business_type = self.business_type or "individual"
            if not self.tos_acceptance.get("date"):
                self.tos_acceptance = {"date": _now(), "ip": "127.0.0.1", "user_agent": "Stripe test server"}
        new_bank = state in ("complete", "pending_verification") and (bank_account or self._bank is None)
        if new_bank:
            self._set_external_account({"account_number": bank_account or TEST_BANK_ACCOUNT})
        status = self._capability_status()
        for name in self._requested:
            self.capabilities[name] = status
        if before is None:
            return
        after = self._snapshot()
        previous = {k: v for k, v in before.items() if after[k] != v}
        if new_bank:
            _emit("account.external_account.created", _BankAccountView(self))
        if previous:
            _emit("account.updated", self, previous=previous)
        for name, old in before["capabilities"].items():
            if self.capabilities.get(name) != old:
                _emit("capability.updated", Capability(self, name), previous={"status": old})

    def _set_capabilities(self, capabilities: dict) -> None:
        for name, value in capabilities.items():
            requested = (
                _to_bool(value.get("requested"), f"capabilities[{name}][requested]")
                if isinstance(value, dict)
                else True
            )
            if requested is False:
                self.capabilities[name] = "inactive"
                if name in self._requested:
                    self._requested.remove(name)
            else:
                if name not in self._requested:
                    self._requested.append(name)
                self.capabilities[name] = self._capability_status() if hasattr(self, "_state") else "inactive"

    def _merge_settings(self, settings: dict) -> None:
        for key, value in settings.items():
            if key != "payouts":
                self.settings[key] = value
                continue
            if not isinstance(value, dict):
                raise _invalid("settings[payouts]")
            payouts = self.settings["payouts"]
            for pkey, pvalue in value.items():
                if pkey != "schedule":
                    payouts[pkey] = pvalue
                    continue
                schedule = dict(payouts["schedule"])
                for skey, svalue in (pvalue or {}).items():
                    param = f"settings[payouts][schedule][{skey}]"
                    if skey == "interval":
                        if svalue not in SCHEDULE_INTERVALS:
                            raise _invalid(param)
                    elif skey == "delay_days":
                        svalue = 2 if svalue == "minimum" else _to_int(svalue, param)
                        if not 0 <= svalue <= 365:
                            raise _invalid(param)
                    elif skey == "weekly_anchor":
                        if svalue not in WEEKDAYS:
                            raise _invalid(param)
                    elif skey == "monthly_anchor":
                        svalue = _to_int(svalue, param)
                        if not 1 <= svalue <= 31:
                            raise _invalid(param)
                    else:
                        raise _unknown({param: svalue})
                    schedule[skey] = svalue
                if schedule.get("interval") == "weekly":
                    schedule.setdefault("weekly_anchor", "monday")
                if schedule.get("interval") == "monthly":
                    schedule.setdefault("monthly_anchor", 1)
                payouts["schedule"] = schedule

    def _set_external_account(self, external_account: Any) -> None:
        if external_account is None:
            return
        if isinstance(external_account, dict):
            number = str(external_account.get("account_number") or TEST_BANK_ACCOUNT)
            routing = str(external_account.get("routing_number") or "110000000")
            currency = str(external_account.get("currency") or self.default_currency).lower()
            country = str(external_account.get("country") or self.country).upper()
        elif isinstance(external_account, str):  # a token such as btok_us_verified
            number, routing, currency, country = TEST_BANK_ACCOUNT, "110000000", self.default_currency, self.country
        else:
            raise _invalid("external_account")
        self._bank = {
            "id": "ba_" + random_id(24),
            "object": "bank_account",
            "account": self.id,
            "account_holder_name": None,
            "account_holder_type": None,
            "bank_name": "STRIPE TEST BANK",
            "country": country,
            "currency": currency,
            "default_for_currency": True,
            "fingerprint": fingerprint(routing + ":" + number),
            "last4": number[-4:],
            "metadata": {},
            "routing_number": routing,
            "status": "new",
            "_account_number": number,
        }

    def _bank_export(self) -> dict | None:
        return {k: v for k, v in self._bank.items() if not k.startswith("_")} if self._bank else None

    @property
    def external_accounts(self):
        data = [self._bank_export()] if self._bank else []
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
        before = obj._snapshot()
        if "settings" in data:
            settings = data.pop("settings") or {}
            if not isinstance(settings, dict):
                raise _invalid("settings")
            obj._merge_settings(settings)
        if "capabilities" in data:
            obj._set_capabilities(data.pop("capabilities") or {})
        if "external_account" in data:
            obj._set_external_account(data.pop("external_account"))
            _emit("account.external_account.created", _BankAccountView(obj))
        metadata = data.pop("metadata", None)
        if isinstance(metadata, dict):
            obj.metadata.update(metadata)
        for key, value in data.items():
            setattr(obj, key, value)
        after = obj._snapshot()
        _emit("account.updated", obj, previous={k: v for k, v in before.items() if after[k] != v} or None)
        return obj

    @classmethod
    def _api_list_all(cls, url, limit=None, starting_after=None, ending_before=None, created=None):
        keep = _created_filter(created)
        return _list_of(url, [a for a in _objects("account") if keep(a)], limit, starting_after, ending_before)


class Capability:
    """An account's capability, as `GET /v1/accounts/{id}/capabilities` and `capability.updated` show it."""

    def __init__(self, account: Account, name: str) -> None:
        self._event_account = account.id
        self._body = {
            "id": name,
            "object": "capability",
            "account": account.id,
            "requested": name in account._requested,
            "requested_at": account.created if name in account._requested else None,
            "status": account.capabilities.get(name, "unrequested"),
            "requirements": dict(account.requirements),
            "future_requirements": dict(account.future_requirements),
        }

    def _export(self, expand=None) -> dict:
        return dict(self._body)


class _BankAccountView:
    """The account's bank account as the `account.external_account.*` events show it."""

    def __init__(self, account: Account) -> None:
        self._event_account = account.id
        self._body = account._bank_export()

    def _export(self, expand=None) -> dict:
        return dict(self._body or {})


def _require_account(account_id: Any, param: str, noun: str = "account") -> Account:
    obj = _account_obj(account_id)
    if obj is None:
        raise _StripeError(400, f"No such {noun}: '{account_id}'", code="resource_missing", param=param)
    return obj


def _require_transfers(account: Account, param: str) -> None:
    """Stripe refuses transfers (and destination charges) to an account whose `transfers` capability is not active."""
    if account.capabilities.get("transfers") != "active" and account.capabilities.get("legacy_payments") != "active":
        raise _StripeError(
            400,
            "Your destination account needs to have at least one of the following capabilities enabled: "
            "transfers, crypto_transfers, legacy_payments",
            code="insufficient_capabilities_for_transfer",
            param=param,
        )


def onboard(account: Account, state: str, *, bank_account: str | None = None) -> Account:
    """Move an account to an onboarding state (the hosted page and `POST /_test/accounts/{id}/onboarding`)."""
    account._apply_state(state, bank_account=bank_account)
    return account


# ------------------------------------------------------------------------------------------------ the account's side
class ConnectPayment(StripeObject):
    """What a transfer is on the connected account: a `py_` charge (the transfer's `destination_payment`)."""

    object = "charge"
    _id_prefix = "py_"

    def __init__(self, transfer: Transfer, available_on: int, source_type: str) -> None:
        super().__init__()
        self._account = transfer.destination
        self._is_payment = True
        self.amount = transfer.amount
        self.amount_captured = transfer.amount
        self.application_fee = None
        self.application_fee_amount = None
        self.captured = True
        self.currency = transfer.currency
        self.customer = None
        self.description = None
        self.destination = None
        self.disputed = False
        self.failure_code = None
        self.failure_message = None
        self.metadata = {}
        self.on_behalf_of = None
        self.paid = True
        self.payment_intent = None
        self.payment_method = None
        self.payment_method_details = {"type": "stripe_account", "stripe_account": {}}
        self.source_transfer = transfer.id
        self.status = "succeeded"
        self.transfer_group = transfer.transfer_group
        self._refunds: list[str] = []
        txn = ledger.record(
            self._account,
            self.currency,
            self.amount,
            "payment",
            self.id,
            available_on=available_on,
            source_type=source_type,
        )
        self.balance_transaction = txn.id

    @property
    def amount_refunded(self) -> int:
        return sum(store["refund:" + r].amount for r in self._refunds)

    @property
    def refunded(self) -> bool:
        return self.amount_refunded >= self.amount

    @property
    def refunds(self) -> dict:
        data = [store["refund:" + r]._export() for r in reversed(self._refunds)]
        return {"object": "list", "data": data, "has_more": False, "url": f"/v1/charges/{self.id}/refunds"}


class PaymentRefund(StripeObject):
    """What a transfer reversal is on the connected account: a `pyr_` refund of its `py_` payment."""

    object = "refund"
    _id_prefix = "pyr_"

    def __init__(self, payment: ConnectPayment, amount: int) -> None:
        super().__init__()
        self._account = payment._account
        self.amount = amount
        self.charge = payment.id
        self.currency = payment.currency
        self.metadata = {}
        self.payment_intent = None
        self.reason = None
        self.status = "succeeded"
        self.failure_reason = None
        payment._refunds.append(self.id)
        self.balance_transaction = ledger.record(self._account, self.currency, -amount, "payment_refund", self.id).id


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
        source_type=None,
        _destination_charge=False,
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
        dest = _require_account(destination, "destination", "destination")
        if not _destination_charge:
            _require_transfers(dest, "destination")
        charge = None
        if source_transaction:
            charge = Charge._api_retrieve(source_transaction)
            if charge.status != "succeeded":
                raise _invalid(
                    "source_transaction",
                    f"The source_transaction {charge.id} must be a succeeded charge.",
                )
            already = getattr(charge, "_transferred", 0)
            if already + amount > charge.amount:
                raise _invalid(
                    "amount",
                    f"The transfer amount ({amount}) exceeds what remains of the source transaction "
                    f"{charge.id} ({charge.amount - already}).",
                )
        super().__init__()
        self.amount = amount
        self.amount_reversed = 0
        self.currency = str(currency).lower()
        self.description = description
        self.destination = destination
        self.metadata = metadata or {}
        self.reversed = False
        self.source_transaction = source_transaction
        self.source_type = source_type or "card"
        self.transfer_group = transfer_group
        self._reversals: list[str] = []
        if charge is not None:
            charge._transferred = getattr(charge, "_transferred", 0) + amount
        # A transfer funded by a charge (destination charges, source_transaction) is pending as long as the charge.
        source_txn = store.get("balance_transaction:" + str(charge.balance_transaction)) if charge else None
        funds_on = source_txn.available_on if source_txn is not None else _now()
        txn = ledger.record(None, self.currency, -amount, "transfer", self.id, available_on=funds_on)
        self.balance_transaction = txn.id
        payment = ConnectPayment(
            self,
            max(funds_on, ledger.available_on_for(destination)),
            "bank_account" if self.source_type == "bank_account" else "card",
        )
        self.destination_payment = payment.id
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
            if amount > ledger.available(None, str(data["currency"])):
                raise _StripeError(
                    400,
                    "You have insufficient available funds in your Stripe account. Try adding "
                    "funds directly to your available balance.",
                    code="balance_insufficient",
                )
        data.pop("_destination_charge", None)
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

    @classmethod
    def _api_list_reversals(cls, id, limit=None, starting_after=None, ending_before=None, **kwargs):
        if kwargs:
            raise _unknown(kwargs)
        transfer = cls._api_retrieve(id)
        rows = [store["transfer_reversal:" + r] for r in transfer._reversals]
        return _list_of(f"/v1/transfers/{id}/reversals", rows, limit, starting_after, ending_before)


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
        transfer.amount_reversed += amount
        transfer.reversed = transfer.amount_reversed >= transfer.amount
        transfer._reversals.append(self.id)
        payment = store.get("charge:" + str(transfer.destination_payment))
        self.destination_payment_refund = PaymentRefund(payment, amount).id
        self.balance_transaction = ledger.record(None, self.currency, amount, "transfer_refund", self.id).id
        _emit("transfer.reversed", transfer)


# ------------------------------------------------------------------------------------------------ routes
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


async def _capabilities(request: web.Request) -> web.Response:
    account = Account._api_retrieve(request.match_info["id"])
    data = [Capability(account, name)._export() for name in sorted(account.capabilities)]
    return _json({"object": "list", "data": data, "has_more": False, "url": request.path})


async def _capability(request: web.Request) -> web.Response:
    account = Account._api_retrieve(request.match_info["id"])
    name = request.match_info["capability"]
    if name not in account.capabilities:
        raise _StripeError(404, f"No such capability: '{name}'", code="resource_missing", param="capability")
    return _json(Capability(account, name)._export())


async def _account_link(request: web.Request) -> web.Response:
    data = await ls_server.get_post_data(request) or {}
    data.pop("expand", None)
    known = {"account", "type", "refresh_url", "return_url", "collect", "collection_options"}
    unknown = {k: v for k, v in data.items() if k not in known}
    if unknown:
        raise _unknown(unknown)
    account = data.get("account")
    if not account:
        raise _missing("account")
    if not data.get("type"):
        raise _missing("type")
    acct = _require_account(account, "account")
    if data["type"] not in ("account_onboarding", "account_update"):
        raise _invalid("type")
    if data["type"] == "account_update" and acct.type == "express":
        raise _invalid("type", "You cannot create `account_update` type Account Links for Express accounts.")
    for name in ("refresh_url", "return_url"):
        value = data.get(name)
        if value is not None and not str(value).startswith(("http://", "https://")):
            raise _invalid(name, f"Not a valid URL: {name}")
    if data.get("collect") not in (None, "currently_due", "eventually_due"):
        raise _invalid("collect")
    now = _now()
    token = random_id(24)
    S.account_links[token] = {
        "account": account,
        "type": data["type"],
        "refresh_url": data.get("refresh_url"),
        "return_url": data.get("return_url"),
        "expires_at": now + LINK_LIFETIME,
        "status": "new",
        "session": None,
    }
    base = f"{request.scheme}://{request.host}"
    return _json(
        {
            "object": "account_link",
            "created": now,
            "expires_at": now + LINK_LIFETIME,
            "url": f"{base}/_test/connect/onboarding/{token}",
        }
    )


async def _login_link(request: web.Request) -> web.Response:
    account = request.match_info["id"]
    acct = _require_account(account, "account")
    if not acct.details_submitted:
        raise _StripeError(
            400, "Cannot create a login link for an account that has not completed onboarding.", param="account"
        )
    base = f"{request.scheme}://{request.host}"
    return _json({"object": "login_link", "created": _now(), "url": f"{base}/_test/express/{account}"})


def _page(title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        content_type="text/html",
        text=(
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:40rem;margin:2rem auto;line-height:1.4}"
            "button{display:block;margin:.5rem 0;padding:.6rem 1rem;font-size:1rem;width:100%}"
            "code{background:#f3f3f3;padding:0 .2rem}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
        ),
    )


def _redirect(url: str | None, fallback_text: str) -> web.Response:
    if url:
        raise web.HTTPSeeOther(url)
    return _page("Stripe test server", f"<p>{html.escape(fallback_text)}</p>")


async def _onboarding_page(request: web.Request) -> web.Response:
    """The hosted onboarding an Account Link leads to: single use, expires; used or expired → refresh_url."""
    link = S.account_links.get(request.match_info["token"])
    if link is None:
        return _page("Link not found", "<p>This onboarding link does not exist.</p>", status=404)
    if link["status"] != "new" or _now() > link["expires_at"]:
        link["status"] = "expired" if link["status"] == "new" else link["status"]
        return _redirect(link["refresh_url"], "This onboarding link has expired or was already used.")
    link["status"] = "opened"
    link["session"] = random_id(24)
    acct = _account_obj(link["account"])
    due = "".join(f"<li><code>{html.escape(f)}</code></li>" for f in acct.requirements["currently_due"]) or "<li>—</li>"
    hidden = f"<input type='hidden' name='session' value='{link['session']}'>"
    buttons = [
        ("complete", "Complete onboarding (payouts enabled)"),
        ("pending_verification", "Submit details, verification pending"),
        ("restricted", "Submit details, verification fails (restricted)"),
        ("leave", "Leave without finishing"),
    ]
    forms = "".join(
        f"<form method='post'>{hidden}<input type='hidden' name='action' value='{action}'>"
        + (
            "<label>Bank account number <input name='bank_account' value='000123456789'></label>"
            if action == "complete"
            else ""
        )
        + f"<button type='submit' name='go' value='{action}'>{html.escape(label)}</button></form>"
        for action, label in buttons
    )
    body = (
        f"<p>Account <code>{acct.id}</code> ({html.escape(acct.email or 'no email')}), "
        f"state <strong id='state'>{acct._state}</strong>.</p>"
        f"<p>Currently due:</p><ul>{due}</ul>{forms}"
    )
    return _page("Stripe test server — Express onboarding", body)


async def _onboarding_submit(request: web.Request) -> web.Response:
    link = S.account_links.get(request.match_info["token"])
    if link is None:
        return _page("Link not found", "<p>This onboarding link does not exist.</p>", status=404)
    form = await request.post()
    if link["status"] != "opened" or form.get("session") != link["session"] or _now() > link["expires_at"]:
        return _redirect(link["refresh_url"], "This onboarding session has expired.")
    link["status"] = "used"
    action = form.get("action")
    acct = _account_obj(link["account"])
    if action in ("complete", "pending_verification", "restricted"):
        bank = str(form.get("bank_account") or "").strip() or None
        with _background_context(None):  # no API request behind these events
            onboard(acct, action, bank_account=bank)
    elif action != "leave":
        return _page("Unknown action", "<p>Unknown action.</p>", status=400)
    return _redirect(link["return_url"], f"Onboarding: {acct._state}.")


async def _express_dashboard(request: web.Request) -> web.Response:
    acct = _account_obj(request.match_info["id"])
    if acct is None:
        return _page("Not found", "<p>No such account.</p>", status=404)
    rows = "".join(
        f"<li>{c.upper()}: available {a}, pending {p}</li>"
        for c in ledger.currencies(acct.id)
        for a, p in [ledger.amounts(acct.id, c)]
    )
    return _page(
        "Stripe test server — Express dashboard",
        f"<p>Account <code>{acct.id}</code>, state <strong>{acct._state}</strong>.</p><ul>{rows}</ul>",
    )


async def _test_onboarding(request: web.Request) -> web.Response:
    """POST /_test/accounts/{id}/onboarding {"state": ..., "bank_account": "000123456789"}: the same transitions
    as the hosted page, without a browser."""
    data = await ls_server.get_post_data(request) or {}
    acct = _account_obj(request.match_info["id"])
    if acct is None:
        raise _StripeError(404, f"No such account: '{request.match_info['id']}'", code="resource_missing")
    state = data.get("state")
    if not state:
        raise _missing("state")
    with _background_context(None):  # no API request behind these events
        onboard(acct, str(state), bank_account=data.get("bank_account"))
    return _json(acct._export())
