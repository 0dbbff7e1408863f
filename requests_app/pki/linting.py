"""Linting certificates with pkilint, in process: RFC 5280, and the CA/Browser Forum's
Baseline Requirements for TLS server (serverauth) and S/MIME (mailbox-validated) certificates.

Pre-issuance linting (as Let's Encrypt does it): `lint_builder` signs the to-be-signed
certificate with a throwaway key of the CA's key type (never the CA key) and lints the result;
the caller signs the same builder with the CA key only when nothing at ERROR was found, and
checks that what it signed is the certificate that was linted (`same_tbs`).

pkilint's validators are built once per process per linter (building them costs more than
running them), and run under a lock: they are shared objects, and linting is CPU-bound anyway.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .keys import PrivateKey, generate_private_key, sign

#: The linters by name. "rfc5280" is pkilint's RFC 5280 linter; each CA/B Forum linter runs
#: most RFC 5280 validations too, but not all (some key usage rules are its own), so the
#: portal runs "rfc5280" beside it. Run together with "cabf-serverauth", RFC 5280 findings
#: that the TLS Baseline Requirements supersede (an end-entity certificate without
#: subjectKeyIdentifier) are dropped, as pkilint's serverauth linter drops them.
LINTERS = (
    "rfc5280",
    "cabf-serverauth",
    "cabf-smime-mailbox-strict",
    "cabf-smime-mailbox-multipurpose",
)
#: pkilint's severities, worst first.
SEVERITIES = ("FATAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG")

_lock = threading.Lock()


@dataclass(frozen=True)
class Finding:
    """One pkilint finding: its severity, its code, pkilint's message, where in the DER."""

    severity: str
    code: str
    message: str = ""
    path: str = ""

    def at_least(self, severity: str) -> bool:
        """Whether this finding is as bad as severity ("ERROR", "WARNING", ...) or worse."""
        return SEVERITIES.index(self.severity) <= SEVERITIES.index(severity)

    def __str__(self) -> str:
        return f"{self.severity} {self.code}" + (f": {self.message}" if self.message else "")


@cache
def _rfc5280_validator():
    from pkilint.pkix import certificate, extension, name

    return certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(
            name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS
        ),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )


@cache
def _serverauth_validator(certificate_type):
    from pkilint.cabf import serverauth
    from pkilint.pkix import certificate

    validator = certificate.create_pkix_certificate_validator_container(
        serverauth.create_decoding_validators(),
        serverauth.create_validators(certificate_type),
    )
    return validator, serverauth.create_serverauth_finding_filters(certificate_type)


@cache
def _smime_validator(generation_name: str):
    from pkilint.cabf import smime
    from pkilint.cabf.smime import smime_constants
    from pkilint.pkix import certificate

    return certificate.create_pkix_certificate_validator_container(
        smime.create_decoding_validators(),
        smime.create_subscriber_validators(
            smime_constants.ValidationLevel.MAILBOX, smime_constants.Generation[generation_name]
        ),
    )


def validator_for(linter: str):
    """pkilint's validator container of a linter (for a CA/B serverauth linter: the one for
    domain-validated subscriber certificates), built once per process."""
    if linter == "rfc5280":
        return _rfc5280_validator()
    if linter == "cabf-serverauth":
        from pkilint.cabf.serverauth.serverauth_constants import CertificateType

        return _serverauth_validator(CertificateType.DV_FINAL_CERTIFICATE)[0]
    if linter.startswith("cabf-smime-mailbox-") and linter in LINTERS:
        return _smime_validator(linter.removeprefix("cabf-smime-mailbox-").upper())
    raise ValueError(f"unknown linter {linter!r}; choose one of {', '.join(LINTERS)}")


def _results(cert: x509.Certificate, linter: str, *, serverauth_filters: bool):
    from pkilint import finding_filter, loader
    from pkilint.cabf import serverauth

    der = cert.public_bytes(serialization.Encoding.DER)
    document = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "certificate")
    # The TLS certificate type follows the reserved policy OID it carries (DV, OV, IV, EV).
    certificate_type = serverauth.determine_certificate_type(document)
    if linter == "cabf-serverauth":
        validator, filters = _serverauth_validator(certificate_type)
    else:
        validator, filters = validator_for(linter), []
    results = validator.validate(document.root)
    if serverauth_filters:
        filters = _serverauth_validator(certificate_type)[1]
    if filters:
        results, _ = finding_filter.filter_results(filters, results)
    return results


