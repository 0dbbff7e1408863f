"""The Certificate Manager's tables: CAs, certificates, requests, agent certificates and the
audit log."""

from __future__ import annotations

import datetime as dt
import secrets
import time
from functools import cached_property

from cryptography import x509
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import models, router, transaction
from django.db.models.functions import Concat, Lower, Right
from django.urls import reverse
from django.utils import timezone

from . import auditchain, pki

# Crockford's base32: no I, L, O or U, so an ID read over the phone is not misheard.
PUBLIC_ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PUBLIC_ID_LENGTH = 20  # 100 random bits


def new_public_id() -> str:
    return "".join(secrets.choice(PUBLIC_ID_ALPHABET) for _ in range(PUBLIC_ID_LENGTH))


def normalize_public_id(text: str) -> str:
    """Accept any case, spaces and hyphens, and the usual misreadings (O->0, I/L->1)."""
    cleaned = "".join(ch for ch in str(text).upper() if ch not in " -\t\r\n")
    return cleaned.translate(str.maketrans("OIL", "011"))


def format_public_id(public_id: str) -> str:
    return "-".join(public_id[i : i + 4] for i in range(0, len(public_id), 4))


def normalize_serial(text: str) -> str:
    """A serial as typed by a person (pki.parse_serial's forms) in our lower-case hex; bare
    digits read as hex here (with_serial/by_serial also try the decimal reading)."""
    try:
        return pki.serial_hex(pki.parse_serial(text).values[0])
    except pki.SerialError:
        # Not a serial: something that matches no row (callers check is_serial first).
        return "".join(ch for ch in str(text).lower() if ch not in ": \t\r\n")


def serial_readings(text: str | int) -> tuple[str, ...]:
    """Every stored (lower-case hex) serial a typed text can mean: one, or two for bare
    digits (hex first, decimal second); none when it cannot be a serial. An int is exact."""
    if isinstance(text, int):
        return (pki.serial_hex(text),)
    try:
        return tuple(pki.serial_hex(value) for value in pki.parse_serial(text).values)
    except pki.SerialError:
        return ()


HEX_DIGITS = frozenset("0123456789abcdef")
MAX_SERIAL_LENGTH = 64  # Certificate.serial's max_length

#: The permission every agent surface checks (held through "Certificate Manager Agents").
APPROVE_PERMISSION = "requests_app.approve_certificaterequest"


def is_public_id(text: str) -> bool:
    """True when text, normalized, has the shape of a request ID."""
    cleaned = normalize_public_id(text)
    return len(cleaned) == PUBLIC_ID_LENGTH and all(ch in PUBLIC_ID_ALPHABET for ch in cleaned)


def is_serial(text: str) -> bool:
    """True when text can be a certificate serial number (pki.parse_serial's forms)."""
    return bool(serial_readings(text))


class NoCAError(pki.CAError):
    """No CA has been created or imported yet."""


DEFAULT_CA_TTL = 5.0  # seconds a process keeps its answer; a new default CA is seen after that
_default_ca: tuple[float, CertificateAuthority] | None = None


class CertificateAuthorityManager(models.Manager):
    """Usable CAs (active or retired): a CA still waiting for its certificate (pending) has
    none to sign, serve or answer for, so every lookup leaves it out; `with_pending` has it."""

    def get_queryset(self):
        return super().get_queryset().exclude(status=CertificateAuthority.Status.PENDING)

    def default(self) -> CertificateAuthority:
        """The CA that signs new certificates, or NoCAError.

        Kept for a few seconds per process: every approval asks, and the answer (with its
        parsed certificate) changes only when an administrator makes a new default CA."""
        global _default_ca
        now = time.monotonic()
        if _default_ca is not None and now - _default_ca[0] < DEFAULT_CA_TTL:
            return _default_ca[1]
        ca = self.filter(is_default=True).first()
        if ca is None:
            raise NoCAError("no CA exists yet: run manage.py init_ca or import_ca first")
        _default_ca = (now, ca)
        return ca

    def forget_default(self) -> None:
        """Ask the database again next time (called when this process changes the default)."""
        global _default_ca
        _default_ca = None


