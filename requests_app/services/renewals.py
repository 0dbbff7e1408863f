"""Renewal by serial number (Dogtag's renewal, as certmonger asks for it): same profile,
subject, SANs and key, always through the agent queue."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from .. import pki, profiles, signals
from ..models import Certificate, CertificateRequest
from .audit_log import audit
from .errors import InvalidRequest
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
    cert = Certificate.objects.select_for_update().with_serial(serial).first()
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
        validate_email(email)
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
