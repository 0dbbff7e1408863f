"""The CA engine: pure `cryptography` code, no Django.

Create and check CAs, parse and check CSRs, build and sign certificates, and the
encodings that clients import (PEM, DER, PKCS#7, full-chain PEM, PKCS#12).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import re
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_KEY_TYPES = ("rsa2048", "rsa3072", "rsa4096", "p256", "p384")
MAX_CSR_BYTES = 64 * 1024
RSA_MIN_BITS, RSA_MAX_BITS = 2048, 8192
EC_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}

EKU_OIDS = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
}

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class PKIError(ValueError):
    """Base of the engine's refusals; the message is meant for a person."""


class CSRError(PKIError):
    """A CSR was refused; the message says what the requester should do."""


class CAError(PKIError):
    """A CA certificate or key was refused, or the key could not be opened."""


class InvalidName(PKIError):
    """A DN string or a hostname was refused."""


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


# --- keys ---------------------------------------------------------------------------


def generate_private_key(key_type: str) -> PrivateKey:
    """Generate a key of one of CA_KEY_TYPES (or ed25519)."""
    if key_type.startswith("rsa") and key_type[3:].isdigit():
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    curves = {"p256": ec.SECP256R1, "p384": ec.SECP384R1, "p521": ec.SECP521R1}
    if key_type in curves:
        return ec.generate_private_key(curves[key_type]())
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise PKIError(f"unknown key type {key_type!r}; use one of {', '.join(CA_KEY_TYPES)}")


def key_type_of(key: PublicKey | PrivateKey) -> str:
    """Our short name for a key: rsa2048, p256, ed25519, ..."""
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return f"rsa{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return {"secp256r1": "p256", "secp384r1": "p384", "secp521r1": "p521"}.get(
            key.curve.name, key.curve.name
        )
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "ed25519"
    return type(key).__name__


def key_description(key: PublicKey) -> tuple[str, int]:
    """Algorithm name and size in bits, as shown to people: ("RSA", 2048), ("EC P-256", 256)."""
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {EC_CURVES.get(key.curve.name, key.curve.name)}", key.curve.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    return type(key).__name__, 0


def public_key_sha256(key: PublicKey) -> str:
    """SHA-256 over the DER SubjectPublicKeyInfo, lower-case hex."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def encrypt_private_key(key: PrivateKey, passphrase: str) -> bytes:
    """Encrypted PKCS#8 PEM (AES-256-CBC, PBKDF2) under the passphrase."""
    if not passphrase:
        raise CAError("a passphrase is required to store a private key")
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    )


def load_private_key(data: bytes, passphrase: str | None, *, what: str = "the key") -> PrivateKey:
    """Load a PEM or DER private key, encrypted or not; one clear CAError on failure."""
    password = passphrase.encode() if passphrase else None
    loaders = (serialization.load_pem_private_key, serialization.load_der_private_key)
    loader = loaders[0] if b"-----BEGIN" in data else loaders[1]
    try:
        key = loader(data, password=password)
    except TypeError:
        if password is None:
            raise CAError(f"{what} is encrypted and no passphrase was given") from None
        raise CAError(f"{what} is not encrypted, but a passphrase was given") from None
    except ValueError:
        raise CAError(
            f"could not open {what}: wrong passphrase, or not a private key in PEM/DER"
        ) from None
    except UnsupportedAlgorithm:
        raise CAError(f"{what} uses an unsupported algorithm") from None
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise CAError(f"{what} is a {type(key).__name__}; CA keys must be RSA or EC")
    return key


