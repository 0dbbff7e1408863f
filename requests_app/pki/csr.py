"""Certificate signing requests: read one as a requester sent it, check it, describe it,
and make one for a key the portal generated."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from . import der
from .errors import CSRError, PKIError
from .keys import (
    EC_CURVES,
    RSA_MAX_BITS,
    RSA_MIN_BITS,
    PrivateKey,
    PublicKey,
    key_description,
    key_type_of,
    public_key_sha256,
    sign,
)
from .names import san_to_text

MAX_CSR_BYTES = 64 * 1024
MAX_COMMON_NAME = 64  # RFC 5280 ub-common-name


@dataclass(frozen=True)
class CSRInfo:
    """What we read out of a checked CSR."""

    csr: x509.CertificateSigningRequest
    subject: str
    key_type: str
    key_algorithm: str
    key_size: int
    sans: list[str] = field(default_factory=list)
    public_key_sha256: str = ""

    @property
    def pem(self) -> str:
        return self.csr.public_bytes(serialization.Encoding.PEM).decode()


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_CSR_LABELS = (b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST")
_BAD_VERSION = (
    "The CSR has an invalid version number (only version 1 exists). "
    "Make the CSR again with openssl req or your server's own tools."
)
_PRIVATE_KEY_HINT = "This is a private key: never send it to anyone. Send the CSR instead."
_PEM_HINTS = {
    b"CERTIFICATE": "This is a certificate, not a certificate signing request.",
    b"PRIVATE KEY": _PRIVATE_KEY_HINT,
    b"RSA PRIVATE KEY": _PRIVATE_KEY_HINT,
    b"EC PRIVATE KEY": _PRIVATE_KEY_HINT,
    b"ENCRYPTED PRIVATE KEY": _PRIVATE_KEY_HINT,
    b"PUBLIC KEY": "This is a public key alone; a CSR (made with openssl req) is needed.",
}


def load_csr(data: bytes | str) -> x509.CertificateSigningRequest:
    """Read a PEM or DER CSR, at most 64 KiB; CSRError says what is wrong with it."""
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    if len(data) > MAX_CSR_BYTES:
        raise CSRError(
            f"The CSR is {-(-len(data) // 1024)} KiB; a certificate request is at most 64 KiB. "
            "Upload the .csr file itself."
        )
    stripped = data.strip()
    if not stripped:
        raise CSRError(
            "The CSR is empty. Paste the text that begins with -----BEGIN CERTIFICATE REQUEST-----."
        )
    match = _PEM_BLOCK.search(stripped)
    if match:
        label = match.group(1)
        if label not in _CSR_LABELS:
            hint = _PEM_HINTS.get(
                label, f"This is a PEM block of type {label.decode()!r}, not a CSR."
            )
            raise CSRError(f"{hint} The CSR begins with -----BEGIN CERTIFICATE REQUEST-----.")
        if b"-----END " + label + b"-----" not in stripped:
            raise CSRError(
                "The CSR is cut short: the -----END CERTIFICATE REQUEST----- line is missing."
            )
        try:
            return x509.load_pem_x509_csr(stripped[match.start() :])
        except x509.InvalidVersion:  # not a ValueError
            raise CSRError(_BAD_VERSION) from None
        except ValueError:
            raise CSRError(
                "The CSR text is damaged (its base64 content cannot be read). "
                "Copy the whole file again, including the BEGIN and END lines."
            ) from None
    # DER says its own length: cut there, so a file that gained a trailing newline still
    # reads, and a signature whose last byte looks like whitespace is never stripped away.
    try:
        return x509.load_der_x509_csr(der.leading_sequence(data) or data)
    except x509.InvalidVersion:
        raise CSRError(_BAD_VERSION) from None
    except ValueError:
        pass
    raise CSRError(
        "This is not a certificate signing request. Paste a PEM CSR "
        "(-----BEGIN CERTIFICATE REQUEST-----) or upload a .csr file in PEM or DER."
    )


def check_csr_key(key: PublicKey, *, allow_ed25519: bool = False) -> None:
    """Enforce the key policy: RSA 2048-8192 with e=65537, EC P-256/384/521, Ed25519 if allowed."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < RSA_MIN_BITS:
            raise CSRError(
                f"RSA key is {key.key_size} bits; at least {RSA_MIN_BITS} are required. "
                "Make a new key, e.g. openssl req -new -newkey rsa:3072 ..."
            )
        if key.key_size > RSA_MAX_BITS:
            raise CSRError(f"RSA key is {key.key_size} bits; at most {RSA_MAX_BITS} are accepted.")
        exponent = key.public_numbers().e
        if exponent != 65537:
            raise CSRError(f"RSA public exponent is {exponent}; only 65537 is accepted.")
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in EC_CURVES:
            raise CSRError(f"EC curve {key.curve.name} is not accepted; use P-256, P-384 or P-521.")
        return
    if isinstance(key, ed25519.Ed25519PublicKey):
        if not allow_ed25519:
            raise CSRError(
                "Ed25519 keys are not accepted for this profile; use RSA (2048+ bits) or EC P-256."
            )
        return
    raise CSRError(
        f"{type(key).__name__.removeprefix('_')} keys are not accepted; use RSA (2048+ bits) or EC."
    )


def check_csr(data: bytes | str, *, allow_ed25519: bool = False) -> CSRInfo:
    """Load a CSR, verify its signature and key policy, and describe it."""
    csr = load_csr(data)
    try:
        key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise CSRError(
            "The CSR's public key cannot be read or uses an unsupported algorithm."
        ) from None
    check_csr_key(key, allow_ed25519=allow_ed25519)
    try:
        signature_ok = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm):
        signature_ok = False
    if not signature_ok:
        raise CSRError(
            "The CSR's signature does not verify: it was altered after signing, or the "
            "key that signed it does not match the public key in it. Make the CSR again."
        )
    try:
        subject = csr.subject.rfc4514_string()
    except ValueError:
        raise CSRError("The CSR's subject cannot be read.") from None
    sans: list[str] = []
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        sans = [san_to_text(name) for name in ext.value]
    except x509.ExtensionNotFound:
        pass
    except x509.DuplicateExtension as exc:  # not a ValueError
        raise CSRError(f"The CSR has the extension {exc.oid.dotted_string} twice.") from None
    except (ValueError, x509.UnsupportedGeneralNameType):
        raise CSRError("The CSR's extensions cannot be read.") from None
    algorithm, size = key_description(key)
    return CSRInfo(
        csr=csr,
        subject=subject,
        key_type=key_type_of(key),
        key_algorithm=algorithm,
        key_size=size,
        sans=sans,
        public_key_sha256=public_key_sha256(key),
    )


def build_csr(key: PrivateKey, common_name: str) -> str:
    """A PEM CSR with CN=common_name (cut to 64 characters), signed by the key."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:MAX_COMMON_NAME])])
    csr = sign(x509.CertificateSigningRequestBuilder().subject_name(name), key)
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def csr_email(data: bytes | str) -> str | None:
    """The first email address in a CSR's subjectAltName; None when there is none or the
    CSR cannot be read (whoever checks the CSR reports what is wrong with it)."""
    try:
        ext = load_csr(data).extensions.get_extension_for_class(x509.SubjectAlternativeName)
        found = ext.value.get_values_for_type(x509.RFC822Name)
    except (PKIError, x509.ExtensionNotFound, ValueError):
        return None
    return found[0] if found else None
