"""The CA engine (requests_app.pki): PEM, DER, PKCS#7 and PKCS#12, fingerprints, signatures."""

from __future__ import annotations

import hashlib
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from requests_app import pki
from tests.helpers.certs import issue, root


def test_pem_and_der_round_trip():
    """PEM and DER encode the same certificate."""
    cert = issue(root())
    assert pki.load_pem(pki.to_pem(cert)) == cert
    assert pki.load_pem(pki.to_pem(cert).encode()) == cert
    assert x509.load_der_x509_certificate(pki.to_der(cert)) == cert


def test_pkcs7_round_trip():
    """The PKCS#7 bundle holds the certificate and its chain, in DER or PEM."""
    chain = [issue(root()), root()[1]]
    # A SET OF in DER is sorted by encoding, so the order inside the bundle is not ours.
    assert set(pkcs7.load_der_pkcs7_certificates(pki.to_pkcs7(chain))) == set(chain)
    pem = pki.to_pkcs7(chain, der=False)
    assert pem.startswith(b"-----BEGIN PKCS7-----")
    assert set(pkcs7.load_pem_pkcs7_certificates(pem)) == set(chain)


def test_fullchain_pem_puts_the_leaf_first():
    """The full chain is the leaf, then its issuers."""
    chain = [issue(root()), root()[1]]
    assert x509.load_pem_x509_certificates(pki.to_fullchain_pem(chain).encode()) == chain


def test_pkcs12_round_trip_with_python_and_openssl(tmp_path):
    """The PKCS#12 opens with its passphrase in cryptography and in openssl, and not without."""
    key = pki.generate_private_key("p256")
    cert = issue(root(), key=key)
    data = pki.to_pkcs12(key, cert, [root()[1]], "pfx-pass", name="leaf.example.com")
    loaded = pkcs12.load_pkcs12(data, b"pfx-pass")
    assert loaded.cert.certificate == cert
    assert loaded.cert.friendly_name == b"leaf.example.com"
    assert pki.same_public_key(loaded.key, key)
    assert [c.certificate for c in loaded.additional_certs] == [root()[1]]
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(data, b"wrong")
    path = tmp_path / "leaf.p12"
    path.write_bytes(data)
    ok = subprocess.run(
        ["openssl", "pkcs12", "-info", "-noout", "-in", str(path), "-passin", "pass:pfx-pass"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        ["openssl", "pkcs12", "-info", "-noout", "-in", str(path), "-passin", "pass:nope"],
        capture_output=True,
        check=False,
    )
    assert bad.returncode != 0


def test_pkcs12_without_a_chain():
    """A PKCS#12 may hold just the key and certificate."""
    key = pki.generate_private_key("p256")
    cert = issue(root(), key=key)
    loaded = pkcs12.load_pkcs12(pki.to_pkcs12(key, cert, [], "pw", name="x"), b"pw")
    assert loaded.additional_certs == []


def test_fingerprint_and_serial_formats():
    """Fingerprints are colon-separated upper-case hex; serials lower-case hex."""
    cert = root()[1]
    digest = hashlib.sha256(pki.to_der(cert)).hexdigest().upper()
    assert pki.fingerprint(cert) == ":".join(digest[i : i + 2] for i in range(0, 64, 2))
    assert len(pki.fingerprint(cert, hashes.SHA512()).split(":")) == 64
    assert pki.serial_hex(0x0ABC) == "abc"
    assert int(pki.serial_hex(cert.serial_number), 16) == cert.serial_number


def test_verify_signed_by():
    """A leaf verifies against its issuer and not against another CA."""
    leaf = issue(root("p256"))
    assert pki.verify_signed_by(leaf, root("p256")[1])
    assert not pki.verify_signed_by(leaf, root("p384")[1])
