"""Renewal from the end-entity pages (Dogtag's manual renewal profiles): from a
certificate's page, with a new CSR, the same key's CSR, or a key made here, for the renewed
certificate's profile, subject, names and requester."""

from __future__ import annotations

from cryptography.x509.oid import NameOID
from django.conf import settings
from django.db import transaction
from django.views.decorators.debug import sensitive_variables

from .. import pki, profiles, signals, throttle
from ..models import Certificate, CertificateRequest
from .agent_certificates import AGENT_PROFILE
from .audit_log import audit
from .errors import InvalidRequest
from .records import move_count
from .renewals import approve_renewal_if_allowed, refuse_renewal_in_queue, renewal_changes
from .server_keys import offers_server_key
from .submission import PUBLIC_CHANNELS, _refuse_duplicate

Status = CertificateRequest.Status

# --- renewal from the end-entity pages ----------------------------------------------------
#
# A certificate page is public (anyone who knows the serial), so a renewal asked for there
# must not give a stranger a certificate for somebody else's names. The rules:
# - it carries the renewed certificate's profile, subject and names; the CSR may leave names
#   out, never add any (a CSR for other names is a new request, not a renewal);
# - its requester is the renewed certificate's requester: mail goes to that address only;
# - a CSR signed by the renewed certificate's key proves its holder asked; any other key
#   (or a profile with confirm_email) waits until the address's owner confirms the code
#   mailed there, so a stranger's renewal never reaches the agents;
# - an agent approves it, unless the profile's auto_approve_same_key_renewal holds for it;
# - the usual limits: per client address (the views), mail per recipient and day, one key
#   waiting per profile, one renewal of a certificate in the agents' queue at a time.


def _renewable(certificate: str | Certificate) -> Certificate:
    """The certificate to renew from the web, locked; InvalidRequest when it cannot be."""
    if isinstance(certificate, Certificate):
        cert = Certificate.objects.select_for_update().filter(pk=certificate.pk).first()
    else:
        try:
            cert = Certificate.objects.select_for_update().by_serial(str(certificate))
        except pki.SerialError as exc:  # digits that name two certificates
            raise InvalidRequest(str(exc), field="serial") from None
    if cert is None:
        raise InvalidRequest("no certificate with that serial number was issued here")
    if cert.status == Certificate.Status.REVOKED:
        raise InvalidRequest(
            f"certificate {cert.serial_colons} is revoked, so it cannot be renewed; request a new "
            "certificate with a new key"
        )
    if cert.superseded_by_id is not None:
        raise InvalidRequest(
            f"certificate {cert.serial_colons} was renewed already: certificate "
            f"{cert.superseded_by.serial_colons} replaces it. Renew that one when it is due."
        )
    original = cert.issued_request
    if original is None or original.agent_for_id is not None or cert.profile == AGENT_PROFILE:
        # An agent's login certificate is renewed by the agent, logged in, from their
        # own certificates page (another agent approves it and it is linked to them).
        raise InvalidRequest(
            f"certificate {cert.serial_colons} cannot be renewed from this page; ask an agent"
        )
    return cert


def _renewed_names(
    prof: profiles.Profile, cert: Certificate, info: pki.CSRInfo, subject: pki.CheckedSubject
) -> list[str]:
    """The names a renewal's certificate will carry: the CSR's (under the profile's rules),
    which must be among the renewed certificate's; the old names when the CSR names none."""
    email = cert.issued_request.requester_email
    try:
        names = profiles.requested_sans(
            prof,
            csr_sans=info.sans,
            # The CSR's own CN: an empty subject takes the old one, but names nothing new.
            subject_cn=subject.get("CN") if len(info.csr.subject) else None,
            extra_hostnames=[],
            requester_email=email,
        )
    except profiles.ProfileError as exc:
        if info.sans:
            raise InvalidRequest(str(exc), field="csr") from None
        names = list(cert.sans)  # a CSR that carries the key alone keeps the old names
    added = [n for n in names if n not in cert.sans]
    if added:
        raise InvalidRequest(
            f"a renewal keeps the names of certificate {cert.serial_colons}; this CSR also names "
            f"{', '.join(added)}. Leave them out, or request a new certificate for them.",
            field="csr",
        )
    return names


