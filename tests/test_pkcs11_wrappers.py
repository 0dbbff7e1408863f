"""The token key wrappers alone: cryptography's builders sign through them, the signatures
verify, and nothing but signing gets through (no token needed: the signer is a software
key standing in for one)."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from pkcs11 import Mechanism

from requests_app import pki
from requests_app.keys.pkcs11.wrappers import TokenECKey, TokenRSAKey, raw_to_der, token_key
from tests.helpers.csrs import make_csr

_RSA_HASH = {
    Mechanism.SHA256_RSA_PKCS: hashes.SHA256,
    Mechanism.SHA384_RSA_PKCS: hashes.SHA384,
    Mechanism.SHA512_RSA_PKCS: hashes.SHA512,
}


def software_token(private):
    """A signer that answers as a token does: PKCS#1 v1.5 over the data for RSA, raw r||s
    over a digest for CKM_ECDSA; it records the mechanisms it was asked for."""
    asked = []

    def signer(data: bytes, mechanism: Mechanism) -> bytes:
        asked.append(mechanism)
        if mechanism == Mechanism.ECDSA:
            size = (private.curve.key_size + 7) // 8
            algorithm = {32: hashes.SHA256(), 48: hashes.SHA384()}[len(data)]
            der = private.sign(data, ec.ECDSA(utils.Prehashed(algorithm)))
            r, s = utils.decode_dss_signature(der)
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        return private.sign(data, padding.PKCS1v15(), _RSA_HASH[mechanism]())

    return signer, asked


@pytest.mark.parametrize("key_type", ["p256", "p384", "rsa2048"])
def test_builders_sign_through_the_wrapper_and_the_signature_verifies(key_type):
    """A CA certificate, a leaf and a CRL signed through the wrapper verify with the key."""
    private = pki.generate_private_key(key_type)
    signer, asked = software_token(private)
    wrapped = token_key(signer, private.public_key())
    ca = pki.sign(
        pki.ca_certificate_builder("CN=Wrapped CA", private.public_key(), validity_days=30),
        wrapped,
    )
    assert pki.verify_signed_by(ca, ca)
    csr = pki.load_csr(make_csr(cn="leaf.example.test"))
    now = pki.utcnow()
    leaf = pki.sign(
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1)),
        wrapped,
    )
    crl = pki.sign(
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=1)),
        wrapped,
    )
    assert crl.is_signature_valid(private.public_key())
    assert pki.verify_signed_by(leaf, ca)
    expected = {Mechanism.ECDSA} if key_type.startswith("p") else {Mechanism.SHA256_RSA_PKCS}
    assert set(asked) == expected  # EC: a digest made here, signed raw by the token
    if key_type == "p384":
        assert pki.signature_hash(wrapped).name == "sha384"


def test_raw_signature_becomes_der():
    """r||s halves become the DER SEQUENCE of two INTEGERs; a malformed one is refused."""
    raw = (5).to_bytes(32, "big") + (7).to_bytes(32, "big")
    assert utils.decode_dss_signature(raw_to_der(raw)) == (5, 7)
    with pytest.raises(ValueError, match="malformed"):
        raw_to_der(b"\x01\x02\x03")


@pytest.mark.parametrize("key_type", ["p256", "rsa2048"])
def test_the_wrapper_only_signs(key_type):
    """Private bytes, numbers, decryption and key agreement are refused: nothing but
    signatures leaves the token; copies are the same handle."""
    private = pki.generate_private_key(key_type)
    wrapped = token_key(software_token(private)[0], private.public_key())
    with pytest.raises(UnsupportedAlgorithm):
        wrapped.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    with pytest.raises(UnsupportedAlgorithm):
        wrapped.private_numbers()
    if isinstance(wrapped, TokenRSAKey):
        with pytest.raises(UnsupportedAlgorithm):
            wrapped.decrypt(b"x", padding.PKCS1v15())
        with pytest.raises(UnsupportedAlgorithm, match=r"PKCS#1 v1\.5 only"):
            wrapped.sign(b"x", padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
        with pytest.raises(UnsupportedAlgorithm):
            wrapped.sign(b"x", padding.PKCS1v15(), hashes.SHA1())  # noqa: S303 - refused
    else:
        assert isinstance(wrapped, TokenECKey)
        with pytest.raises(UnsupportedAlgorithm):
            wrapped.exchange(ec.ECDH(), private.public_key())
    assert copy.copy(wrapped) is wrapped and copy.deepcopy(wrapped) is wrapped
    assert wrapped.key_size == private.key_size
