"""Signing a request's certificate: the checks an approval makes, the CA it signs with,
and the rows it completes. Shared by the single approval and the bulk path."""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from .. import keys, pki, profiles
from ..models import AuditEvent, Certificate, CertificateAuthority, CertificateRequest
from .audit_log import audit, audit_event
from .errors import CAUnavailable, InvalidRequest, InvalidTransition, LintFailed

Status = CertificateRequest.Status
User = AbstractBaseUser


def check_approval(
    req: CertificateRequest, *, validity_days: int | None, sans: list[str] | None
) -> tuple[profiles.Profile, int, list[pki.GeneralName]]:
    """The profile, validity and SANs to issue with, each checked against the profile."""
    try:
        prof = profiles.get_profile(req.profile)
    except profiles.ProfileError as exc:
        raise InvalidRequest(str(exc), field="profile") from None
    if prof.confirm_email and req.email_confirmed_at is None and req.requested_sans:
        # The certificate names the address: only one shown to be the requester's.
        raise InvalidTransition(
            f"the email address of request {req.display_id} was never confirmed by its "
            "requester; cancel the request and ask them to submit it again"
        )
    try:
        days = profiles.check_validity(prof, validity_days)
    except profiles.ProfileError as exc:
        raise InvalidRequest(str(exc), field="validity_days") from None
    chosen = req.requested_sans if sans is None else list(sans)
    try:
        names = profiles.check_sans(prof, chosen, requester_email=req.requester_email)
    except profiles.ProfileError as exc:
        raise InvalidRequest(str(exc), field="sans") from None
    return prof, days, names


def signing_ca() -> CertificateAuthority:
    """The default CA, its key ready to sign (opened once per process), or CAUnavailable."""
    try:
        ca = CertificateAuthority.objects.default()
        keys.backend_for(ca).check_usable(ca)
    except pki.CAError as exc:
        raise CAUnavailable(f"cannot issue: {exc}") from None
    return ca


def sign(
    req: CertificateRequest,
    prof: profiles.Profile,
    ca: CertificateAuthority,
    *,
    validity_days: int,
    sans: list[pki.GeneralName],
) -> Certificate:
    """Build and sign the certificate for req; returns it unsaved.

    A request that was accepted but cannot be signed (a CSR that no longer reads, a subject
    the profile now refuses) is an InvalidRequest naming the cause, never a crash."""
    if req.renewal_of_id is not None and req.renewal_of.status == Certificate.Status.REVOKED:
        raise InvalidTransition(
            f"certificate {req.renewal_of.serial_colons} was revoked after this renewal was "
            "requested; reject the request"
        )
    if req.csr_pem or req.renewal_of_id is None:
        try:
            csr = pki.load_csr(req.csr_pem)
            public_key, subject = csr.public_key(), csr.subject
        except (pki.PKIError, ValueError, UnsupportedAlgorithm) as exc:
            raise InvalidRequest(
                f"the stored CSR cannot be signed: {exc}; reject the request", field="csr"
            ) from None
        if req.renewal_of_id is not None and not len(subject):
            subject = req.renewal_of.x509.subject  # a renewal's CSR that carries only the key
    else:  # a renewal by serial (Dogtag protocol) has no CSR: the renewed certificate's key
        public_key, subject = req.renewal_of.x509.public_key(), req.renewal_of.x509.subject
    try:
        # Rebuilt from the checked attributes, never copied from the requester's DER.
        subject = profiles.issued_subject(prof, subject, requester_email=req.requester_email).name
    except ValueError as exc:  # ProfileError, or a value the builder will not encode
        raise InvalidRequest(f"cannot issue: {exc}", field="csr") from None
    try:  # never sign a name that the CA's (or its issuers') name constraints forbid
        pki.check_names_permitted(
            ca.full_chain,
            [n.value for n in sans if isinstance(n, x509.DNSName)],
            common_name=pki.common_name(subject),
        )
    except pki.NameNotPermitted as exc:
        raise InvalidRequest(f"cannot issue: {exc}", field="sans") from None
    options = profiles.certificate_options(prof, public_key=public_key, subject=subject, sans=sans)
    try:
        builder = pki.certificate_builder(
            ca_cert=ca.certificate,
            public_key=public_key,
            sans=sans,
            validity_days=validity_days,
            ca_issuers_url=ca.ca_issuers_url(),
            crl_url=ca.crl_url(),
            ocsp_url=ca.ocsp_url(),
            **options,
        )
        linted = lint_before_signing(builder, ca, prof) if settings.PREISSUANCE_LINT else None
        cert = keys.backend_for(ca).sign_certificate(ca, builder)
    except pki.PKIError as exc:
        raise CAUnavailable(f"cannot issue: {exc}") from None
    if linted is not None and not pki.same_tbs(linted, cert):
        # The CA key signed something other than what was linted: never hand it out.
        raise CAUnavailable(
            "cannot issue: the key backend signed a certificate that differs from the one "
            "linted before signing"
        )
    return certificate_row(cert, ca, profile=req.profile, subject=options["subject"], sans=sans)