def signature_hash(key: PrivateKey) -> hashes.HashAlgorithm | None:
    """SHA-256, SHA-384 for P-384, SHA-512 for P-521; None for Ed25519."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"secp384r1": hashes.SHA384(), "secp521r1": hashes.SHA512()}.get(
            key.curve.name, hashes.SHA256()
        )
    return hashes.SHA256()


# --- names --------------------------------------------------------------------------


def parse_dn(dn: str) -> x509.Name:
    """Parse "CN=Example Root CA,O=Example,C=US" (RFC 4514 order) into a Name."""
    if not dn or not dn.strip():
        raise InvalidName("the subject DN is empty")
    try:
        name = x509.Name.from_rfc4514_string(dn.strip())
    except ValueError as exc:
        why = str(exc) or "write it as CN=...,O=...,C=.. with known attribute names"
        raise InvalidName(f"cannot parse the DN {dn!r}: {why}") from None
    for attribute in name:
        if attribute.oid == NameOID.COUNTRY_NAME and len(str(attribute.value)) != 2:
            raise InvalidName(f"the country (C) must be two letters, not {attribute.value!r}")
        if not str(attribute.value).strip():
            raise InvalidName(f"the DN {dn!r} has an empty attribute")
    return name


_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalize_hostname(value: str) -> str:
    """Check a DNS name and return its lower-case A-label (IDNA) form.

    No empty labels; a wildcard only as the whole left-most label, above two more labels.
    """
    name = value.strip().removesuffix(".")  # one trailing dot is the root: drop it
    if not name:
        raise InvalidName("a hostname is empty")
    labels = name.split(".")
    if any(label == "" for label in labels):
        raise InvalidName(f"{value!r} has an empty label (two dots in a row)")
    wildcard = labels[0] == "*"
    if wildcard:
        if len(labels) < 3:
            raise InvalidName(f"{value!r}: a wildcard must stand above at least two labels")
        labels = labels[1:]
    out = []
    for label in labels:
        if "*" in label:
            raise InvalidName(f"{value!r}: a wildcard may only be the whole left-most label")
        try:
            # ASCII labels skip the codec, so an over-long one gets the plain message below.
            a_label = label if label.isascii() else label.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidName(f"{value!r} is not a valid internationalized hostname") from None
        a_label = a_label.lower()
        if not _LABEL.match(a_label):
            raise InvalidName(
                f"{value!r} is not a valid hostname (labels are letters, digits and inner hyphens)"
            )
        out.append(a_label)
    if out[-1].isdigit():
        raise InvalidName(f"{value!r} is not a valid hostname (the last label is numeric)")
    result = ("*." if wildcard else "") + ".".join(out)
    if len(result) > 253:
        raise InvalidName(f"{value!r} is longer than 253 characters")
    return result


def parse_san(value: str) -> x509.GeneralName:
    """A hostname or an IP address given by a person, as a GeneralName."""
    text = value.strip()
    try:
        return x509.IPAddress(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return x509.DNSName(normalize_hostname(text))


def san_to_text(name: x509.GeneralName) -> str:
    """A readable form: "DNS:host", "IP:10.0.0.1", "email:a@b"."""
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    if isinstance(name, x509.IPAddress):
        return f"IP:{name.value}"
    if isinstance(name, x509.RFC822Name):
        return f"email:{name.value}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI:{name.value}"
    return f"{type(name).__name__}:{name.value}"


def san_from_text(text: str) -> x509.GeneralName:
    """The inverse of san_to_text."""
    kind, _, value = text.partition(":")
    kinds = {
        "DNS": lambda v: x509.DNSName(normalize_hostname(v)),
        "IP": lambda v: x509.IPAddress(ipaddress.ip_address(v)),
        "email": x509.RFC822Name,
        "URI": x509.UniformResourceIdentifier,
    }
    if kind not in kinds or not value:
        raise InvalidName(f"cannot read the subject alternative name {text!r}")
    try:
        return kinds[kind](value)
    except ValueError as exc:
        raise InvalidName(f"{text!r}: {exc}") from None


def common_name(name: x509.Name) -> str | None:
    """The first CN of a name, or None."""
    attributes = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attributes[0].value) if attributes else None


# --- CSRs ---------------------------------------------------------------------------


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


def _der_sequence(data: bytes) -> bytes | None:
    """The DER SEQUENCE at the start of data, if only whitespace follows it."""
    if len(data) < 2 or data[0] != 0x30:
        return None
    if data[1] < 0x80:
        length, head = data[1], 2
    else:
        size = data[1] & 0x7F
        if not 1 <= size <= 4 or len(data) < 2 + size:
            return None
        length, head = int.from_bytes(data[2 : 2 + size], "big"), 2 + size
    end = head + length
    if end > len(data) or data[end:].strip():
        return None
    return data[:end]


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
        return x509.load_der_x509_csr(_der_sequence(data) or data)
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


# --- CAs ----------------------------------------------------------------------------


def _sign(builder, key: PrivateKey):
    return builder.sign(private_key=key, algorithm=signature_hash(key))


def create_ca(
    subject: str,
    *,
    key_type: str = "p256",
    validity_days: int = 3650,
    now: dt.datetime | None = None,
) -> tuple[PrivateKey, x509.Certificate]:
    """Create a self-signed root CA: key and certificate."""
    if key_type not in CA_KEY_TYPES:
        raise CAError(f"unknown CA key type {key_type!r}; use one of {', '.join(CA_KEY_TYPES)}")
    if validity_days < 1 or validity_days > 36500:
        raise CAError("the CA validity must be between 1 and 36500 days")
    name = parse_dn(subject)
    key = generate_private_key(key_type)
    now = now or utcnow()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    return key, _sign(builder, key)


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """All certificates in a PEM bundle, or the one DER certificate."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise CAError("could not read a certificate (PEM or DER) from the data given") from None


def same_public_key(a: PublicKey | PrivateKey, b: PublicKey | PrivateKey) -> bool:
    """True when both are (or belong to) the same public key."""

    def spki(k):
        k = k.public_key() if hasattr(k, "private_bytes") else k
        return k.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    return spki(a) == spki(b)