class CertificateAuthority(models.Model):
    """A CA this portal signs with. Its key is held by a key backend (CA_KEY_BACKENDS), never
    in the database: the row names the backend and the key's reference in it."""

    class Status(models.TextChoices):
        #: Its key exists and its CSR waits for an outside root's signature (import_ca).
        PENDING = "pending"
        #: Signs: the default issues new certificates; a root held here signs subordinates.
        ACTIVE = "active"
        #: Rolled over: issues nothing new, but keeps its CRL and OCSP answers for what it
        #: issued until the last of those certificates expires.
        RETIRED = "retired"

    name = models.CharField(max_length=200)
    subject = models.TextField()
    certificate_pem = models.TextField()
    chain_pem = models.TextField(blank=True, help_text="Issuers of this CA, up to the root.")
    key_type = models.CharField(max_length=16)
    key_backend = models.CharField(max_length=64, default="default")
    key_filename = models.CharField(max_length=200, unique=True)
    serial = models.CharField(max_length=64)
    not_before = models.DateTimeField(null=True, blank=True)
    not_after = models.DateTimeField(null=True, blank=True)
    is_default = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    # The hierarchy (issue 17): a pending CA has its key and CSR but no certificate yet.
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    csr_pem = models.TextField(blank=True, help_text="The CSR sent to the root (pending CAs).")
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="subordinates",
        help_text="The CA held here that signed this one (init_ca --parent).",
    )

    objects = CertificateAuthorityManager()
    with_pending = models.Manager()  # noqa: DJ012 - a manager, not a field

    class Meta:
        verbose_name = "certificate authority"
        verbose_name_plural = "certificate authorities"
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="one_default_ca"
            )
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("ca_certificate", args=[self.pk, "pem"])

    @cached_property
    def certificate(self) -> x509.Certificate:
        return pki.load_pem(self.certificate_pem)

    @cached_property
    def chain(self) -> list[x509.Certificate]:
        return pki.load_certificates(self.chain_pem.encode()) if self.chain_pem.strip() else []

    @property
    def fingerprint_sha256(self) -> str:
        return pki.fingerprint(self.certificate)

    @property
    def is_pending(self) -> bool:
        return self.status == self.Status.PENDING

    @property
    def is_root(self) -> bool:
        """Self-signed (a pending CA is a subordinate-to-be)."""
        return not self.is_pending and self.certificate.issuer == self.certificate.subject

    @property
    def role(self) -> str:
        """root or subordinate, then default, pending or retired where it applies."""
        words = ["root" if self.is_root else "subordinate"]
        if self.is_default:
            words.append("default")
        if self.status != self.Status.ACTIVE:
            words.append(self.status)
        return ", ".join(words)

    @property
    def full_chain(self) -> list[x509.Certificate]:
        """This CA's certificate and its issuers, up to the root."""
        return [self.certificate, *self.chain]

    def ca_issuers_url(self) -> str:
        """Where issued certificates say their issuer's certificate can be downloaded (DER)."""
        return f"{settings.REVOCATION_BASE_URL}/ca/{self.pk}/ca.cer"

    def crl_url(self) -> str:
        """The CRL distribution point named in issued certificates."""
        return f"{settings.REVOCATION_BASE_URL}/ca/{self.pk}/crl.crl"

    def ocsp_url(self) -> str:
        """The OCSP responder named in issued certificates (one for every CA)."""
        return f"{settings.REVOCATION_BASE_URL}/ocsp"


class CertificateQuerySet(models.QuerySet):
    """Lookups by serial number, one rule for every surface (pages, agent pages, admin,
    commands, delivery, the Dogtag protocol): serials are unique per CA, so two CAs may have
    issued the same one, and then the NEWEST certificate is the one meant, unless a CA is
    named."""

    def with_serial(self, text: str | int, *, ca: CertificateAuthority | None = None):
        """Certificates with the serial as typed by a person (either reading of bare
        digits), newest first; an int is the exact serial."""
        rows = self.filter(serial__in=serial_readings(text))
        if ca is not None:
            rows = rows.filter(ca=ca)
        return rows.order_by("-created", "-pk")

    def by_serial(
        self, text: str | int, *, ca: CertificateAuthority | None = None
    ) -> Certificate | None:
        """The certificate a typed serial names (the newest of that serial, or the given
        CA's); None when none has it or the text cannot be a serial. Bare digits are read
        both ways: pki.AmbiguousSerial when certificates exist for both readings."""
        readings = serial_readings(text)
        rows = list(self.with_serial(text, ca=ca)[:1]) if len(readings) == 1 else []
        if len(readings) > 1:
            found = [self.with_serial(int(r, 16), ca=ca).first() for r in readings]
            rows = [cert for cert in found if cert is not None]
            if len(rows) > 1:
                raise pki.AmbiguousSerial(str(text), tuple(int(r, 16) for r in readings))
        return rows[0] if rows else None


