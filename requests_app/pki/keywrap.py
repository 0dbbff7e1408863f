"""Private keys at rest: encrypted PKCS#8 (RFC 5958) with PBES2 = PBKDF2-HMAC-SHA256 of a
chosen number of rounds and AES-256-CBC (RFC 8018), and what a key file was encrypted with.

`cryptography` 50 writes encrypted PKCS#8 only with `BestAvailableEncryption`, whose PBKDF2
has 2,048 rounds (cheap to guess offline), and its `encryption_builder` takes no PKCS#8; so
the EncryptedPrivateKeyInfo is built here, and read back by `cryptography` (OpenSSL), as
`openssl pkcs8 -topk8 -v2 aes-256-cbc -v2prf hmacWithSHA256 -iter N` writes it.
"""

from __future__ import annotations

import base64
import os
import textwrap
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from .der import read_header
from .errors import CAError
from .keys import PrivateKey

#: OWASP's floor (2023) for PBKDF2-HMAC-SHA256.
MIN_KDF_ROUNDS = 600_000

_OID_PBES2 = bytes.fromhex("06092a864886f70d01050d")
_OID_PBKDF2 = bytes.fromhex("06092a864886f70d01050c")
_OID_SCRYPT = bytes.fromhex("06092b06010401da47040b")
_OID_AES256_CBC = bytes.fromhex("060960864801650304012a")
_PRF_OIDS = {
    bytes.fromhex("06082a864886f70d0207"): "hmacWithSHA1",
    bytes.fromhex("06082a864886f70d0208"): "hmacWithSHA224",
    bytes.fromhex("06082a864886f70d0209"): "hmacWithSHA256",
    bytes.fromhex("06082a864886f70d020a"): "hmacWithSHA384",
    bytes.fromhex("06082a864886f70d020b"): "hmacWithSHA512",
}
_HMAC_SHA256 = bytes.fromhex("06082a864886f70d0209")
_NULL = b"\x05\x00"


def _tlv(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        header = bytes([length])
    else:
        size = (length.bit_length() + 7) // 8
        header = bytes([0x80 | size]) + length.to_bytes(size, "big")
    return bytes([tag]) + header + content


def _seq(*parts: bytes) -> bytes:
    return _tlv(0x30, b"".join(parts))


def _integer(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _octets(value: bytes) -> bytes:
    return _tlv(0x04, value)


def encrypt_key_strongly(key: PrivateKey, passphrase: str, *, rounds: int) -> bytes:
    """The key as encrypted PKCS#8 PEM under PBKDF2-HMAC-SHA256 (`rounds`) and AES-256-CBC."""
    if not passphrase:
        raise CAError("a passphrase is required to store a private key")
    if rounds < 1:
        raise CAError("the key derivation needs at least one round")
    plain = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    salt, iv = os.urandom(16), os.urandom(16)
    secret = PBKDF2HMAC(hashes.SHA256(), 32, salt, rounds).derive(passphrase.encode())
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(secret), modes.CBC(iv)).encryptor()
    encrypted = encryptor.update(padded) + encryptor.finalize()
    kdf = _seq(_OID_PBKDF2, _seq(_octets(salt), _integer(rounds), _seq(_HMAC_SHA256, _NULL)))
    scheme = _seq(_OID_AES256_CBC, _octets(iv))
    der = _seq(_seq(_OID_PBES2, _seq(kdf, scheme)), _octets(encrypted))
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    label = "ENCRYPTED PRIVATE KEY"
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n".encode()


@dataclass(frozen=True)
class KeyEncryption:
    """How a stored key is protected: kdf "pbkdf2", "scrypt", "legacy" (OpenSSL's old PEM
    encryption or PBES1), "none" (not encrypted) or "unknown"."""

    kdf: str
    rounds: int = 0  # PBKDF2's iteration count, or scrypt's N
    prf: str = ""

    def strong(self, min_rounds: int = MIN_KDF_ROUNDS) -> bool:
        """True for PBKDF2 with a SHA-2 HMAC and at least min_rounds, or scrypt N >= 2**17."""
        if self.kdf == "scrypt":
            return self.rounds >= 2**17
        return self.kdf == "pbkdf2" and self.prf != "hmacWithSHA1" and self.rounds >= min_rounds

    def __str__(self) -> str:
        if self.kdf == "pbkdf2":
            return f"PBKDF2-{self.prf.removeprefix('hmacWith')} {self.rounds:,} rounds"
        if self.kdf == "scrypt":
            return f"scrypt N={self.rounds}"
        return self.kdf


def _children(data: bytes, pos: int, length: int) -> list[tuple[int, int, int, int]]:
    """(tag, start of the TLV, start of its contents, length) of each TLV inside a value."""
    end, out = pos + length, []
    while pos < end:
        header = read_header(data, pos)
        if header is None:
            raise ValueError("cut short")
        tag, start, size = header
        out.append((tag, pos, start, size))
        pos = start + size
    return out


def key_encryption(data: bytes) -> KeyEncryption:
    """What a PEM or DER private key file is encrypted with (read, never decrypted)."""
    text = data.decode("ascii", "replace")
    if "-----BEGIN" in text:
        if "ENCRYPTED PRIVATE KEY" not in text:
            return KeyEncryption("legacy" if "Proc-Type: 4,ENCRYPTED" in text else "none")
        body = text.split("-----")[2]  # "", "BEGIN ...", the base64, "END ...", ...
        try:
            data = base64.b64decode("".join(body.split()))
        except ValueError:
            return KeyEncryption("unknown")
    try:
        (outer,) = _children(data, 0, len(data))
        algorithm, _ = _children(data, outer[2], outer[3])
        oid, params = _children(data, algorithm[2], algorithm[3])[:2]
        if data[oid[1] : oid[2] + oid[3]] != _OID_PBES2:
            return KeyEncryption("legacy")
        kdf_alg = _children(data, params[2], params[3])[0]
        kdf_oid, kdf_params = _children(data, kdf_alg[2], kdf_alg[3])[:2]
        fields = _children(data, kdf_params[2], kdf_params[3])
        name = data[kdf_oid[1] : kdf_oid[2] + kdf_oid[3]]
        number = int.from_bytes(data[fields[1][2] : fields[1][2] + fields[1][3]], "big")
        if name == _OID_SCRYPT:
            return KeyEncryption("scrypt", number)
        if name != _OID_PBKDF2:
            return KeyEncryption("unknown")
        prf = "hmacWithSHA1"
        for tag, _start, content, size in fields[2:]:
            if tag == 0x30:
                prf_oid = _children(data, content, size)[0]
                prf = _PRF_OIDS.get(data[prf_oid[1] : prf_oid[2] + prf_oid[3]], "unknown")
        return KeyEncryption("pbkdf2", number, prf)
    except (ValueError, IndexError):
        return KeyEncryption("unknown")
