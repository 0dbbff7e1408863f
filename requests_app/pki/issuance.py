"""What a CA issues: end-entity certificates and the certificate of its delegated OCSP
responder. The builders come back unsigned; whoever holds the CA key signs them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .authority import authority_key_identifier
from .clock import utcnow
from .errors import CAError, CSRError
from .keys import PrivateKey, PublicKey, sign
from .names import common_name

EKU_OIDS = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
}

UB_COMMON_NAME = 64  # RFC 5280's upper bound of a commonName

#: The CA/Browser Forum's reserved certificate policy OIDs (TLS Baseline Requirements 7.1.6.1,
#: S/MIME Baseline Requirements 7.1.6.1), for profiles that follow the Baseline Requirements.
CABF_POLICY_OIDS = {
    "serverauth-dv": "2.23.140.1.2.1",
    "serverauth-ov": "2.23.140.1.2.2",
    "serverauth-iv": "2.23.140.1.2.3",
    "serverauth-ev": "2.23.140.1.1",
    "smime-mailbox-legacy": "2.23.140.1.5.1.1",
    "smime-mailbox-multipurpose": "2.23.140.1.5.1.2",
    "smime-mailbox-strict": "2.23.140.1.5.1.3",
}


def key_usage_for(key: PublicKey, *, encipherment: bool) -> x509.KeyUsage:
    """digitalSignature always; keyEncipherment for RSA, keyAgreement for EC, when wanted."""
    is_rsa = isinstance(key, rsa.RSAPublicKey)
    is_ec = isinstance(key, ec.EllipticCurvePublicKey)
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=encipherment and is_rsa,
        data_encipherment=False,
        key_agreement=encipherment and is_ec,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def baseline_key_usage(key: PublicKey, *, kind: str) -> x509.KeyUsage:
    """Key usage as the Baseline Requirements recommend: a TLS server certificate signs only
    (keyEncipherment with RSA and keyAgreement with EC are discouraged, TLS BR 7.1.2.7.11);
    an S/MIME certificate also encrypts (keyEncipherment for RSA, keyAgreement for EC)."""
    if kind == "serverauth":
        return key_usage_for(key, encipherment=False)
    if kind == "smime":
        return key_usage_for(key, encipherment=True)
    raise ValueError(f"no Baseline Requirements for certificates of kind {kind!r}")


def baseline_subject(*, kind: str, email: str | None = None) -> x509.Name:
    """The subject the Baseline Requirements allow for what the portal validates: none for a
    domain-validated TLS certificate (its names are in subjectAltName; a commonName is not
    recommended, TLS BR 7.1.2.7.2), the confirmed mailbox as commonName for a
    mailbox-validated S/MIME certificate (S/MIME BR 7.1.4.2.2), or none when the address is
    longer than a commonName may be (64 characters, RFC 5280's ub-common-name)."""
    if kind == "serverauth":
        return x509.Name([])
    if kind == "smime":
        if not email:
            raise CSRError("a mailbox-validated S/MIME certificate needs the email address")
        if len(email) > UB_COMMON_NAME:
            return x509.Name([])
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, email)])
    raise ValueError(f"no Baseline Requirements for certificates of kind {kind!r}")


def certificate_builder(
    *,
    ca_cert: x509.Certificate,
    public_key: PublicKey,
    subject: x509.Name,
    sans: list[x509.GeneralName],
    extended_key_usages: list[str],
    validity_days: int,
    key_encipherment: bool = True,
    key_usage: x509.KeyUsage | None = None,
    policy_oids: Sequence[str] = (),
    subject_key_identifier: bool = True,
    ca_issuers_url: str | None = None,
    crl_url: str | None = None,
    ocsp_url: str | None = None,
    now: dt.datetime | None = None,
) -> x509.CertificateBuilder:
    """The unsigned end-entity certificate ca_cert's key is to sign.

    key_usage replaces the default (digitalSignature, and keyEncipherment or keyAgreement when
    key_encipherment); policy_oids become a certificatePolicies extension; without
    subject_key_identifier the certificate has none (TLS BR 7.1.2.7.6 for subscribers)."""
    now = now or utcnow()
    # Backdated a minute for clocks running behind, but never before the CA's own validity;
    # and never past the CA's end, when the certificate could no longer be verified.
    not_before = max(now - dt.timedelta(minutes=1), ca_cert.not_valid_before_utc)
    not_after = min(now + dt.timedelta(days=validity_days), ca_cert.not_valid_after_utc)
    if not_after <= now:
        raise CAError("the CA certificate has expired; it cannot issue")
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            key_usage or key_usage_for(public_key, encipherment=key_encipherment), critical=True
        )
    )
    if subject_key_identifier:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
    builder = builder.add_extension(authority_key_identifier(ca_cert), critical=False)
    if policy_oids:
        builder = builder.add_extension(
            x509.CertificatePolicies(
                [x509.PolicyInformation(x509.ObjectIdentifier(oid), None) for oid in policy_oids]
            ),
            critical=False,
        )
    if extended_key_usages:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([EKU_OIDS[name] for name in extended_key_usages]), critical=False
        )
    if sans:
        # RFC 5280 4.2.1.6: with an empty subject the SAN extension must be critical.
        builder = builder.add_extension(
            x509.SubjectAlternativeName(sans), critical=len(subject) == 0
        )
    elif len(subject) == 0:
        raise CSRError("the certificate would have neither a subject nor an alternative name")
    access = []
    if ocsp_url:
        access.append(
            x509.AccessDescription(
                x509.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
            )
        )
    if ca_issuers_url:
        access.append(
            x509.AccessDescription(
                x509.AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier(ca_issuers_url),
            )
        )
    if access:
        builder = builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
    if crl_url:
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        full_name=[x509.UniformResourceIdentifier(crl_url)],
                        relative_name=None,
                        reasons=None,
                        crl_issuer=None,
                    )
                ]
            ),
            critical=False,
        )
    return builder


def issue_certificate(*, ca_key: PrivateKey, **options) -> x509.Certificate:
    """Build and sign an end-entity certificate with a key held in memory (tests, tools)."""
    return sign(certificate_builder(**options), ca_key)


def ocsp_responder_builder(
    *,
    ca_cert: x509.Certificate,
    public_key: PublicKey,
    validity_days: int,
    now: dt.datetime | None = None,
) -> x509.CertificateBuilder:
    """The unsigned certificate of a delegated OCSP responder of this CA (RFC 6960 4.2.2.2):
    id-kp-OCSPSigning, and id-pkix-ocsp-nocheck so that clients do not ask about it."""
    now = now or utcnow()
    not_after = min(now + dt.timedelta(days=validity_days), ca_cert.not_valid_after_utc)
    if not_after <= now:
        raise CAError("the CA certificate has expired; it cannot delegate OCSP")
    cn = x509.NameAttribute(
        NameOID.COMMON_NAME, f"{common_name(ca_cert.subject) or 'CA'} OCSP Responder"[:64]
    )
    # The CA's name with its CN replaced, in the CA's order.
    others = [a for a in ca_cert.subject if a.oid != NameOID.COMMON_NAME]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([*others, cn]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(max(now - dt.timedelta(minutes=1), ca_cert.not_valid_before_utc))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage_for(public_key, encipherment=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(authority_key_identifier(ca_cert), critical=False)
    )
