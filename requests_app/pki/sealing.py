"""Sealing a server-made key under the requester's passphrase: the portal keeps only the
sealed key, and opens it once to hand over a PKCS#12."""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .errors import CAError, PKIError, WrongPassphrase
from .keys import PrivateKey, encrypt_private_key, load_private_key

MIN_PASSPHRASE_LENGTH = 12
# scrypt before the PKCS#8 encryption: OpenSSL's PKCS#8 uses PBKDF2 with only 2048
# iterations, cheap to guess offline if the database leaks; this makes each guess cost
# 32 MiB and about 0.1 s, while one honest download hardly notices.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_SEAL_TAG = "scrypt-pkcs8"


def check_passphrase(passphrase: str) -> None:
    """Refuse a passphrase too short to protect a private key."""
    if len(passphrase or "") < MIN_PASSPHRASE_LENGTH:
        raise PKIError(f"the passphrase must have at least {MIN_PASSPHRASE_LENGTH} characters")


def _stretch(passphrase: str, salt: bytes, n: int, r: int, p: int) -> str:
    derived = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())
    return base64.b64encode(derived).decode()


def seal(key: PrivateKey, passphrase: str) -> str:
    """The key as encrypted PKCS#8 PEM under scrypt(passphrase), after a one-line header."""
    check_passphrase(passphrase)
    salt = os.urandom(16)
    pem = encrypt_private_key(
        key, _stretch(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    ).decode()
    salt_text = base64.b64encode(salt).decode()
    return f"{_SEAL_TAG} n={SCRYPT_N} r={SCRYPT_R} p={SCRYPT_P} salt={salt_text}\n{pem}"


def unseal(sealed: str, passphrase: str) -> PrivateKey:
    """The key sealed by seal(); WrongPassphrase when the passphrase does not open it."""
    header, _, pem = sealed.partition("\n")
    tag, *fields = header.split()
    if tag != _SEAL_TAG:
        raise PKIError("the stored key is not in a format this portal wrote")
    params = dict(field.split("=", 1) for field in fields)
    secret = _stretch(
        passphrase or "",
        base64.b64decode(params["salt"]),
        int(params["n"]),
        int(params["r"]),
        int(params["p"]),
    )
    try:
        return load_private_key(pem.encode(), secret, what="the stored key")
    except CAError:
        raise WrongPassphrase("the passphrase does not open the stored key") from None