def check_ca(
    cert: x509.Certificate,
    key: PrivateKey,
    chain: list[x509.Certificate] | None = None,
    *,
    now: dt.datetime | None = None,
) -> None:
    """Refuse a CA unless the key matches and is strong enough, it is a CA certificate valid
    now, and each certificate of the chain is a CA that issued the one before it."""
    if not same_public_key(cert.public_key(), key):
        raise CAError("the private key does not match the CA certificate")
    _check_ca_key(key)
    now = now or utcnow()
    _check_ca_certificate(cert, now, what="the certificate")
    child = cert
    for parent in chain or []:
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise CAError(
                f"the chain is broken: {child.subject.rfc4514_string()} was not issued by "
                f"{parent.subject.rfc4514_string()} ({type(exc).__name__})"
            ) from None
        _check_ca_certificate(parent, now, what=f"the chain's {parent.subject.rfc4514_string()}")
        child = parent


def _check_ca_key(key: PrivateKey) -> None:
    # The CA's key signs every certificate: hold it to at least the policy for CSR keys.
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < RSA_MIN_BITS:
        raise CAError(
            f"the CA key is RSA {key.key_size} bits; at least {RSA_MIN_BITS} are required"
        )
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name not in EC_CURVES:
        raise CAError(
            f"the CA key's curve {key.curve.name} is not accepted; use P-256, P-384 or P-521"
        )
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CAError(f"the CA key is {key_description(key.public_key())[0]}; use RSA or EC")


def _check_ca_certificate(cert: x509.Certificate, now: dt.datetime, *, what: str) -> None:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise CAError(f"{what} is not a CA certificate (basicConstraints CA:TRUE is missing)")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.key_cert_sign:
        raise CAError(f"{what} has a keyUsage that does not allow keyCertSign")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise CAError(
            f"{what} is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} "
            f"to {cert.not_valid_after_utc:%Y-%m-%d})"
        )


# --- issuing ------------------------------------------------------------------------


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


def issue_certificate(
    *,
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    public_key: PublicKey,
    subject: x509.Name,
    sans: list[x509.GeneralName],
    extended_key_usages: list[str],
    validity_days: int,
    key_encipherment: bool = True,
    ca_issuers_url: str | None = None,
    crl_url: str | None = None,
    ocsp_url: str | None = None,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """Build and sign an end-entity certificate."""
    now = now or utcnow()
    # Backdated a minute for clocks running behind, but never before the CA's own validity;
    # and never past the CA's end, when the certificate could no longer be verified.
    not_before = max(now - dt.timedelta(minutes=1), ca_cert.not_valid_before_utc)
    not_after = min(now + dt.timedelta(days=validity_days), ca_cert.not_valid_after_utc)
    if not_after <= now:
        raise CAError("the CA certificate has expired; it cannot issue")
    try:
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage_for(public_key, encipherment=key_encipherment), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(aki, critical=False)
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
    return _sign(builder, ca_key)


# --- encodings ----------------------------------------------------------------------


def to_pem(cert: x509.Certificate) -> str:
    """The certificate as PEM text."""
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def to_der(cert: x509.Certificate) -> bytes:
    """The certificate as DER bytes."""
    return cert.public_bytes(serialization.Encoding.DER)


def load_pem(pem: str | bytes) -> x509.Certificate:
    """One PEM certificate."""
    return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)


def to_pkcs7(certs: list[x509.Certificate], *, der: bool = True) -> bytes:
    """A degenerate signed-data (certificates only) holding the certificates."""
    encoding = serialization.Encoding.DER if der else serialization.Encoding.PEM
    return pkcs7.serialize_certificates(certs, encoding)


def to_fullchain_pem(certs: list[x509.Certificate]) -> str:
    """The certificate first, then its issuers: what nginx and most servers want."""
    return "".join(to_pem(cert) for cert in certs)


def to_pkcs12(
    key: PrivateKey,
    cert: x509.Certificate,
    chain: list[x509.Certificate],
    passphrase: str,
    *,
    name: str,
) -> bytes:
    """PKCS#12 with key, certificate and chain, encrypted with AES-256 under the passphrase."""
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(50000)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(passphrase.encode())
    )
    return pkcs12.serialize_key_and_certificates(
        name.encode(), key, cert, chain or None, encryption
    )


def fingerprint(cert: x509.Certificate, algorithm: hashes.HashAlgorithm | None = None) -> str:
    """Colon-separated upper-case hex fingerprint (SHA-256 by default)."""
    return cert.fingerprint(algorithm or hashes.SHA256()).hex(":").upper()


def serial_hex(serial: int) -> str:
    """A serial number as lower-case hex without leading zeros."""
    return format(serial, "x")


def verify_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when issuer's key signed cert (used by tests and by import checks)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:
        return False
    return True
