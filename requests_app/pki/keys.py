"""Key pairs: the types we make and accept, how they are described, stored and used to sign."""

from __future__ import annotations

import hashlib

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519

from .errors import CAError, PKIError

CA_KEY_TYPES = ("rsa2048", "rsa3072", "rsa4096", "p256", "p384")
RSA_MIN_BITS, RSA_MAX_BITS = 2048, 8192
EC_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


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


_OTHER_KEYS = (
    (dsa.DSAPublicKey, "DSA"),
    (ed448.Ed448PublicKey, "Ed448"),
    (x25519.X25519PublicKey, "X25519"),
    (x448.X448PublicKey, "X448"),
)


def key_name(key) -> str:
    """A public key's type as people call it: "RSA", "ECDSA P-256", "Ed25519", "DSA"."""
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {EC_CURVES.get(key.curve.name, key.curve.name)}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    for kind, name in _OTHER_KEYS:
        if isinstance(key, kind):
            return name
    return "unknown"


def key_description(key: PublicKey) -> tuple[str, int]:
    """Algorithm name and size in bits, as shown to people: ("RSA", 2048), ("EC P-256", 256)."""
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {EC_CURVES.get(key.curve.name, key.curve.name)}", key.curve.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    return key_name(key), getattr(key, "key_size", 0)


def public_key_der(key: PublicKey | PrivateKey) -> bytes:
    """The DER SubjectPublicKeyInfo of a key (or of a private key's public half)."""
    public = key.public_key() if hasattr(key, "private_bytes") else key
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_sha256(key: PublicKey) -> str:
    """SHA-256 over the DER SubjectPublicKeyInfo, lower-case hex."""
    return hashlib.sha256(public_key_der(key)).hexdigest()


def same_public_key(a: PublicKey | PrivateKey, b: PublicKey | PrivateKey) -> bool:
    """True when both are (or belong to) the same public key."""
    return public_key_der(a) == public_key_der(b)


def signature_hash(key: PrivateKey) -> hashes.HashAlgorithm | None:
    """SHA-256, SHA-384 for P-384, SHA-512 for P-521; None for Ed25519."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"secp384r1": hashes.SHA384(), "secp521r1": hashes.SHA512()}.get(
            key.curve.name, hashes.SHA256()
        )
    return hashes.SHA256()


def sign(builder, key: PrivateKey):
    """Sign a certificate, CSR, CRL or OCSP response builder with the hash the key calls for."""
    return builder.sign(private_key=key, algorithm=signature_hash(key))


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
