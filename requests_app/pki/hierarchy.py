"""A CA hierarchy: subordinate CAs (their CSR for an outside root, or their certificate signed
by a root held here), path length and DNS name constraints, and the checks that a chain
reaches a self-signed root and that a leaf's names are within every constraint above it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from .authority import CA_KEY_USAGE, authority_key_identifier
from .clock import utcnow
from .errors import CAError, InvalidName, PKIError
from .names import normalize_hostname, parse_dn


class NameNotPermitted(PKIError):
    """A name the issuing CA (or a CA above it) may not certify under its name constraints."""


def dns_constraint(text: str) -> str:
    """A DNS name constraint as given on the command line, normalised: "example.com" (the
    domain and every name under it) or ".example.com" (names under it only)."""
    value = text.strip()
    leading_dot = value.startswith(".")
    try:
        name = normalize_hostname(value.removeprefix("."), allow_single_label=True)
    except InvalidName as exc:
        raise CAError(f"the DNS name constraint {text!r} is not a domain name: {exc}") from None
    if name.startswith("*."):
        raise CAError(f"the DNS name constraint {text!r} may not be a wildcard")
    return f".{name}" if leading_dot else name


def name_constraints(
    permitted_dns: Sequence[str] = (), excluded_dns: Sequence[str] = ()
) -> x509.NameConstraints | None:
    """The nameConstraints extension for the DNS names given, or None for no constraint."""
    permitted = [x509.DNSName(dns_constraint(n)) for n in permitted_dns]
    excluded = [x509.DNSName(dns_constraint(n)) for n in excluded_dns]
    if not permitted and not excluded:
        return None
    return x509.NameConstraints(
        permitted_subtrees=permitted or None, excluded_subtrees=excluded or None
    )


def _constraints_of(cert: x509.Certificate) -> x509.NameConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return None


def path_length_of(cert: x509.Certificate) -> int | None:
    """basicConstraints pathLenConstraint of a CA certificate (None: unlimited)."""
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
    except x509.ExtensionNotFound:
        return None


def allowed_path_length(parent: x509.Certificate, chain: Sequence[x509.Certificate]) -> int | None:
    """The largest pathLenConstraint a new subordinate of parent may carry (None: any), or
    CAError when parent or a CA above it allows no further CA below it.

    A certificate's pathLenConstraint counts the CA certificates that may follow it in a
    path; the new subordinate follows parent (distance 1) and each issuer above it."""
    limit: int | None = None
    for distance, cert in enumerate([parent, *chain], start=1):
        if cert.issuer == cert.subject and distance > 1:
            continue  # a self-signed root does not count against those below it (RFC 5280 4.2.1.9)
        length = path_length_of(cert)
        if length is None:
            continue
        remaining = length - distance
        if remaining < 0:
            raise CAError(
                f"{cert.subject.rfc4514_string()} has pathLenConstraint {length}: it allows no "
                "further subordinate CA below it here"
            )
        limit = remaining if limit is None else min(limit, remaining)
    return limit


def check_path_length(
    wanted: int | None, parent: x509.Certificate, chain: Sequence[x509.Certificate]
) -> int | None:
    """The path length a new subordinate gets: wanted, if the CAs above allow it."""
    if wanted is not None and wanted < 0:
        raise CAError("the path length must be 0 or more")
    limit = allowed_path_length(parent, chain)
    if limit is None:
        return wanted
    if wanted is None:
        return limit
    if wanted > limit:
        raise CAError(
            f"the path length {wanted} is more than the CAs above allow (at most {limit})"
        )
    return wanted


def _ca_extensions(
    builder,
    *,
    path_length: int | None,
    permitted_dns: Sequence[str],
    excluded_dns: Sequence[str],
):
    builder = builder.add_extension(
        x509.BasicConstraints(ca=True, path_length=path_length), critical=True
    ).add_extension(CA_KEY_USAGE, critical=True)
    constraints = name_constraints(permitted_dns, excluded_dns)
    if constraints is not None:
        # RFC 5280 4.2.1.10: conforming CAs MUST mark this extension critical.
        builder = builder.add_extension(constraints, critical=True)
    return builder


def subordinate_csr_builder(
    subject: str,
    *,
    path_length: int | None = None,
    permitted_dns: Sequence[str] = (),
    excluded_dns: Sequence[str] = (),
) -> x509.CertificateSigningRequestBuilder:
    """The unsigned CSR of a subordinate CA, asking for CA:TRUE, keyCertSign and cRLSign
    (and the path length and name constraints given); the root decides what it signs."""
    if path_length is not None and path_length < 0:
        raise CAError("the path length must be 0 or more")
    builder = x509.CertificateSigningRequestBuilder().subject_name(parse_dn(subject))
    return _ca_extensions(
        builder, path_length=path_length, permitted_dns=permitted_dns, excluded_dns=excluded_dns
    )


def csr_to_pem(csr: x509.CertificateSigningRequest) -> str:
    """A CSR as PEM text, as an outside root's `openssl x509 -req` reads it."""
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def subordinate_certificate_builder(
    *,
    parent: x509.Certificate,
    subject: str,
    public_key,
    validity_days: int,
    path_length: int | None = None,
    permitted_dns: Sequence[str] = (),
    excluded_dns: Sequence[str] = (),
    now: dt.datetime | None = None,
) -> x509.CertificateBuilder:
    """The unsigned certificate of a subordinate CA that parent's key is to sign; it never
    outlives parent."""
    now = now or utcnow()
    if validity_days < 1 or validity_days > 36500:
        raise CAError("the CA validity must be between 1 and 36500 days")
    not_after = min(now + dt.timedelta(days=validity_days), parent.not_valid_after_utc)
    if not_after <= now:
        raise CAError("the parent CA's certificate has expired; it cannot sign a subordinate")
    builder = (
        x509.CertificateBuilder()
        .subject_name(parse_dn(subject))
        .issuer_name(parent.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(max(now - dt.timedelta(minutes=1), parent.not_valid_before_utc))
        .not_valid_after(not_after)
    )
    builder = _ca_extensions(
        builder, path_length=path_length, permitted_dns=permitted_dns, excluded_dns=excluded_dns
    )
    return builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
    ).add_extension(authority_key_identifier(parent), critical=False)


