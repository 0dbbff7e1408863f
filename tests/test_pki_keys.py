"""The CA engine (requests_app.pki): generating, describing, encrypting and loading keys."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from requests_app import pki
from tests.helpers.certs import root


@pytest.mark.parametrize(
    ("key_type", "cls", "size"),
    [
        ("rsa2048", rsa.RSAPrivateKey, 2048),
        ("p256", ec.EllipticCurvePrivateKey, 256),
        ("p384", ec.EllipticCurvePrivateKey, 384),
        ("p521", ec.EllipticCurvePrivateKey, 521),
        ("ed25519", ed25519.Ed25519PrivateKey, None),
    ],
)
def test_generate_private_key_makes_each_type(key_type, cls, size):
    """Each short key-type name makes a key of that kind, named back the same way."""
    key = pki.generate_private_key(key_type)
    assert isinstance(key, cls)
    if size:
        assert key.key_size == size
    assert pki.key_type_of(key) == key_type
    assert pki.key_type_of(key.public_key()) == key_type


def test_generate_private_key_refuses_an_unknown_type():
    """An unknown key type names the ones that exist."""
    with pytest.raises(pki.PKIError, match="unknown key type 'dsa'; use one of rsa2048"):
        pki.generate_private_key("dsa")


def test_key_description_and_fingerprint_of_a_public_key():
    """Keys are described as people read them and hashed over the DER SubjectPublicKeyInfo."""
    ec_key = pki.generate_private_key("p384").public_key()
    assert pki.key_description(ec_key) == ("EC P-384", 384)
    assert pki.key_description(root("rsa2048")[0].public_key()) == ("RSA", 2048)
    assert pki.key_description(ed25519.Ed25519PrivateKey.generate().public_key()) == (
        "Ed25519",
        256,
    )
    spki = ec_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert pki.public_key_sha256(ec_key) == hashlib.sha256(spki).hexdigest()


@pytest.mark.parametrize(
    ("key_type", "algorithm"),
    [("rsa2048", hashes.SHA256), ("p256", hashes.SHA256), ("p384", hashes.SHA384)],
)
def test_signature_hash_follows_the_key(key_type, algorithm):
    """RSA and P-256 sign with SHA-256, P-384 with SHA-384."""
    assert isinstance(pki.signature_hash(root(key_type)[0]), algorithm)


def test_signature_hash_is_none_for_ed25519_and_sha512_for_p521():
    """Ed25519 carries its own hash; P-521 pairs with SHA-512."""
    assert pki.signature_hash(ed25519.Ed25519PrivateKey.generate()) is None
    assert isinstance(pki.signature_hash(pki.generate_private_key("p521")), hashes.SHA512)


def test_encrypted_private_key_round_trip():
    """A key encrypted under a passphrase is PKCS#8 PEM and opens with it again."""
    key = pki.generate_private_key("p256")
    data = pki.encrypt_private_key(key, "s3cret")
    assert data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert pki.same_public_key(pki.load_private_key(data, "s3cret"), key)


def test_encrypt_private_key_needs_a_passphrase():
    """A key is never stored unencrypted."""
    with pytest.raises(pki.CAError, match="a passphrase is required"):
        pki.encrypt_private_key(pki.generate_private_key("p256"), "")


def test_load_private_key_reads_unencrypted_der():
    """An unencrypted DER key opens without a passphrase."""
    key = pki.generate_private_key("p256")
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert pki.same_public_key(pki.load_private_key(der, None), key)


@pytest.mark.parametrize(
    ("passphrase", "encrypted", "message"),
    [
        ("wrong", True, "could not open the CA key: wrong passphrase"),
        (None, True, "the CA key is encrypted and no passphrase was given"),
        ("extra", False, "the CA key is not encrypted, but a passphrase was given"),
    ],
)
def test_load_private_key_refusals_are_one_clear_error(passphrase, encrypted, message):
    """Passphrase mistakes give one CAError in our words, without cryptography's exception."""
    key = pki.generate_private_key("p256")
    if encrypted:
        data = pki.encrypt_private_key(key, "right")
    else:
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    with pytest.raises(pki.CAError, match=message) as caught:
        pki.load_private_key(data, passphrase, what="the CA key")
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_load_private_key_refuses_a_certificate():
    """A certificate given as the key is refused as not a private key."""
    with pytest.raises(pki.CAError, match="not a private key in PEM/DER"):
        pki.load_private_key(pki.to_pem(root()[1]).encode(), None)


def test_load_private_key_refuses_an_unsupported_kind_of_key():
    """An Ed448 key is not a kind a CA can use."""
    data = ed448.Ed448PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(pki.CAError, match="CA keys must be RSA or EC"):
        pki.load_private_key(data, None)