@transaction.atomic
def submit_web_renewal(
    certificate: str | Certificate,
    *,
    csr: str | bytes,
    note: str = "",
    ip: str | None = None,
    channel: str = "web",
) -> tuple[CertificateRequest, Certificate | None]:
    """Renew a certificate with a CSR (a new key, or the same one): the request carries the
    renewed certificate's profile, subject, names and requester. Returns the request, and
    the new certificate when the profile's same-key rule issued it at once."""
    cert = _renewable(certificate)
    try:
        prof = profiles.get_profile(cert.profile)
    except profiles.ProfileError:
        raise InvalidRequest(
            f"certificate {cert.serial_colons} was issued under the profile "
            f"{cert.profile!r}, which "
            "is no longer offered; request a new certificate",
            field="profile",
        ) from None
    original = cert.issued_request
    email = original.requester_email
    try:
        info = pki.check_csr(csr, allow_ed25519=prof.allow_ed25519)
        subject_name = info.csr.subject if len(info.csr.subject) else cert.x509.subject
        subject = profiles.issued_subject(prof, subject_name, requester_email=email)
    except pki.CSRError as exc:
        raise InvalidRequest(str(exc), field="csr") from None
    except profiles.ProfileError as exc:
        raise InvalidRequest(str(exc), field="csr") from None
    names = _renewed_names(prof, cert, info, subject)
    _refuse_duplicate(prof, info.public_key_sha256)
    refuse_renewal_in_queue(cert)
    if channel in PUBLIC_CHANNELS and not throttle.enrollment_mail_allowed(email):
        raise InvalidRequest(
            "We have sent as many messages to this certificate's requester today as we send "
            "to one address in a day, so we cannot take a renewal now. Try again tomorrow."
        )
    same_key = info.public_key_sha256 == pki.public_key_sha256(cert.x509.public_key())
    # A CSR signed by the certificate's own key proves its holder asked; anyone else must
    # show they read the requester's mail (and confirm_email profiles prove it each time).
    awaiting = prof.confirm_email or not same_key
    req = CertificateRequest.objects.create(
        status=Status.AWAITING_EMAIL if awaiting else Status.PENDING,
        profile=prof.name,
        csr_pem=info.pem,
        subject=subject.text,
        key_type=info.key_type,
        key_size=info.key_size,
        public_key_sha256=info.public_key_sha256,
        requested_sans=names,
        requester_name=original.requester_name,
        requester_email=email,
        requester_note=note.strip(),
        submitter_ip=ip,
        renewal_of=cert,
        channel=channel,
    )
    move_count(None, req.status)
    changes = renewal_changes(req)
    audit(
        "renewal_submitted",
        actor=None,
        actor_label="requester",
        request=req,
        certificate=cert,
        ip=ip,
        profile=req.profile,
        subject=req.subject,
        sans=req.requested_sans,
        renewal_of=cert.serial,
        same_key=same_key,
        names_removed=list(changes.removed),
        subject_changed=changes.subject_changed,
        **({"email_confirmation": "awaiting"} if awaiting else {}),
    )
    if awaiting:
        signals.email_confirmation_requested.send(
            sender=CertificateRequest, request=req, actor=None
        )
        return req, None
    signals.request_submitted.send(sender=CertificateRequest, request=req, actor=None)
    return req, approve_renewal_if_allowed(req, ip=ip)


@sensitive_variables()  # the passphrase
@transaction.atomic
def submit_renewal_with_server_key(
    certificate: str | Certificate, *, passphrase: str, note: str = "", ip: str | None = None
) -> CertificateRequest:
    """Renew a certificate whose profile offers keys made here: a new key, sealed under the
    new passphrase, handed over once when the renewal is issued."""
    cert = _renewable(certificate)
    if not offers_server_key(cert.profile):
        raise InvalidRequest(
            f"the {cert.profile} profile does not offer keys made by the portal; submit a CSR",
            field="passphrase",
        )
    try:
        pki.check_passphrase(passphrase)
    except pki.PKIError as exc:
        raise InvalidRequest(str(exc), field="passphrase") from None
    cns = cert.x509.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(cns[0].value) if cns else cert.issued_request.requester_name
    key = pki.generate_private_key(settings.SERVER_KEY_TYPE)
    try:
        csr = pki.build_csr(key, common_name)
    except pki.CSRError as exc:
        raise InvalidRequest(str(exc), field="passphrase") from None
    req, _ = submit_web_renewal(cert, csr=csr, note=note, ip=ip)
    req.encrypted_private_key = pki.seal(key, passphrase)
    req.save(update_fields=["encrypted_private_key", "updated_at"])
    audit(
        "server_key_generated",
        actor=None,
        actor_label="requester",
        request=req,
        ip=ip,
        key_type=pki.key_type_of(key),
    )
    signals.server_key_changed.send(
        sender=CertificateRequest, request=req, event="generated", actor=None
    )
    return req