def lint_certificate(
    cert: x509.Certificate, linter: str, *, serverauth_filters: bool = False
) -> list[Finding]:
    """Every finding of one linter on cert at NOTICE or worse, worst first; with
    serverauth_filters, without those that the TLS Baseline Requirements supersede."""
    if linter not in LINTERS:
        raise ValueError(f"unknown linter {linter!r}; choose one of {', '.join(LINTERS)}")
    with _lock:
        results = _results(cert, linter, serverauth_filters=serverauth_filters)
    findings = [
        Finding(
            severity=description.finding.severity.name,
            code=description.finding.code,
            message=description.message or "",
            path=str(result.node.path),
        )
        for result in results
        for description in result.finding_descriptions
    ]
    findings = [f for f in findings if f.at_least("NOTICE")]
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


#: pkilint's RFC 5280 linter calls every dNSName that is not a plain RFC 1034 hostname of
#: two or more labels invalid, including the two shapes RFC 5280 leaves to other rules: a
#: wildcard left-most label (RFC 6125 6.4.3, which the CA/B linters check on their own) and a
#: single-label name (`localhost`, which a profile may allow). The name policy (pki.names)
#: has decided those before anything is built, so for exactly those names this finding is
#: not pkilint's to make; every other name keeps it.
NAME_SYNTAX_FINDING = "pkix.invalid_domain_name_syntax"
_NAME_IN_MESSAGE = re.compile(r'Invalid domain name syntax: "(?P<name>[^"]*)"')


def policy_decided_names(cert: x509.Certificate, *, single_label: bool) -> frozenset[str]:
    """The dNSNames of cert whose syntax the name policy decides rather than pkilint: the
    wildcards, and (when the profile allows them) the single-label names."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset()
    from pkilint.pkix.general_name import validators_predicate
    from validators import domain

    def well_formed(hostname: str) -> bool:  # pkilint's own test of a hostname
        return validators_predicate(domain, hostname)

    decided = set()
    for name in san.get_values_for_type(x509.DNSName):
        if (name.startswith("*.") and well_formed(name[2:])) or (
            single_label and "." not in name and well_formed(f"{name}.example")
        ):
            decided.add(name)
    return frozenset(decided)


def _decided_by_policy(finding: Finding, names: frozenset[str]) -> bool:
    if finding.code != NAME_SYNTAX_FINDING:
        return False
    match = _NAME_IN_MESSAGE.fullmatch(finding.message)
    return match is not None and match["name"] in names


def lint(
    cert: x509.Certificate,
    linters: tuple[str, ...] | list[str],
    *,
    allow_single_label: bool = False,
) -> list[Finding]:
    """The findings of several linters on cert, each once, worst first (without the name
    syntax findings about names the name policy decides: see NAME_SYNTAX_FINDING)."""
    superseded = "cabf-serverauth" in linters
    decided = policy_decided_names(cert, single_label=allow_single_label)
    found: list[Finding] = []
    for linter in linters:
        findings = lint_certificate(cert, linter, serverauth_filters=superseded)
        found += [f for f in findings if f not in found and not _decided_by_policy(f, decided)]
    return sorted(found, key=lambda f: SEVERITIES.index(f.severity))


_throwaway_keys: dict[str, PrivateKey] = {}


def throwaway_key(key_type: str) -> PrivateKey:
    """A key of key_type made once per process, to sign certificates that are only linted."""
    key = _throwaway_keys.get(key_type)
    if key is None:
        with _lock:
            key = _throwaway_keys.get(key_type)
            if key is None:
                key = generate_private_key(key_type)
                _throwaway_keys[key_type] = key
    return key


def lint_builder(
    builder: x509.CertificateBuilder,
    *,
    key_type: str,
    linters: tuple[str, ...] | list[str],
    allow_single_label: bool = False,
) -> tuple[x509.Certificate, list[Finding]]:
    """The to-be-signed certificate, signed by a throwaway key of key_type, and its findings."""
    precertificate = sign(builder, throwaway_key(key_type))
    return precertificate, lint(precertificate, linters, allow_single_label=allow_single_label)


def same_tbs(a: x509.Certificate, b: x509.Certificate) -> bool:
    """Whether two certificates carry the same to-be-signed part (all but the signature)."""
    return a.tbs_certificate_bytes == b.tbs_certificate_bytes
