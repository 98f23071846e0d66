"""Outbound webhooks to the agency's own systems (agency schema): endpoints, events, deliveries, attempts.

Knows nothing of billing: billing publishes plain payloads through `integrations.services.events_publish`.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from core.models import BaseModel


class EventKind(models.TextChoices):
    INVOICE_FINALIZED = "invoice.finalized", "Invoice finalized"
    CHARGE_PAID = "charge.paid", "Charge paid"
    CHARGE_FAILED = "charge.failed", "Charge attempt failed"
    CHARGE_UNCOLLECTABLE = "charge.uncollectable", "Charge uncollectable"
    PAYOUT_PAID = "payout.paid", "Payout paid"


class WebhookEndpoint(BaseModel):
    """Where the agency wants events sent. `event_kinds` empty means every kind."""

    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    event_kinds = ArrayField(models.CharField(max_length=40, choices=EventKind.choices), default=list, blank=True)
    # Needed in clear to sign each delivery; shown to the agency once, when the endpoint is created.
    secret = models.CharField(max_length=80)
    # After a roll, the previous secret still signs deliveries (a second v1) until it expires, so the agency
    # can switch its receiver over without rejecting events.
    previous_secret = models.CharField(max_length=80, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    created_by = models.CharField(max_length=254, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.url

    def wants(self, kind: str) -> bool:
        return not self.event_kinds or kind in self.event_kinds

    def signing_secrets(self, now) -> list[str]:
        """The secrets each delivery is signed with now: the current one, then the previous while it lasts."""
        if self.previous_secret and self.previous_secret_expires_at and self.previous_secret_expires_at > now:
            return [self.secret, self.previous_secret]
        return [self.secret]


class OutboundEvent(BaseModel):
    """Something that happened, once: `key` names the fact (e.g. the invoice), so republishing it adds nothing."""

    kind = models.CharField(max_length=40, choices=EventKind.choices)
    key = models.CharField(max_length=200, unique=True)
    payload = models.JSONField(encoder=DjangoJSONEncoder)

    class Meta:
        ordering = ["-created_at", "-id"]


class DeliveryStatus(models.TextChoices):
    PENDING = "PENDING", "Pending"
    RETRYING = "RETRYING", "Retrying"
    SUCCEEDED = "SUCCEEDED", "Succeeded"
    FAILED = "FAILED", "Failed"  # every automatic attempt failed; a manual redelivery may still be asked for


class WebhookDelivery(BaseModel):
    """One event to one endpoint: the delivery log's row."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.PROTECT, related_name="deliveries")
    event = models.ForeignKey(OutboundEvent, on_delete=models.PROTECT, related_name="deliveries")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempt_count = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["endpoint", "event"], name="delivery_once_per_endpoint_event")]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveSmallIntegerField()
    manual = models.BooleanField(default=False)
    requested_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="delivery_attempt_once_per_number")]