def certificate_row(
    cert: x509.Certificate,
    ca: CertificateAuthority,
    *,
    profile: str,
    subject: x509.Name,
    sans: list[pki.GeneralName],
) -> Certificate:
    """The unsaved row for a certificate just signed, from what the builder was given (the
    subject, the SANs) and one serialisation of the signed bytes (PEM, fingerprint)."""
    encoded = pki.encoded(cert)
    subject_text = subject.rfc4514_string()
    row = Certificate(
        ca=ca,
        serial=pki.serial_hex(cert.serial_number),
        subject=subject_text,
        subject_search=pki.subject_search_key(subject_text, name=subject),
        sans=[pki.san_to_text(n) for n in sans],
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        profile=profile,
        pem=encoded.pem,
        fingerprint_sha256=encoded.sha256_hex,
        created=timezone.now(),
    )
    row.__dict__["x509"] = cert  # the cached_property: delivery and pages need not parse it
    return row


def lint_before_signing(
    builder: x509.CertificateBuilder, ca: CertificateAuthority, prof: profiles.Profile
) -> x509.Certificate:
    """The certificate builder would make, signed by a throwaway key of the CA's key type
    and linted with the profile's linters; LintFailed for a finding at ERROR or worse."""
    key_type = pki.key_type_of(ca.certificate.public_key())
    linted, findings = pki.lint_builder(
        builder,
        key_type=key_type,
        linters=prof.linters,
        allow_single_label=prof.allow_single_label_names,
    )
    errors = [f for f in findings if f.at_least("ERROR")]
    if errors:
        raise LintFailed(
            "cannot issue: the certificate was linted before signing and not signed, "
            f"because pkilint ({', '.join(prof.linters)}) found: "
            + "; ".join(str(f) for f in errors),
            findings=errors,
        )
    return linted


def lint_refusal_audit(
    exc: LintFailed,
    *,
    req: CertificateRequest | None,
    agent: User | None,
    ip: str | None,
    profile: str = "",
    subject: str = "",
) -> AuditEvent:
    """The issuance_refused_by_lint audit row, unsaved."""
    return audit_event(
        "issuance_refused_by_lint",
        actor=agent,
        request=req,
        ip=ip,
        profile=req.profile if req is not None else profile,
        subject=req.subject if req is not None else subject,
        findings=[
            {"severity": f.severity, "code": f.code, "message": f.message, "path": f.path}
            for f in exc.findings
        ],
    )


def complete(req: CertificateRequest, cert: Certificate, *, agent: User | None, note: str) -> None:
    req.status = Status.COMPLETE
    req.certificate = cert
    req.acted_by = agent
    req.agent_note = note.strip()
    req.updated_at = timezone.now()


def approval_audit(
    req: CertificateRequest,
    cert: Certificate,
    *,
    agent: User | None,
    ip: str | None,
    days: int,
    edited_sans: bool,
) -> AuditEvent:
    """The request_approved audit row, unsaved (the bulk path inserts many at once)."""
    return audit_event(
        "request_approved",
        actor=agent,
        request=req,
        certificate=cert,
        ca=cert.ca,
        ip=ip,
        serial=cert.serial,
        validity_days=days,
        sans=cert.sans,
        edited_sans=edited_sans,
    )


def supersede(
    req: CertificateRequest, cert: Certificate, *, agent: User | None, ip: str | None
) -> None:
    """A renewal was issued: mark the certificate it renews superseded by cert, in the
    issuance's transaction, with an audit row. The old one stays valid."""
    if req.renewal_of_id is None:
        return
    now = timezone.now()
    marked = Certificate.objects.filter(pk=req.renewal_of_id, superseded_by__isnull=True).update(
        superseded_by=cert, superseded_at=now
    )
    if not marked:  # renewed before (a certmonger renewal and a web one): the first one counts
        return
    old = req.renewal_of
    old.superseded_by, old.superseded_at = cert, now
    audit(
        "certificate_superseded",
        actor=agent,
        request=req,
        certificate=old,
        ca=old.ca,
        ip=ip,
        serial=old.serial,
        superseded_by=cert.serial,
    )
