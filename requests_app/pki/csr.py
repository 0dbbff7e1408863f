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
from .errors import CSRError, InvalidName, PKIError
from .keys import (
    EC_CURVES,
    RSA_MAX_BITS,
    RSA_MIN_BITS,
    PrivateKey,
    PublicKey,
    key_description,
    key_name,
    key_type_of,
    public_key_sha256,
    sign,
)
from .names import normalize_hostname, san_to_text
from .subject import escape_text

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
_PRIVATE_KEY_LABELS = (
    b"PRIVATE KEY",
    b"RSA PRIVATE KEY",
    b"EC PRIVATE KEY",
    b"DSA PRIVATE KEY",
    b"ENCRYPTED PRIVATE KEY",
    b"OPENSSH PRIVATE KEY",
)
_PEM_HINTS = {
    b"CERTIFICATE": "This is a certificate, not a certificate signing request.",
    b"PRIVATE KEY": _PRIVATE_KEY_HINT,
    b"RSA PRIVATE KEY": _PRIVATE_KEY_HINT,
    b"EC PRIVATE KEY": _PRIVATE_KEY_HINT,
    b"ENCRYPTED PRIVATE KEY": _PRIVATE_KEY_HINT,
    b"PUBLIC KEY": "This is a public key alone; a CSR (made with openssl req) is needed.",
}


def _check_pem_blocks(labels: list[bytes]) -> None:
    """One CSR and nothing else: a second CSR would be silently ignored, and a private key
    pasted along with it must not be kept."""
    if any(label in _PRIVATE_KEY_LABELS for label in labels):
        raise CSRError(
            f"{_PRIVATE_KEY_HINT} The text holds a private key block: send only the block "
            "that begins with -----BEGIN CERTIFICATE REQUEST-----."
        )
    csrs = sum(label in _CSR_LABELS for label in labels)
    if csrs > 1:
        raise CSRError(
            f"The text holds {csrs} certificate signing requests; send one per request, "
            "so that each is checked and approved on its own."
        )
    if labels[0] not in _CSR_LABELS:
        label = labels[0]
        hint = _PEM_HINTS.get(label, f"This is a PEM block of type {label.decode()!r}, not a CSR.")
        raise CSRError(f"{hint} The CSR begins with -----BEGIN CERTIFICATE REQUEST-----.")
    if len(labels) > 1:
        others = ", ".join(sorted({label.decode() for label in labels[1:]}))
        raise CSRError(
            f"The text holds a CSR and another PEM block ({others}); send the CSR alone."
        )


def _check_der_count(data: bytes) -> None:
    """A DER CSR followed by more (a second CSR) is refused, not half read."""
    header = der.read_header(data)
    if header is None or header[0] != der.SEQUENCE:
        return
    end = header[1] + header[2]
    if end >= len(data) or not data[end:].strip():
        return
    try:
        x509.load_der_x509_csr(data[:end])
    except (ValueError, x509.InvalidVersion):
        return
    raise CSRError(
        "The file holds a certificate signing request followed by more data (a second "
        "CSR?); send one CSR per request and nothing else."
    )


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
    blocks = list(_PEM_BLOCK.finditer(stripped))
    if blocks:
        _check_pem_blocks([block.group(1) for block in blocks])
        match = blocks[0]
        label = match.group(1)
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
    _check_der_count(data)
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


_ACCEPTED_KEYS = "RSA (2048 bits or more) or ECDSA P-256"
_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
#: Signature algorithms with a broken hash, by OID (cryptography verifies none of them).
_WEAK_SIGNATURES = {
    "1.2.840.113549.1.1.2": "MD2",
    "1.2.840.113549.1.1.3": "MD4",
    "1.2.840.113549.1.1.4": "MD5",
    "1.2.840.113549.1.1.5": "SHA-1",
    "1.3.14.3.2.29": "SHA-1",
    "1.2.840.10045.4.1": "SHA-1",
    "1.2.840.10040.4.3": "SHA-1",
}
_KEY_ALGORITHMS = {
    "1.2.840.10040.4.1": "DSA",
    "1.2.840.10046.2.1": "Diffie-Hellman",
    "1.3.101.110": "X25519",
    "1.3.101.111": "X448",
    "1.3.101.113": "Ed448",
    "1.2.643.2.2.19": "GOST R 34.10-2001",
    "1.2.643.7.1.1.1.1": "GOST R 34.10-2012",
    "1.2.156.10197.1.301": "SM2",
}


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
            raise CSRError(
                f"ECDSA keys on the curve {key.curve.name} are not accepted; "
                "use P-256, P-384 or P-521."
            )
        return
    if isinstance(key, ed25519.Ed25519PublicKey):
        if not allow_ed25519:
            raise CSRError(f"Ed25519 keys are not accepted for this profile; use {_ACCEPTED_KEYS}.")
        return
    raise CSRError(f"{key_name(key)} keys are not accepted; use {_ACCEPTED_KEYS}.")