def check_chain_to_root(cert: x509.Certificate, chain: Sequence[x509.Certificate]) -> None:
    """Refuse unless chain (issuers, nearest first, as issuer_order puts them) ends in a
    self-signed root whose own signature verifies, with nothing left over."""
    if not chain:
        raise CAError(
            "the chain does not reach a root: give the root's certificate (and any CA between) "
            "with --chain or after the certificate in its file"
        )
    child = cert
    for parent in chain:
        if child.issuer != parent.subject:
            raise CAError(
                f"the chain does not reach a root: nothing given issued "
                f"{child.subject.rfc4514_string()} (its issuer is "
                f"{child.issuer.rfc4514_string()}), and {parent.subject.rfc4514_string()} "
                "is not part of it"
            )
        child = parent
    root = chain[-1]
    try:
        root.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        raise CAError(
            f"the chain does not reach a root: {root.subject.rfc4514_string()} is not self-signed"
        ) from None


def dns_name_within(name: str, base: str) -> bool:
    """RFC 5280 4.2.1.10 for dNSName as OpenSSL reads it: "example.com" holds itself and every
    name made by adding labels on the left; ".example.com" only the names under it."""
    name, base = name.lower().rstrip("."), base.lower().rstrip(".")
    if not base:
        return True
    if base.startswith("."):
        return name.endswith(base)
    return name == base or name.endswith("." + base)


def _hostname_like(text: str) -> bool:
    return "." in text and all(part and part.replace("-", "").isalnum() for part in text.split("."))


def check_names_permitted(
    cas: Sequence[x509.Certificate], dns_names: Sequence[str], *, common_name: str | None = None
) -> None:
    """Refuse (NameNotPermitted) a DNS name outside the dNSName constraints of any CA in cas
    (the issuing CA, then the CAs above it). A commonName that looks like a hostname counts
    as one (as OpenSSL checks it)."""
    names = list(dns_names)  # a wildcard is compared as written, as OpenSSL does
    if common_name and _hostname_like(common_name.removeprefix("*.")):
        names.append(common_name)
    for ca in cas:
        constraints = _constraints_of(ca)
        if constraints is None:
            continue
        permitted = [
            s.value for s in constraints.permitted_subtrees or [] if isinstance(s, x509.DNSName)
        ]
        excluded = [
            s.value for s in constraints.excluded_subtrees or [] if isinstance(s, x509.DNSName)
        ]
        who = ca.subject.rfc4514_string()
        for name in names:
            for base in excluded:
                if dns_name_within(name, base):
                    raise NameNotPermitted(
                        f"{name} is excluded by the name constraints of {who} ({base})"
                    )
            if permitted and not any(dns_name_within(name, base) for base in permitted):
                raise NameNotPermitted(
                    f"{name} is outside the names {who} may certify "
                    f"(permitted: {', '.join(permitted)})"
                )
