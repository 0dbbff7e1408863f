"""The outbox: one Delivery row per (certificate or request, backend, recipient).

The row is the source of truth, never the task: a lost task is found again by
`retry_deliveries`, and a row is sent only by the worker that claimed it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.db import models

from requests_app.models import Certificate, CertificateRequest, new_public_id


class Delivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        DELIVERED = "delivered"
        FAILED = "failed"
        BOUNCED = "bounced"

    class Kind(models.TextChoices):
        CERTIFICATE = "certificate", "the certificate"
        LINK = "link", "a retrieval link"
        REQUEST_RECEIVED = "request_received", "request received (to the requester)"
        REQUEST_WAITING = "request_waiting", "request waiting (to agents)"
        REQUEST_REJECTED = "request_rejected", "request rejected (to the requester)"
        REQUEST_CANCELED = "request_canceled", "request canceled (to the requester)"
        CERTIFICATE_REVOKED = "certificate_revoked", "certificate revoked (to the holder)"
        EMAIL_CONFIRMATION = "email_confirmation", "email confirmation code (to the requester)"
        ACME_CREDENTIALS = "acme_credentials", "ACME account credentials (to the requester)"
        EXPIRY_REMINDER = "expiry_reminder", "expiry reminder (to the holder)"

    # What URLs, headers and pages show: random, so that nobody can walk the outbox by
    # counting (the integer primary key stays internal).
    public_id = models.CharField(max_length=20, unique=True, default=new_public_id, editable=False)
    #: The request a delivery is about; None only for an ACME binding's credentials, which
    #: belong to no request (the check constraint keeps one or the other).
    request = models.ForeignKey(
        CertificateRequest,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="deliveries",
    )
    #: The ACME binding whose credentials a delivery mails (kind acme_credentials); the
    #: row never holds the key, which is read when the message is built.
    acme_binding = models.ForeignKey(
        "acme.ExternalAccountBinding",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="deliveries",
    )
    certificate = models.ForeignKey(
        Certificate, null=True, blank=True, on_delete=models.PROTECT, related_name="deliveries"
    )
    backend = models.CharField(max_length=64, help_text="An alias of DELIVERY_BACKENDS.")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    recipient = models.CharField(max_length=500, help_text="An email address or a URL.")
    note = models.TextField(blank=True, help_text="The agent's note, put into the message.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    message_id = models.CharField(
        max_length=255,
        blank=True,
        db_index=True,
        help_text="The provider's message ID, recorded at send time; tracking events match it.",
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-created", "-id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
            models.Index(fields=["status", "lease_until"], name="delivery_lease"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(request__isnull=False) | models.Q(acme_binding__isnull=False),
                name="delivery_about_request_or_binding",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} to {self.recipient} ({self.status})"

    @property
    def rfc_message_id(self) -> str:
        """The Message-ID header of every copy of this delivery: the same on each retry, so a
        message sent twice (a worker died between the server's acceptance and the commit) is
        recognisable as one."""
        host = urlsplit(settings.SITE_URL).hostname or "localhost"
        return f"<{self.public_id.lower()}.delivery@{host}>"

    @property
    def requested_by_label(self) -> str:
        return self.requested_by.get_username() if self.requested_by else "system"

    @property
    def retryable(self) -> bool:
        # A row that was never queued may have no valid recipient to try again with.
        return self.status in (self.Status.FAILED, self.Status.BOUNCED) and bool(self.recipient)

    @property
    def can_send_now(self) -> bool:
        """A pending row waiting for its next try, which an agent may send at once."""
        return self.status == self.Status.PENDING and bool(self.recipient)


class DeliveryEvent(models.Model):
    """A tracking event from the mail provider, recorded once per provider event ID."""

    delivery = models.ForeignKey(
        Delivery, null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    provider = models.CharField(max_length=64)
    event_id = models.CharField(max_length=255)
    event_type = models.CharField(max_length=32)
    message_id = models.CharField(max_length=255, blank=True)
    recipient = models.CharField(max_length=254, blank=True)
    description = models.TextField(blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "event_id"], name="one_event_per_provider_id"
            )
        ]
        ordering = ["received_at"]

    def __str__(self) -> str:
        return f"{self.provider} {self.event_type} {self.message_id}"


class WorkerHeartbeat(models.Model):
    """A background worker's sign of life, written from its loop (run_worker): /healthz fails
    when no worker has been seen for WORKER_HEARTBEAT_MAX_AGE_SECONDS."""

    worker_id = models.CharField(max_length=64, primary_key=True)
    hostname = models.CharField(max_length=255, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-last_seen"]

    def __str__(self) -> str:
        return f"worker {self.worker_id} on {self.hostname} (pid {self.pid})"


class ExpiryReminder(models.Model):
    """A certificate's holder was reminded (or is being reminded) that it expires, at one
    threshold (EXPIRY_REMINDER_DAYS). The unique (certificate, days) pair is the claim:
    whichever process inserts it first queues the reminder, every other one skips it."""

    certificate = models.ForeignKey(
        Certificate, on_delete=models.PROTECT, related_name="expiry_reminders"
    )
    days = models.PositiveSmallIntegerField(help_text="Days before expiry (the threshold).")
    delivery = models.ForeignKey(
        Delivery, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["certificate", "days"], name="one_expiry_reminder_per_threshold"
            )
        ]
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.days}-day reminder for {self.certificate.serial_colons}"


class ExpiryDigest(models.Model):
    """The agents' daily list of certificates about to lapse, one row per UTC day and agent
    address: the unique pair makes it once a day, a compare-and-swap claim sends it once,
    and a failed try is retried with the outbox's backoff. (Not a Delivery: a Delivery
    belongs to one certificate request, a digest to none.)"""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"

    day = models.DateField()
    recipient = models.CharField(max_length=254)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    certificates = models.PositiveIntegerField(
        default=0, help_text="How many certificates the sent digest listed."
    )
    created = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "recipient"], name="one_expiry_digest_per_day")
        ]
        ordering = ["-day", "recipient"]

    def __str__(self) -> str:
        return f"expiry digest of {self.day} to {self.recipient} ({self.status})"
