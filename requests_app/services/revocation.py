"""Revocation: revoke and release certificates, publish CRLs, delegate OCSP signing."""

from __future__ import annotations

import datetime as dt

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from .. import keys, pki, signals
from ..models import Certificate, CertificateAuthority
from ..pki import HOLD, REASONS, REMOVE_FROM_CRL
from .audit_log import audit
from .errors import AlreadyRevoked, CAUnavailable, InvalidRequest, NotOnHold
from .records import lock_certificate

User = AbstractBaseUser


def _regenerate_crl_on_commit(ca_id: int) -> None:
    from .. import tasks  # django.tasks is loaded only by code that enqueues

    transaction.on_commit(lambda: tasks.schedule_crl(ca_id))


@transaction.atomic
def revoke_certificate(
    serial: str | Certificate,
    *,
    reason: str,
    actor: User | None,
    invalidity_date: dt.datetime | None = None,
    ip: str | None = None,
) -> Certificate:
    """Revoke a certificate for an RFC 5280 reason; certificateHold alone can be released.

    A certificate on hold may be revoked for a final reason (as Dogtag allows); it keeps the
    revocation time of its hold, since it has been out of service from then on.
    """
    if reason not in REASONS:
        raise InvalidRequest(
            f"{reason!r} is not a revocation reason; use one of {', '.join(REASONS)}",
            field="reason",
        )
    now = pki.utcnow()
    if invalidity_date is not None:
        if invalidity_date.tzinfo is None:
            invalidity_date = invalidity_date.replace(tzinfo=dt.UTC)
        if invalidity_date > now:
            raise InvalidRequest(
                "the invalidity date cannot be in the future: it is when the key was (or is "
                "suspected to have been) compromised, or the certificate otherwise became invalid",
                field="invalidity_date",
            )
    cert = lock_certificate(serial)
    previous = cert.revocation_reason if cert.status == Certificate.Status.REVOKED else ""
    if previous and (previous != HOLD or reason == HOLD):
        state = "on hold" if previous == HOLD else f"revoked ({previous}, final)"
        raise AlreadyRevoked(
            f"certificate {cert.serial_colons} is already {state} since "
            f"{cert.revoked_at:%Y-%m-%d %H:%M:%S} UTC"
        )
    cert.status = Certificate.Status.REVOKED
    cert.revocation_reason = reason
    cert.revoked_at = cert.revoked_at if previous else now
    cert.invalidity_date = invalidity_date or (cert.invalidity_date if previous else None)
    cert.save(update_fields=["status", "revocation_reason", "revoked_at", "invalidity_date"])
    audit(
        "certificate_revoked",
        actor=actor,
        request=cert.issued_request,
        certificate=cert,
        ca=cert.ca,
        ip=ip,
        serial=cert.serial,
        reason=reason,
        invalidity_date=cert.invalidity_date.isoformat() if cert.invalidity_date else None,
        previous_reason=previous or None,
    )
    signals.certificate_revoked.send(
        sender=Certificate, certificate=cert, reason=reason, actor=actor
    )
    _regenerate_crl_on_commit(cert.ca_id)
    return cert


@transaction.atomic
def release_hold(
    serial: str | Certificate, *, actor: User | None, ip: str | None = None
) -> Certificate:
    """Take a certificate off hold: it is valid again and leaves the CRL."""
    cert = lock_certificate(serial)
    if cert.status != Certificate.Status.REVOKED or cert.revocation_reason != HOLD:
        state = (
            f"revoked for {cert.revocation_reason}, which is final"
            if cert.status == Certificate.Status.REVOKED
            else cert.status
        )
        raise NotOnHold(f"certificate {cert.serial_colons} is not on hold: it is {state}")
    held_since = cert.revoked_at
    cert.status = Certificate.Status.VALID
    cert.revocation_reason = ""
    cert.revoked_at = None
    cert.invalidity_date = None
    cert.save(update_fields=["status", "revocation_reason", "revoked_at", "invalidity_date"])
    audit(
        "certificate_hold_released",
        actor=actor,
        request=cert.issued_request,
        certificate=cert,
        ca=cert.ca,
        ip=ip,
        serial=cert.serial,
        held_since=held_since.isoformat() if held_since else None,
    )
    signals.certificate_revoked.send(
        sender=Certificate, certificate=cert, reason=REMOVE_FROM_CRL, actor=actor
    )
    _regenerate_crl_on_commit(cert.ca_id)
    return cert


@transaction.atomic
def create_ocsp_responder(
    *, validity_days: int = 90, ca: CertificateAuthority | None = None, actor: User | None = None
) -> pki.X509Certificate:
    """Issue a delegated OCSP responder certificate for a CA (the default one) and have the
    CA's key backend keep it with its key; the responder signs from the next request on."""
    if validity_days < 1 or validity_days > 3650:
        raise InvalidRequest("the validity must be between 1 and 3650 days", field="validity_days")
    try:
        ca = ca or CertificateAuthority.objects.default()
        backend = keys.backend_for(ca)
        backend.check_usable(ca)
        key = backend.generate_key(pki.key_type_of(ca.certificate.public_key()))
        builder = pki.ocsp_responder_builder(
            ca_cert=ca.certificate, public_key=key.public_key, validity_days=validity_days
        )
        cert = backend.sign_certificate(ca, builder)
    except pki.CAError as exc:
        raise CAUnavailable(f"cannot create the OCSP responder: {exc}") from None
    audit(
        "ocsp_responder_created",
        actor=actor,
        ca=ca,
        serial=pki.serial_hex(cert.serial_number),
        not_after=cert.not_valid_after_utc.isoformat(),
    )
    signals.ocsp_responder_created.send(
        sender=CertificateAuthority, ca=ca, certificate=cert, actor=actor
    )
    # Written last: if anything above fails, no responder is swapped in.
    try:
        backend.store_ocsp_responder(ca, key, cert)
    except pki.CAError as exc:  # a key backend that keeps it elsewhere (a token) refused
        raise CAUnavailable(f"cannot store the OCSP responder: {exc}") from None
    except OSError as exc:
        raise CAUnavailable(
            f"cannot write the OCSP responder files: {exc.strerror or exc}"
        ) from None
    return cert
