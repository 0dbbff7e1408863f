"""Keys that stay in a token but sign for cryptography's builders.

cryptography's certificate, CRL and OCSP builders sign by calling `sign()` on a private key
object of its own key classes. These classes implement those interfaces with a `sign()` that
hands the data to the token (a callable given by the backend) and refuse everything that
would need the private key itself (its numbers, its bytes, decryption, key agreement).
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from pkcs11 import Mechanism

#: signer(data, mechanism) -> signature bytes, as the token returns them.
Signer = Callable[[bytes, Mechanism], bytes]

_RSA_MECHANISMS = {
    "sha256": Mechanism.SHA256_RSA_PKCS,
    "sha384": Mechanism.SHA384_RSA_PKCS,
    "sha512": Mechanism.SHA512_RSA_PKCS,
}
_EC_HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


def _refuse(*args, **kwargs):
    raise UnsupportedAlgorithm("the key never leaves its token: it can only sign")


class TokenRSAKey(rsa.RSAPrivateKey):
    """An RSA key in a token: PKCS#1 v1.5 signatures with SHA-256/384/512."""

    def __init__(self, signer: Signer, public_key: rsa.RSAPublicKey):
        self._signer = signer
        self._public_key = public_key

    @property
    def key_size(self) -> int:
        return self._public_key.key_size

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public_key

    def sign(self, data: bytes, padding_: padding.AsymmetricPadding, algorithm) -> bytes:
        if not isinstance(padding_, padding.PKCS1v15):
            raise UnsupportedAlgorithm(f"the token key signs PKCS#1 v1.5 only, not {padding_.name}")
        if isinstance(algorithm, utils.Prehashed):
            raise UnsupportedAlgorithm("the token key signs whole messages, not digests")
        mechanism = _RSA_MECHANISMS.get(getattr(algorithm, "name", ""))
        if mechanism is None:
            raise UnsupportedAlgorithm(f"the token key does not sign with {algorithm!r}")
        return self._signer(bytes(data), mechanism)

    decrypt = private_numbers = private_bytes = _refuse

    def __copy__(self) -> TokenRSAKey:
        return self

    def __deepcopy__(self, memo) -> TokenRSAKey:
        return self


class TokenECKey(ec.EllipticCurvePrivateKey):
    """An EC key in a token: ECDSA over a digest made here (CKM_ECDSA: not every token
    offers the hash-and-sign mechanisms), the token's raw r||s turned into DER."""

    def __init__(self, signer: Signer, public_key: ec.EllipticCurvePublicKey):
        self._signer = signer
        self._public_key = public_key

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public_key.curve

    @property
    def key_size(self) -> int:
        return self._public_key.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public_key

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise UnsupportedAlgorithm("the token key signs ECDSA only")
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, utils.Prehashed):
            digest = bytes(data)
        else:
            hash_class = _EC_HASHES.get(getattr(algorithm, "name", ""))
            if hash_class is None:
                raise UnsupportedAlgorithm(f"the token key does not sign with {algorithm!r}")
            hasher = hashes.Hash(hash_class())
            hasher.update(bytes(data))
            digest = hasher.finalize()
        return raw_to_der(self._signer(digest, Mechanism.ECDSA))

    exchange = private_numbers = private_bytes = _refuse

    def __copy__(self) -> TokenECKey:
        return self

    def __deepcopy__(self, memo) -> TokenECKey:
        return self


def raw_to_der(raw: bytes) -> bytes:
    """A PKCS#11 ECDSA signature (r and s, each half of it, big-endian) as DER."""
    if not raw or len(raw) % 2:
        raise ValueError("the token returned a malformed ECDSA signature")
    half = len(raw) // 2
    r, s = int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
    return utils.encode_dss_signature(r, s)


def token_key(signer: Signer, public_key) -> TokenRSAKey | TokenECKey:
    """The wrapper for a token key whose public half is public_key."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return TokenRSAKey(signer, public_key)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return TokenECKey(signer, public_key)
    raise UnsupportedAlgorithm(f"token keys must be RSA or EC, not {type(public_key).__name__}")
