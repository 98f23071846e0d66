"""Saving payment methods (COL-5: one card or bank account on one account, across every agency)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.db import IntegrityError, connection, transaction
from django.db.models import Model, QuerySet
from django.utils import timezone

from accounts.models import audit_record
from billing.models import PaymentMethod
from billing.platform.models import AgencyPaymentMethod, PaymentMethodFingerprint
from billing.providers import get_provider
from billing.providers.base import PaymentProvider, ProviderError, SavedPaymentMethod
from clients.models import Client
from core.errors import ApplicationError
from tenants.models import Agency


class PaymentMethodInUse(ApplicationError):
    code = "payment_method_in_use"
    status = 409


def _claim_fingerprint(*, fingerprint: str, schema_name: str, owner_kind: str, owner_public_id) -> None:
    """Take the platform-wide claim on a fingerprint; the unique constraint decides (COL-5)."""
    existing = PaymentMethodFingerprint.objects.filter(fingerprint=fingerprint).first()
    if existing and existing.owner_public_id == owner_public_id:
        return  # the same account saving the same card again
    try:
        with transaction.atomic():
            PaymentMethodFingerprint.objects.create(
                fingerprint=fingerprint, schema_name=schema_name, owner_kind=owner_kind, owner_public_id=owner_public_id
            )
    except IntegrityError:
        raise PaymentMethodInUse(
            "This card or bank account is already used by another billing account. Use a different one.",
            fields={"payment_method": ["Already on another account."]},
        ) from None


def _release(fingerprint: str, owner_public_id) -> None:
    PaymentMethodFingerprint.objects.filter(fingerprint=fingerprint, owner_public_id=owner_public_id).delete()


def _save(*, provider: PaymentProvider, customer: str, token: str, setup: bool = False):
    if not token or not isinstance(token, str):
        raise ApplicationError("Choose a payment method.", fields={"token": ["Required."]})
    try:
        if setup:
            return provider.payment_method_setup(customer=customer, token=token)
        return provider.payment_method_save(customer=customer, token=token)
    except ProviderError as exc:
        raise ApplicationError(
            f"The payment method was refused: {exc}", code=exc.code, fields={"token": [str(exc)]}
        ) from None


def _replace(
    *,
    active: QuerySet,
    saved: SavedPaymentMethod,
    owner_public_id,
    schema_name: str,
    owner_kind: str,
    create: Callable[..., Model],
):
    """Claim the new fingerprint, retire the previous method (releasing its fingerprint), store the new one.
    Returns (previous, new)."""
    _claim_fingerprint(
        fingerprint=saved.fingerprint, schema_name=schema_name, owner_kind=owner_kind, owner_public_id=owner_public_id
    )
    previous = active.select_for_update().first()
    if previous is not None:
        active.filter(pk=previous.pk).update(removed_at=timezone.now())
        if previous.fingerprint != saved.fingerprint:
            _release(previous.fingerprint, owner_public_id)
    method = create(
        reference=saved.reference, kind=saved.kind, fingerprint=saved.fingerprint, brand=saved.brand, last4=saved.last4
    )
    return previous, method


def payment_method_attach(
    *, client: Client, token: str, actor=None, provider: PaymentProvider | None = None
) -> PaymentMethod:
    """Save (or replace) the client's payment method from a provider token. The server only ever sees a
    token, never a card number."""
    provider = provider or get_provider()
    if not client.provider_customer_id and token:
        customer = provider.customer_create(
            email=client.email, name=client.name, idempotency_key=f"client-{client.public_id}"
        )
        Client.objects.filter(pk=client.pk).update(provider_customer_id=customer)
        client.provider_customer_id = customer
    saved = _save(provider=provider, customer=client.provider_customer_id, token=token)
    with transaction.atomic():
        # One save at a time per client: two concurrent saves would each find the other's method not yet committed,
        # both keep theirs, and the second would hit the one-active-method constraint (a 500). Serialized, each
        # replaces the one before, as saves one after the other do.
        Client.objects.select_for_update().filter(pk=client.pk).first()
        previous, method = _replace(
            active=PaymentMethod.objects.filter(client=client, removed_at__isnull=True),
            saved=saved,
            owner_public_id=client.public_id,
            schema_name=connection.schema_name,  # type: ignore[attr-defined]
            owner_kind="client",
            create=lambda **fields: PaymentMethod.objects.create(client=client, **fields),
        )
        audit_record(
            actor=actor,
            action="payment_method.saved",
            obj=client,
            before={"payment_method": str(previous)} if previous else {},
            after={"payment_method": str(method)},
        )
    return method  # type: ignore[return-value]


def agency_payment_method_attach(
    *, agency: Agency, token: str, actor=None, provider: PaymentProvider | None = None
) -> AgencyPaymentMethod:
    """The agency's own payment method (card or bank account) on the platform's account, for its platform invoices
    (PAY-3): set up for later off-session charges (a SetupIntent with Stripe). The same card or account cannot also
    be a client's, in any agency (COL-5): refused, and nothing changes. Administrators only (ROLE-1: the caller)."""
    provider = provider or get_provider()
    if not agency.platform_customer_id:
        customer = provider.customer_create(
            email=agency.email or f"billing@{agency.schema_name}",
            name=agency.name,
            idempotency_key=f"agency-{agency.schema_name}",
        )
        Agency.objects.filter(pk=agency.pk).update(platform_customer_id=customer)
        agency.platform_customer_id = customer
    saved = _save(provider=provider, customer=agency.platform_customer_id, token=token, setup=True)
    with transaction.atomic():
        Agency.objects.select_for_update().filter(pk=agency.pk).first()  # one save at a time per agency (as above)
        previous, method = _replace(
            active=AgencyPaymentMethod.objects.filter(agency=agency, removed_at__isnull=True),
            saved=saved,
            owner_public_id=uuid.uuid5(uuid.NAMESPACE_URL, f"agency:{agency.schema_name}"),
            schema_name="public",
            owner_kind="agency",
            create=lambda **fields: AgencyPaymentMethod.objects.create(agency=agency, **fields),
        )
        if actor is not None:
            audit_record(
                actor=actor,
                action="agency_payment_method.saved",
                obj=agency,
                before={"payment_method": str(previous)} if previous else {},
                after={"payment_method": str(method)},
            )
    return method  # type: ignore[return-value]
