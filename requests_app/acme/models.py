"""ACME's tables: agents' external account bindings, accounts, orders, authorizations,
challenges and the server's nonces. Every write goes through requests_app.acme.services."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

from ..models import Certificate, CertificateRequest


def new_slug() -> str:
    """An unguessable ID for a URL (128 random bits)."""
    return secrets.token_urlsafe(16)


def new_kid() -> str:
    """An EAB key ID: unguessable too, so that knowing one does not reveal others."""
    return "eab-" + secrets.token_urlsafe(12)


class ExternalAccountBinding(models.Model):
    """An agent's approval of one ACME account: who (email), which names (exact names and
    "*.example.com" patterns), which profile, until when. The HMAC key is shown once, and
    kept only sealed (AES-GCM under a key derived from SECRET_KEY, bound to the kid); it
    binds one account, once."""

    kid = models.CharField(max_length=64, unique=True, default=new_kid)
    #: base64 of nonce || AES-GCM ciphertext of the 32-byte HMAC key (see services.seal_key).
    hmac_key_sealed = models.TextField()
    email = models.EmailField(max_length=254)
    #: Lower-case A-labels: "host.example.com" or "*.example.com" (the name and any name
    #: below example.com, one label or more).
    names = models.JSONField(default=list)
    profile = models.CharField(max_length=32, default="server")
    expires_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    #: The account it bound (None until used; a binding binds one account, once).
    account = models.OneToOneField(
        "Account", null=True, blank=True, on_delete=models.SET_NULL, related_name="binding"
    )
    bound_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "ACME external account binding"
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.kid} ({self.email})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @property
    def is_usable(self) -> bool:
        return not self.is_revoked and not self.is_expired


class Account(models.Model):
    """An ACME account: a public key (JWK) and its contacts."""

    class Status(models.TextChoices):
        VALID = "valid"
        DEACTIVATED = "deactivated"
        REVOKED = "revoked"

    slug = models.CharField(max_length=32, unique=True, default=new_slug)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.VALID)
    #: The public JWK as JSON (josepy's to_json) and its RFC 7638 thumbprint (base64url).
    key_jwk = models.JSONField()
    key_thumbprint = models.CharField(max_length=64, unique=True)
    contact = models.JSONField(default=list, blank=True)
    terms_agreed = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        verbose_name = "ACME account"

    def __str__(self) -> str:
        return f"ACME account {self.slug}"


class Order(models.Model):
    """An order for a certificate with a set of DNS identifiers (RFC 8555 7.1.3)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        READY = "ready"
        PROCESSING = "processing"
        VALID = "valid"
        INVALID = "invalid"

    slug = models.CharField(max_length=32, unique=True, default=new_slug)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="orders")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    #: Lower-case A-labels, sorted (a wildcard as "*.example.com").
    names = models.JSONField(default=list)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    #: A problem document (type, detail) when the order became invalid.
    error = models.JSONField(null=True, blank=True)
    #: The Certificate Manager's request made at finalization (channel "acme").
    request = models.OneToOneField(
        CertificateRequest,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="acme_order",
    )
    #: ARI (RFC 9773): the certificate this order replaces, when the client said so.
    replaces = models.ForeignKey(
        Certificate, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = "ACME order"
        indexes = [models.Index(fields=["account", "-created_at"], name="acme_order_newest")]

    def __str__(self) -> str:
        return f"ACME order {self.slug}"

    @property
    def certificate(self) -> Certificate | None:
        return self.request.certificate if self.request_id else None


class Authorization(models.Model):
    """The proof of control over one identifier, for one order."""

    class Status(models.TextChoices):
        PENDING = "pending"
        VALID = "valid"
        INVALID = "invalid"
        DEACTIVATED = "deactivated"
        EXPIRED = "expired"
        REVOKED = "revoked"

    slug = models.CharField(max_length=32, unique=True, default=new_slug)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="authorizations")
    #: The DNS name without "*." (RFC 8555 7.1.4); wildcard says whether it had one.
    name = models.CharField(max_length=253)
    wildcard = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    expires_at = models.DateTimeField()

    class Meta:
        verbose_name = "ACME authorization"

    def __str__(self) -> str:
        return f"ACME authorization {self.slug} for {self.name}"


class Challenge(models.Model):
    """One way to prove control over an authorization's identifier: http-01 or dns-01."""

    class Status(models.TextChoices):
        PENDING = "pending"
        PROCESSING = "processing"
        VALID = "valid"
        INVALID = "invalid"

    class Type(models.TextChoices):
        HTTP_01 = "http-01"
        DNS_01 = "dns-01"

    slug = models.CharField(max_length=32, unique=True, default=new_slug)
    authorization = models.ForeignKey(
        Authorization, on_delete=models.CASCADE, related_name="challenges"
    )
    type = models.CharField(max_length=16, choices=Type.choices)
    token = models.CharField(max_length=64, default=new_slug)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    validated_at = models.DateTimeField(null=True, blank=True)
    #: Where the answer was found (address or resolver), for the agent's panel.
    validated_from = models.CharField(max_length=300, blank=True)
    error = models.JSONField(null=True, blank=True)

    class Meta:
        verbose_name = "ACME challenge"

    def __str__(self) -> str:
        return f"ACME {self.type} challenge {self.slug}"


class Nonce(models.Model):
    """A replay nonce the server handed out; used once (deleted when used)."""

    value = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return self.value