class Certificate(models.Model):
    """An issued certificate. The serial is lower-case hex, unique per CA."""

    class Status(models.TextChoices):
        VALID = "valid"
        REVOKED = "revoked"

    ca = models.ForeignKey(
        CertificateAuthority, on_delete=models.PROTECT, related_name="certificates"
    )
    serial = models.CharField(max_length=64)
    #: The serial zero-padded to a fixed width, computed by the database: text order is
    #: then numeric order, so a serial range is an indexed range (Dogtag's certificate search).
    serial_sort = models.GeneratedField(
        expression=Right(
            Concat(models.Value("0" * MAX_SERIAL_LENGTH), "serial"), MAX_SERIAL_LENGTH
        ),
        output_field=models.CharField(max_length=MAX_SERIAL_LENGTH),
        db_persist=True,
    )
    subject = models.TextField()
    #: What a subject search matches the start of: the CN lower-cased, or the subject
    #: text (pki.subject_search_key); written with the row, indexed (certificate_subject_search).
    subject_search = models.CharField(max_length=255, blank=True, default="")
    sans = models.JSONField(default=list)
    not_before = models.DateTimeField()
    not_after = models.DateTimeField()
    profile = models.CharField(max_length=32)
    pem = models.TextField()
    fingerprint_sha256 = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.VALID)
    created = models.DateTimeField(auto_now_add=True)
    # Revocation (RFC 5280 reason names, e.g. "keyCompromise"; "certificateHold" can be released).
    revoked_at = models.DateTimeField(null=True, blank=True)
    revocation_reason = models.CharField(max_length=32, blank=True)
    invalidity_date = models.DateTimeField(null=True, blank=True)
    #: Renewal: the certificate issued for a renewal of this one, and when. The old one
    #: stays valid until it expires, unless an agent revokes it (reason "superseded").
    superseded_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="supersedes"
    )
    superseded_at = models.DateTimeField(null=True, blank=True)

    objects = CertificateQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["ca", "serial"], name="unique_serial_per_ca")
        ]
        indexes = [
            models.Index(fields=["serial"]),
            models.Index(fields=["-created"]),
            models.Index(fields=["ca", "status"], name="certificate_ca_status"),
            # What expires next (requests_app.expiry): the Expiring page, its counts, the
            # reminders; with a profile filter the second one.
            models.Index(fields=["status", "not_after"], name="certificate_expiry"),
            models.Index(
                fields=["profile", "status", "not_after"], name="certificate_profile_expiry"
            ),
            models.Index(fields=["serial_sort"], name="certificate_serial_sort"),
            # A subject search by prefix (the Expiring page): LIKE 'prefix%' on PostgreSQL
            # (hence the pattern operator class), a range of the key on SQLite (which
            # ignores operator classes).
            models.Index(
                fields=["subject_search"],
                name="certificate_subject_search",
                opclasses=["varchar_pattern_ops"],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.serial_colons} {self.subject}"

    @cached_property
    def x509(self) -> x509.Certificate:
        return pki.load_pem(self.pem)

    @property
    def chain(self) -> list[x509.Certificate]:
        """The certificate and its issuers, leaf first."""
        return [self.x509, self.ca.certificate, *self.ca.chain]

    @property
    def issued_request(self) -> CertificateRequest | None:
        """The request this certificate answered; None for one issued outside the queue."""
        try:
            return self.request
        except ObjectDoesNotExist:
            return None

    @property
    def serial_colons(self) -> str:
        """The serial as people read it (pki.serial_colons)."""
        return pki.serial_colons(self.serial)

    @property
    def serial_filename(self) -> str:
        """The serial in file names and URLs (pki.serial_filename)."""
        return pki.serial_filename(self.serial)


class RequestQuerySet(models.QuerySet):
    def with_public_id(self, text: str) -> RequestQuerySet:
        """The request (at most one) with that ID as a person types it: any case, with or
        without hyphens, O for 0; none when the text cannot be an ID."""
        if not is_public_id(text):
            return self.none()
        return self.filter(public_id=normalize_public_id(text))

    def by_public_id(self, text: str) -> CertificateRequest | None:
        """The request with_public_id(text) finds, or None."""
        return self.with_public_id(text).first()


class SubjectKey(models.Func):
    """A subject's first 200 characters lower-cased, what the queue's search by the start of
    a CN walks (index request_subject_lower). Written without parameters: SQLite uses an
    expression index only for the very same SQL text, and bound numbers differ from it."""

    template = "SUBSTR(LOWER(%(expressions)s), 1, 200)"
    output_field = models.CharField()


class CertificateRequest(models.Model):
    """A request in the queue, from submission to its decision."""

    class Status(models.TextChoices):
        #: Proof of the mailbox: the requester has not yet opened the code mailed to the
        #: address (profiles with confirm_email); agents do not see it until then.
        AWAITING_EMAIL = "awaiting_email", "Awaiting email confirmation"
        PENDING = "pending"
        COMPLETE = "complete"
        REJECTED = "rejected"
        CANCELED = "canceled"

    #: Statuses the agent queue leaves out unless an agent asks for them by name.
    NOT_IN_QUEUE = (Status.AWAITING_EMAIL,)

    public_id = models.CharField(max_length=PUBLIC_ID_LENGTH, unique=True, default=new_public_id)
    profile = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    csr_pem = models.TextField()
    subject = models.TextField(blank=True)
    key_type = models.CharField(max_length=16)
    key_size = models.PositiveIntegerField()
    public_key_sha256 = models.CharField(max_length=64)
    requested_sans = models.JSONField(default=list)
    requester_name = models.CharField(max_length=200, blank=True)
    requester_email = models.EmailField(max_length=254)
    requester_note = models.TextField(blank=True)
    submitted_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    acted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    agent_note = models.TextField(
        blank=True, help_text="The agent's note, or the rejection reason."
    )
    certificate = models.OneToOneField(
        Certificate, null=True, blank=True, on_delete=models.PROTECT, related_name="request"
    )
    renewal_of = models.ForeignKey(
        Certificate, null=True, blank=True, on_delete=models.PROTECT, related_name="renewals"
    )
    submitter_ip = models.GenericIPAddressField(null=True, blank=True)
    #: Where the request came from: "web", "command", "dogtag" (certmonger and friends).
    channel = models.CharField(max_length=16, default="web")
    #: Server-side key generation: the private key, encrypted under the requester's
    #: passphrase (PKCS#8); erased after the first download or after a number of days.
    encrypted_private_key = models.TextField(blank=True)
    key_erased_at = models.DateTimeField(null=True, blank=True)
    #: An agent's request for their own login certificate (agent profile): approved only by
    #: another agent, and the certificate is linked to this user on approval.
    agent_for = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="agent_certificate_requests",
    )
    #: Proof of the mailbox: when requester_email was shown to be the requester's, and how
    #: ("mailed link", "mailed code", or the administrator who vouched for it).
    email_confirmed_at = models.DateTimeField(null=True, blank=True)
    email_confirmed_by = models.CharField(max_length=150, blank=True)

    objects = RequestQuerySet.as_manager()

    class Meta:
        permissions = [("approve_certificaterequest", "Can approve, reject and cancel requests")]
        indexes = [
            models.Index(fields=["-submitted_at"], name="request_newest"),
            models.Index(fields=["status", "-submitted_at"], name="request_status_newest"),
            models.Index(
                fields=["profile", "status", "-submitted_at"], name="request_profile_newest"
            ),
            models.Index(Lower("requester_email"), name="request_email_lower"),
            # The queue's search by the start of a CN (requests_app.queue_search.SUBJECT_KEY).
            models.Index(SubjectKey("subject"), name="request_subject_lower"),
            # One waiting request per key and profile: the duplicate check at submission.
            models.Index(fields=["public_key_sha256", "profile"], name="request_key_profile"),
        ]

    def __str__(self) -> str:
        return self.display_id

    def get_absolute_url(self) -> str:
        return reverse("request_status", args=[self.public_id])

    @property
    def display_id(self) -> str:
        return format_public_id(self.public_id)

    def get_agent_url(self) -> str:
        return reverse("agent:request_detail", args=[self.public_id])

    @property
    def status_text(self) -> str:
        """The status as words in a sentence ("awaiting email confirmation")."""
        return self.get_status_display().lower()

    @property
    def awaits_email(self) -> bool:
        return self.status == self.Status.AWAITING_EMAIL

    def confirm_email_deadline(self) -> dt.datetime:
        """Until when the requester may confirm the address (EMAIL_CONFIRMATION_DAYS)."""
        return self.submitted_at + dt.timedelta(days=settings.EMAIL_CONFIRMATION_DAYS)


