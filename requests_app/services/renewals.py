"""Renewal by serial number (Dogtag's renewal, as certmonger asks for it): same profile,
subject, SANs and key, always through the agent queue. And what every renewal shares: what
it changes against the certificate it renews, one renewal of a certificate in the queue,
and the profile's same-key rule for issuing without an agent (renewals from the end-entity
pages are in web_renewals)."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .. import pki, profiles, signals
from ..models import Certificate, CertificateRequest
from ..validators import validate_recipient_email
from .audit_log import audit
from .decisions import approve_request
from .errors import CAUnavailable, InvalidRequest, InvalidTransition, LintFailed
from .issuance import lint_refusal_audit
from .records import move_count

Status = CertificateRequest.Status
User = AbstractBaseUser

MAX_SERIAL_CHARS = 80  # a 159-bit serial has 48 decimal digits


def _certificate_to_renew(certificate: str | int | Certificate) -> Certificate:
    """The certificate named by a decimal serial (or 0x hex, as Dogtag accepts), locked."""
    if isinstance(certificate, Certificate):
        serial = certificate.serial
    else:
        text = str(certificate).strip()
        try:
            if len(text) > MAX_SERIAL_CHARS:
                raise ValueError(text)
            number = int(text, 16) if text.lower().startswith("0x") else int(text, 10)
            if number < 0:
                raise ValueError(text)
        except ValueError:
            shown = text if len(text) <= 40 else text[:40] + "..."
            raise InvalidRequest(
                f"{shown!r} is not a certificate serial number (decimal, or hex with 0x)",
                field="serial",
            ) from None
        serial = pki.serial_hex(number)
    # Locked so that two renewals of one certificate cannot both find no pending one.
    cert = Certificate.objects.select_for_update().with_serial(int(serial, 16)).first()
    if cert is None:
        raise InvalidRequest(
            f"no certificate with serial number {int(serial, 16)} (0x{serial}) was issued here",
            field="serial",
        )
    return cert


@transaction.atomic
def submit_renewal(
    certificate: str | int | Certificate,
    *,
    requester_email: str | None = None,
    ip: str | None = None,
    channel: str = "dogtag",
    actor: User | None = None,
) -> CertificateRequest:
    """Queue the renewal of an issued certificate: same profile, subject, SANs and key."""
    # Never issued without an agent, whatever the profile says: anyone can name a serial,
    # and an anonymous renewal by serial is Dogtag's CVE-2021-20179.
    cert = _certificate_to_renew(certificate)
    if cert.status == Certificate.Status.REVOKED:
        raise InvalidRequest(
            f"certificate 0x{cert.serial} is revoked, so it cannot be renewed; "
            "request a new certificate with a new key",
            field="serial",
        )
    # certmonger resubmits after every lost cookie; one waiting renewal per certificate.
    waiting = (
        cert.renewals.filter(status__in=[Status.PENDING, Status.AWAITING_EMAIL])
        .order_by("submitted_at", "pk")
        .first()
    )
    if waiting is not None:
        return waiting
    try:
        prof = profiles.get_profile(cert.profile)
    except profiles.ProfileError:
        raise InvalidRequest(
            f"certificate 0x{cert.serial} was issued under the profile {cert.profile!r}, "
            "which is no longer offered; request a new certificate",
            field="profile",
        ) from None
    key = cert.x509.public_key()
    try:
        pki.check_csr_key(key, allow_ed25519=prof.allow_ed25519)
    except pki.CSRError as exc:
        raise InvalidRequest(
            f"the key of certificate 0x{cert.serial} is no longer accepted: {exc}", field="serial"
        ) from None
    # Mail about the renewal goes to whoever asked for the original, not to a name given now.
    original = cert.issued_request
    email = original.requester_email if original else (requester_email or "").strip()
    try:
        validate_recipient_email(email)  # mail goes there: delivery's check
    except ValidationError:
        raise InvalidRequest(
            f"{email!r} is not a valid email address", field="requester_email"
        ) from None
    # The address is proved again for each certificate that names it, renewals too (the
    # S/MIME Baseline Requirements reuse a mailbox validation for 30 days at most).
    awaiting = prof.confirm_email
    req = CertificateRequest.objects.create(
        status=Status.AWAITING_EMAIL if awaiting else Status.PENDING,
        profile=prof.name,
        csr_pem="",
        subject=cert.subject,
        key_type=pki.key_type_of(key),
        key_size=pki.key_description(key)[1],
        public_key_sha256=pki.public_key_sha256(key),
        requested_sans=list(cert.sans),
        requester_name=original.requester_name if original else "",
        requester_email=email,
        submitter_ip=ip,
        renewal_of=cert,
        channel=channel,
    )
    move_count(None, req.status)
    audit(
        "renewal_submitted",
        actor=actor,
        actor_label="requester",
        request=req,
        certificate=cert,
        ip=ip,
        profile=req.profile,
        subject=req.subject,
        sans=req.requested_sans,
        renewal_of=cert.serial,
        **({"email_confirmation": "awaiting"} if awaiting else {}),
    )
    if awaiting:
        signals.email_confirmation_requested.send(
            sender=CertificateRequest, request=req, actor=actor
        )
    else:
        signals.request_submitted.send(sender=CertificateRequest, request=req, actor=actor)
    return req


# --- what a renewal changes; one in the queue; the same-key rule ---------------------------

#: The rule that lets a renewal be issued without an agent (Profile field, audit detail).
AUTO_APPROVAL_RULE = "auto_approve_same_key_renewal"


@dataclass(frozen=True)
class RenewalChanges:
    """What a renewal changes against the certificate it renews: shown to the agent, and
    read by the same-key auto-approval rule."""

    same_key: bool
    old_subject: str
    new_subject: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    kept: tuple[str, ...]

    @property
    def subject_changed(self) -> bool:
        return self.old_subject != self.new_subject

    @property
    def names_unchanged(self) -> bool:
        return not (self.subject_changed or self.added or self.removed)


def _subject_text(prof: profiles.Profile | None, name: x509.Name, email: str) -> str:
    """The subject as a certificate under the profile would carry it (one form to compare)."""
    if prof is not None:
        try:
            return profiles.issued_subject(prof, name, requester_email=email).text
        except profiles.ProfileError:
            pass
    return name.rfc4514_string()


def renewal_changes(req: CertificateRequest) -> RenewalChanges | None:
    """The changes of a renewal request (key, subject, names); None for a new request."""
    old = req.renewal_of
    if old is None:
        return None
    try:
        prof = profiles.get_profile(req.profile)
    except profiles.ProfileError:
        prof = None
    new_name = old.x509.subject
    if req.csr_pem:
        try:
            csr_subject = pki.load_csr(req.csr_pem).subject
        except (pki.PKIError, ValueError):
            csr_subject = None
        if csr_subject is not None and len(csr_subject):
            new_name = csr_subject
    old_names, new_names = list(old.sans), list(req.requested_sans)
    return RenewalChanges(
        same_key=req.public_key_sha256 == pki.public_key_sha256(old.x509.public_key()),
        old_subject=_subject_text(prof, old.x509.subject, req.requester_email),
        new_subject=_subject_text(prof, new_name, req.requester_email),
        added=tuple(n for n in new_names if n not in old_names),
        removed=tuple(n for n in old_names if n not in new_names),
        kept=tuple(n for n in new_names if n in old_names),
    )


def refuse_renewal_in_queue(cert: Certificate, *, exclude: int | None = None) -> None:
    """One renewal of a certificate in the agents' queue at a time. Its ID is not named:
    the page is public, and a request ID is what the requester proves themself with."""
    waiting = cert.renewals.filter(status=Status.PENDING)
    if exclude is not None:
        waiting = waiting.exclude(pk=exclude)
    if waiting.exists():
        raise InvalidRequest(
            f"a renewal of certificate {cert.serial_colons} is already waiting for an agent; "
            "its requester can follow it with the request ID they were given"
        )


def refuse_second_pending_renewal(req: CertificateRequest) -> None:
    """Called when a renewal's address is confirmed: refused (InvalidTransition) while
    another renewal of the same certificate waits for an agent."""
    if req.renewal_of_id is None:
        return
    # Locked, so that two confirmations of renewals of one certificate serialize.
    cert = Certificate.objects.select_for_update().get(pk=req.renewal_of_id)
    try:
        refuse_renewal_in_queue(cert, exclude=req.pk)
    except InvalidRequest as exc:
        raise InvalidTransition(exc.message) from None


def auto_approval_refusal(req: CertificateRequest) -> str | None:
    """Why the same-key rule does not issue this renewal at once (None: it does)."""
    if req.renewal_of_id is None:
        return "it is not a renewal"
    try:
        prof = profiles.get_profile(req.profile)
    except profiles.ProfileError:
        return "its profile is no longer offered"
    if not prof.auto_approve_same_key_renewal:
        return f"the {prof.name} profile does not allow it"
    if not req.csr_pem:
        return "a renewal by serial number proves nothing about its key (CVE-2021-20179)"
    old = req.renewal_of
    changes = renewal_changes(req)
    if not changes.same_key:
        return "the CSR is signed by a different key"
    if old.status != Certificate.Status.VALID:
        return f"certificate {old.serial_colons} is revoked"
    if old.not_after <= timezone.now():
        return f"certificate {old.serial_colons} has expired"
    if old.superseded_by_id is not None:
        return f"certificate {old.serial_colons} was renewed already"
    if not changes.names_unchanged:
        return "the subject or names differ"
    return None


def approve_renewal_if_allowed(
    req: CertificateRequest, *, ip: str | None = None
) -> Certificate | None:
    """Issue a pending renewal without an agent when the profile's same-key rule allows it
    (audited as renewal_auto_approved, naming the rule); otherwise it stays in the queue."""
    if req.status != Status.PENDING or auto_approval_refusal(req) is not None:
        return None
    try:
        with transaction.atomic():  # a savepoint: a refused approval leaves the request queued
            cert = approve_request(req, agent=None, ip=ip)
            audit(
                "renewal_auto_approved",
                actor=None,
                actor_label="system",
                request=req,
                certificate=cert,
                ip=ip,
                rule=AUTO_APPROVAL_RULE,
                renewal_of=req.renewal_of.serial,
                serial=cert.serial,
                public_key_sha256=req.public_key_sha256,
            )
            return cert
    except LintFailed as exc:
        lint_refusal_audit(exc, req=req, agent=None, ip=ip).save(force_insert=True)
    except CAUnavailable:
        pass  # it waits in the queue; an agent sees the CA problem when approving it
    return None
