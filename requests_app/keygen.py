"""Server-side keys for requesters without tools: pure `cryptography` code, no Django.

The portal makes the key pair and the CSR, keeps only the private key sealed under the
requester's passphrase, and opens it once to hand over a PKCS#12.
"""

from __future__ import annotations

import base64
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from . import pki

MIN_PASSPHRASE_LENGTH = 12
MAX_COMMON_NAME = 64  # RFC 5280 ub-common-name
# scrypt before the PKCS#8 encryption: OpenSSL's PKCS#8 uses PBKDF2 with only 2048
# iterations, cheap to guess offline if the database leaks; this makes each guess cost
# 32 MiB and about 0.1 s, while one honest download hardly notices.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_SEAL_TAG = "scrypt-pkcs8"


class WrongPassphrase(pki.PKIError):
    """The passphrase does not open the sealed key."""


def check_passphrase(passphrase: str) -> None:
    """Refuse a passphrase too short to protect a private key."""
    if len(passphrase or "") < MIN_PASSPHRASE_LENGTH:
        raise pki.PKIError(f"the passphrase must have at least {MIN_PASSPHRASE_LENGTH} characters")


def build_csr(key: pki.PrivateKey, common_name: str) -> str:
    """A PEM CSR with CN=common_name (cut to 64 characters), signed by the key."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:MAX_COMMON_NAME])])
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(name)
        .sign(key, pki.signature_hash(key))
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _stretch(passphrase: str, salt: bytes, n: int, r: int, p: int) -> str:
    derived = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())
    return base64.b64encode(derived).decode()


def seal(key: pki.PrivateKey, passphrase: str) -> str:
    """The key as encrypted PKCS#8 PEM under scrypt(passphrase), after a one-line header."""
    check_passphrase(passphrase)
    salt = os.urandom(16)
    pem = pki.encrypt_private_key(
        key, _stretch(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    ).decode()
    salt_text = base64.b64encode(salt).decode()
    return f"{_SEAL_TAG} n={SCRYPT_N} r={SCRYPT_R} p={SCRYPT_P} salt={salt_text}\n{pem}"


def unseal(sealed: str, passphrase: str) -> pki.PrivateKey:
    """The key sealed by seal(); WrongPassphrase when the passphrase does not open it."""
    header, _, pem = sealed.partition("\n")
    tag, *fields = header.split()
    if tag != _SEAL_TAG:
        raise pki.PKIError("the stored key is not in a format this portal wrote")
    params = dict(field.split("=", 1) for field in fields)
    secret = _stretch(
        passphrase or "",
        base64.b64decode(params["salt"]),
        int(params["n"]),
        int(params["r"]),
        int(params["p"]),
    )
    try:
        return pki.load_private_key(pem.encode(), secret, what="the stored key")
    except pki.CAError:
        raise WrongPassphrase("the passphrase does not open the stored key") from None


def to_pkcs12_compatible(
    key: pki.PrivateKey,
    cert: x509.Certificate,
    chain: list[x509.Certificate],
    passphrase: str,
    *,
    name: str,
) -> bytes:
    """PKCS#12 with the old algorithms (3DES, SHA-1 MAC) that every importer knows."""
    # macOS Keychain (at least through Ventura) and Windows before 10 (1709) answer
    # "wrong password" to the AES-256 format; 2048 rounds are OpenSSL's -legacy default.
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(2048)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())  # noqa: S303 - the MAC the old importers check
        .build(passphrase.encode())
    )
    return pkcs12.serialize_key_and_certificates(
        name.encode(), key, cert, chain or None, encryption
    )