class EmailConfirmation(models.Model):
    """A code mailed to the requester to prove the mailbox. Only its hash is kept: the code
    itself exists in the mail alone, so a reader of the database cannot confirm anything."""

    request = models.ForeignKey(
        CertificateRequest, on_delete=models.CASCADE, related_name="email_confirmations"
    )
    #: SHA-256 of "<request public_id>:<code>", hex.
    code_hash = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"confirmation code for {self.request}"


class AgentCertificate(models.Model):
    """A certificate an agent logs in with (Dogtag's agent certificates): one user per
    certificate. Linked on approval of the agent's own request, or by an administrator."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_certificates"
    )
    certificate = models.OneToOneField(
        Certificate, on_delete=models.CASCADE, related_name="agent_link"
    )
    linked_at = models.DateTimeField(auto_now_add=True)
    linked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = "agent certificate"

    def __str__(self) -> str:
        return f"{self.certificate.serial_colons} -> {self.user}"


class CertificateRevocationList(models.Model):
    """A signed CRL of one CA; the newest per CA is served at its distribution point."""

    ca = models.ForeignKey(CertificateAuthority, on_delete=models.PROTECT, related_name="crls")
    number = models.PositiveBigIntegerField()
    this_update = models.DateTimeField()
    next_update = models.DateTimeField()
    der = models.BinaryField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "certificate revocation list"
        constraints = [models.UniqueConstraint(fields=["ca", "number"], name="unique_crl_number")]

    def __str__(self) -> str:
        return f"CRL {self.number} of {self.ca}"


class StatusCount(models.Model):
    """Requests per status, kept by the services so list pages never count the whole table."""

    status = models.CharField(max_length=16, primary_key=True)
    count = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.status}: {self.count}"


class AuditQuerySet(models.QuerySet):
    def bulk_create(self, objs, *args, **kwargs):
        """Insert many rows at once, chained in the order given."""
        objs = list(objs)
        with transaction.atomic(using=self.db, savepoint=False):
            auditchain.chain(objs, using=self.db)
            return super().bulk_create(objs, *args, **kwargs)

    def update(self, **kwargs):
        raise TypeError("audit events are append-only; they cannot be updated")

    def delete(self):
        raise TypeError("audit events are append-only; they cannot be deleted")


class AuditEvent(models.Model):
    """One row per state change. Append-only: never updated, never deleted; each row is
    chained to its predecessor by hash (requests_app.auditchain; `manage.py verify_audit`)."""

    # Set under the chain's lock when the row is chained (it is part of the hash).
    time = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(max_length=150, help_text='A username, "requester" or "system".')
    action = models.CharField(max_length=64)
    request = models.ForeignKey(
        CertificateRequest,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="audit_events",
    )
    certificate = models.ForeignKey(
        Certificate, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events"
    )
    ca = models.ForeignKey(
        CertificateAuthority, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    details = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    #: The row's place in the chain (1, 2, ...), the hash of the row before it, and the
    #: SHA-256 of this row's contents with that link.
    seq = models.PositiveBigIntegerField(null=True, unique=True, editable=False)
    prev_hash = models.CharField(max_length=64, blank=True, editable=False)
    hash = models.CharField(max_length=64, blank=True, editable=False)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["time", "id"]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise TypeError("audit events are append-only; they cannot be updated")
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        with transaction.atomic(using=using, savepoint=False):
            auditchain.chain([self], using=using)
            super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("audit events are append-only; they cannot be deleted")


class AuditChainHead(models.Model):
    """The one row (id 1) that holds the end of the audit chain; its lock orders writers.

    `mac` signs (seq, hash) so that cutting rows off the end needs AUDIT_HMAC_KEY."""

    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64)
    mac = models.CharField(max_length=64)
    checkpoint_seq = models.PositiveBigIntegerField(default=0)
    checkpoint_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"audit chain head at seq {self.seq}"


class AuditCheckpoint(models.Model):
    """A signed statement that the audit chain had this hash at this seq (HMAC-SHA256 under
    AUDIT_HMAC_KEY), written every AUDIT_CHECKPOINT_ROWS rows or AUDIT_CHECKPOINT_SECONDS."""

    seq = models.PositiveBigIntegerField(unique=True)
    hash = models.CharField(max_length=64)
    created = models.DateTimeField()
    mac = models.CharField(max_length=64)

    class Meta:
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"audit checkpoint at seq {self.seq}"


class RateCount(models.Model):
    """One client's uses in one window of a rate limit (throttle.within_shared_rate): rows
    in the database, so that every process and machine counts against the same budget."""

    key = models.CharField(max_length=100, unique=True)
    count = models.PositiveIntegerField(default=0)
    #: The end of the window; later rows are deleted when a new window starts.
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.count} until {self.expires_at:%Y-%m-%d %H:%M}"