def _check_key_encoding(csr: x509.CertificateSigningRequest) -> None:
    """An EC key must name its curve: explicit parameters are refused (RFC 5480), whether
    they describe a known curve or a custom one."""
    try:
        algorithm = csr.public_key_algorithm_oid.dotted_string
    except ValueError:
        return
    if algorithm != _EC_PUBLIC_KEY:
        return
    tag = der.csr_key_parameters_tag(csr.public_bytes(serialization.Encoding.DER))
    if tag == der.SEQUENCE:
        raise CSRError(
            "The CSR's ECDSA key is written with explicit curve parameters instead of a "
            "named curve, which certificates may not carry (RFC 5480). Make the key with a "
            "named curve: openssl ecparam -name prime256v1 -genkey (without -param_enc "
            "explicit), or openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256."
        )
    if tag != 0x06:
        raise CSRError("The CSR's ECDSA key does not name its curve; use P-256, P-384 or P-521.")


def _public_key(csr: x509.CertificateSigningRequest) -> PublicKey:
    _check_key_encoding(csr)
    try:
        return csr.public_key()
    except UnsupportedAlgorithm:
        try:
            oid = csr.public_key_algorithm_oid.dotted_string
        except ValueError:
            oid = "?"
        name = _KEY_ALGORITHMS.get(oid)
        what = f"{name} keys are" if name else f"Keys of the algorithm {oid} are"
        raise CSRError(f"{what} not accepted; use {_ACCEPTED_KEYS}.") from None
    except ValueError:
        raise CSRError(
            "The CSR's public key is damaged and cannot be read. Make the CSR again."
        ) from None


def _check_signature(csr: x509.CertificateSigningRequest) -> None:
    try:
        oid = csr.signature_algorithm_oid.dotted_string
    except ValueError:
        oid = ""
    weak = _WEAK_SIGNATURES.get(oid)
    if weak is None:
        try:
            name = csr.signature_hash_algorithm.name
        except (UnsupportedAlgorithm, ValueError, AttributeError):
            name = ""
        weak = {"md5": "MD5", "sha1": "SHA-1"}.get(name)
    if weak:
        raise CSRError(
            f"The CSR is signed with {weak}, a hash that is broken and no longer accepted. "
            "Make the CSR again with SHA-256 (your key can stay): "
            "openssl req -new -sha256 -key your.key -out your.csr"
        )
    try:
        signature_ok = csr.is_signature_valid
    except UnsupportedAlgorithm:
        raise CSRError(
            f"The CSR is signed with an algorithm that is not accepted ({oid or 'unknown'}); "
            "make it again with SHA-256."
        ) from None
    except ValueError:
        signature_ok = False
    if not signature_ok:
        raise CSRError(
            "The CSR's signature does not verify: it was altered after signing, or the "
            "key that signed it does not match the public key in it. Make the CSR again."
        )


def _check_dns_names(names: list[x509.GeneralName]) -> None:
    """A dNSName in a CSR is ASCII (IA5String): raw UTF-8 is refused, never guessed at."""
    for name in names:
        if isinstance(name, x509.DNSName) and not name.value.isascii():
            shown = escape_text(name.value)
            try:
                hint = f": write it as {normalize_hostname(name.value)}"
            except InvalidName:
                hint = ""
            raise CSRError(
                f"The CSR's subjectAltName has the DNS name {shown!r} in non-ASCII "
                "characters. A DNS name in a certificate is ASCII, an internationalized "
                f"one written in A-labels (xn--...){hint}. Make the CSR again."
            )


def check_csr(data: bytes | str, *, allow_ed25519: bool = False) -> CSRInfo:
    """Load a CSR, verify its signature and key policy, and describe it."""
    csr = load_csr(data)
    pem_size = len(csr.public_bytes(serialization.Encoding.PEM))
    if pem_size > MAX_CSR_BYTES:
        # What is stored (and read again at approval) is the PEM: it must fit, too.
        raise CSRError(
            f"The CSR is {-(-pem_size // 1024)} KiB as PEM text; a certificate request is "
            "at most 64 KiB. A CSR that large carries more than a certificate needs."
        )
    key = _public_key(csr)
    check_csr_key(key, allow_ed25519=allow_ed25519)
    _check_signature(csr)
    try:
        subject = csr.subject.rfc4514_string()
    except ValueError:
        raise CSRError("The CSR's subject cannot be read.") from None
    names: list[x509.GeneralName] = []
    try:
        names = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        pass
    except x509.DuplicateExtension as exc:  # not a ValueError
        raise CSRError(f"The CSR has the extension {exc.oid.dotted_string} twice.") from None
    except (ValueError, x509.UnsupportedGeneralNameType):
        raise CSRError("The CSR's extensions cannot be read.") from None
    _check_dns_names(names)
    sans = [san_to_text(name) for name in names]
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
    """A PEM CSR with CN=common_name (at most 64 characters), signed by the key."""
    if not 1 <= len(common_name) <= MAX_COMMON_NAME:
        raise CSRError(f"a common name has 1 to {MAX_COMMON_NAME} characters")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
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
