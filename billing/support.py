"""What the agency asks for and what billing support does (COL-1, RET-4), each change audited."""

from __future__ import annotations

from datetime import date

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Role, User, audit_record
from accounts.permissions import Capability, has_capability
from billing.attempts import charge_retry_manual
from billing.charges import IllegalTransition, charge_mark_agency_invoiced
from billing.dunning import clients_overdue_refresh
from billing.models import Charge, RequestKind, SupportRequest
from billing.statuses import COLLECTIBLE, ChargeStatus
from clients.models import Client
from core.errors import ApplicationError, PermissionDenied


def _require(user: User, capability: Capability, what: str) -> None:
    if not has_capability(user, capability):
        raise PermissionDenied(f"Your role cannot {what}.")


def _require_support(user: User) -> None:
    if user is None or user.role != Role.BILLING_SUPPORT or not user.is_active:
        raise PermissionDenied("Only billing support can do this.")


def client_is_configured(client: Client) -> bool:
    """Fully configured apart from a payment method: a contact email and a price to bill."""
    return bool(client.email) and (
        client.license_price_minor > 0 or client.service_lines.filter(removed_at__isnull=True).exists()
    )


def agency_invoiced_request(*, client: Client, user: User, reason: str) -> SupportRequest:
    _require(user, Capability.REQUEST_SUPPORT, "request Agency Invoiced")
    if client.agency_invoiced:
        raise ApplicationError("This client is already Agency Invoiced.", code="already_agency_invoiced")
    if not client_is_configured(client):
        raise ApplicationError(
            "Configure the client (email and a license price or an Agency Services line) "
            "before requesting Agency Invoiced.",
            code="client_not_configured",
            fields={"client": ["The client is not fully configured."]},
        )
    if not reason.strip():
        raise ApplicationError("Say why the client should be Agency Invoiced.", fields={"reason": ["Required."]})
    return _open_request(
        kind=RequestKind.AGENCY_INVOICED, client=client, requested_by=user.email, reason=reason.strip()
    )


def retry_request(*, charge: Charge, user: User, reason: str = "") -> SupportRequest:
    _require(user, Capability.REQUEST_SUPPORT, "request a retry")
    if charge.status not in (ChargeStatus.RETRYING, ChargeStatus.UNCOLLECTABLE):
        raise IllegalTransition(
            f"Only a Retrying or Uncollectable charge can be retried; this one is {ChargeStatus(charge.status).label}.",
            fields={"charge": ["Cannot be retried."]},
        )
    return _open_request(
        kind=RequestKind.RETRY, client=charge.client, charge=charge, requested_by=user.email, reason=reason.strip()
    )


def _open_request(**fields) -> SupportRequest:
    """The unique constraint on open requests decides: asking again while one is open is refused."""
    try:
        with transaction.atomic():
            return SupportRequest.objects.create(**fields)
    except IntegrityError:
        raise ApplicationError(
            "This has already been requested; billing support will handle it.", code="already_requested"
        ) from None


def _close_requests(client: Client, kind: str, user: User) -> None:
    SupportRequest.objects.filter(client=client, kind=kind, status="OPEN").update(
        status="DONE", resolved_by=user.email, resolved_at=timezone.now()
    )


def agency_invoiced_set(*, client: Client, user: User, reason: str, today: date) -> Client:
    """COL-1: only billing support, with a reason; open charges of the client stop being collected."""
    _require_support(user)
    if not reason or not reason.strip():
        raise ApplicationError("A reason is required.", fields={"reason": ["Required."]})
    if not client_is_configured(client):
        raise ApplicationError(
            "The client is not fully configured yet.",
            code="client_not_configured",
            fields={"client": ["Configure the client first."]},
        )
    with transaction.atomic():
        locked = Client.objects.select_for_update().get(pk=client.pk)
        before = {"agency_invoiced": locked.agency_invoiced}
        locked.agency_invoiced, locked.agency_invoiced_reason = True, reason.strip()
        locked.save(update_fields=["agency_invoiced", "agency_invoiced_reason", "updated_at"])
        for charge in Charge.objects.filter(client=locked, status__in=COLLECTIBLE):
            charge_mark_agency_invoiced(charge, today=today, actor=user.email, reason=f"Agency Invoiced: {reason}")
        # It pays the agency directly now and is never past due here (COL-1): its overdue flag goes at once.
        clients_overdue_refresh(client_ids=[locked.pk], today=today)
        audit_record(
            actor=user,
            action="client.agency_invoiced.set",
            obj=locked,
            before=before,
            after={"agency_invoiced": True},
            reason=reason.strip(),
        )
        _close_requests(locked, RequestKind.AGENCY_INVOICED, user)
    return locked


def agency_invoiced_clear(*, client: Client, user: User, reason: str) -> Client:
    """Back to collection through the platform from the next invoice; charges already Agency Invoiced stay."""
    _require_support(user)
    if not reason or not reason.strip():
        raise ApplicationError("A reason is required.", fields={"reason": ["Required."]})
    with transaction.atomic():
        locked = Client.objects.select_for_update().get(pk=client.pk)
        locked.agency_invoiced, locked.agency_invoiced_reason = False, ""
        locked.save(update_fields=["agency_invoiced", "agency_invoiced_reason", "updated_at"])
        audit_record(
            actor=user,
            action="client.agency_invoiced.clear",
            obj=locked,
            before={"agency_invoiced": True},
            after={"agency_invoiced": False},
            reason=reason.strip(),
        )
    return locked


def retry_run(*, charge: Charge, user: User, today: date):
    """RET-4: billing support runs a manual retry now."""
    _require_support(user)
    attempt = charge_retry_manual(charge, today=today, actor=user.email)
    with transaction.atomic():
        audit_record(
            actor=user,
            action="charge.retry",
            obj=charge,
            reason="manual retry",
            after={
                "attempt": attempt.number if attempt else None,
                "outcome": attempt.outcome if attempt else "no attempt",
            },
        )
        _close_requests(charge.client, RequestKind.RETRY, user)
    return attempt


def agency_charge_retry_run(*, charge, user: User, today: date):
    """RET-4 for the agency's own invoice (PAY-3): billing support runs a manual retry of a Retrying or Uncollectable
    platform charge now, on the agency's current payment method. Recorded in the platform's audit trail."""
    _require_support(user)
    attempt = charge_retry_manual(charge, today=today, actor=user.email)
    with transaction.atomic():
        audit_record(
            actor=user,
            action="agency_charge.retry",
            obj=charge,
            reason="manual retry",
            after={
                "agency": charge.agency.schema_name,
                "invoice": charge.invoice.number,
                "attempt": attempt.number if attempt else None,
                "outcome": attempt.outcome if attempt else "no attempt",
            },
        )
    return attempt
