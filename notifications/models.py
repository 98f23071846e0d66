"""Notice templates per agency and the outbox of notices (agency schema)."""

from __future__ import annotations

from django.db import models

from notifications.catalog import NoticeKind


class NoticeTemplate(models.Model):
    """The agency's own subject and body for a notice kind; without one, the shipped default is used."""

    kind = models.CharField(max_length=40, choices=NoticeKind.choices, unique=True)
    subject = models.CharField(max_length=500)
    body = models.TextField()
    updated_by = models.CharField(max_length=254, blank=True)
    updated_at = models.DateTimeField(auto_now=True)


class OutboxStatus(models.TextChoices):
    PENDING = "PENDING", "Pending"
    SENDING = "SENDING", "Sending"  # claimed by a sender; committed before the mail server is called
    SENT = "SENT", "Sent"
    FAILED = "FAILED", "Failed"  # the mail server refused or was unreachable: retried
    # The sender died (or lost the mail server) mid-send: the message may or may not have left. Never resent
    # automatically, so a notice is sent at most once (NOT-7); listed for a person to check.
    UNCERTAIN = "UNCERTAIN", "Uncertain"


class Notice(models.Model):
    """One notice, at most once per account, kind, period and number (NOT-7): the unique constraint is the
    rule, so a rerun that tries again inserts nothing."""

    account = models.CharField(max_length=300, help_text="The billing account: a client public id, or agency:<email>.")
    kind = models.CharField(max_length=40, choices=NoticeKind.choices)
    period = models.CharField(max_length=120, help_text="The period or charge the notice is about.")
    number = models.PositiveSmallIntegerField(default=1)
    to_email = models.EmailField()
    subject = models.CharField(max_length=500)
    body = models.TextField()
    used_default = models.BooleanField(default=False)
    template_error = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=OutboxStatus.choices, default=OutboxStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    business_date = models.DateField()
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="When a sender last claimed it.")
    requeued_at = models.DateTimeField(null=True, blank=True, help_text="When the sweeper last enqueued it again.")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "kind", "period", "number"], name="notice_once_per_account_kind_period_number"
            )
        ]
        indexes = [
            models.Index(fields=["status", "created_at"]),
            models.Index(fields=["account"]),
            # The day's last step reads the day's notices still to send (notifications.services.outbox_flush).
            models.Index(fields=["business_date", "status"]),
        ]
