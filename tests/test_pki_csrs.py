"""The CA engine (requests_app.pki): loading CSRs (PEM and DER) and checking what they ask."""

from __future__ import annotations

import base64
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc2986, rfc5280

from requests_app import pki
from tests.helpers.certs import root
from tests.helpers.csrs import der_of, make_csr

# Bytes a careless reader would strip from the end of a DER CSR.
WHITESPACE = b" \t\n\r\x0b\x0c"


# --- CSRs: loading -----------------------------------------------------------------------


def test_load_csr_reads_pem_text_and_bytes():
    """A PEM CSR is read from str or bytes, with whatever surrounds it."""
    pem = make_csr(cn="www.example.com")
    assert pki.load_csr(pem).subject.rfc4514_string() == "CN=www.example.com"
    assert (
        pki.load_csr(b"\n  some note\n" + pem.encode() + b"\n\n").subject
        == pki.load_csr(pem).subject
    )


def test_load_csr_reads_the_new_certificate_request_label():
    """The older "NEW CERTIFICATE REQUEST" label (from Windows and Java keytool) is read."""
    pem = make_csr().replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST")
    assert pki.common_name(pki.load_csr(pem).subject) == "host1.example.test"


def test_load_csr_accepts_der():
    """A DER CSR (a binary .csr file) is accepted, also with a stray newline after it."""
    der = der_of(make_csr(cn="der.example.com"))
    assert pki.common_name(pki.load_csr(der).subject) == "der.example.com"
    assert pki.common_name(pki.load_csr(der + b"\n").subject) == "der.example.com"


def test_load_csr_accepts_der_that_ends_in_a_whitespace_byte():
    """A DER CSR whose last signature byte looks like whitespace is not cut short."""
    key = pki.generate_private_key("p256")
    for _ in range(5000):  # ECDSA signatures are random: about 1 in 40 ends in such a byte
        der = der_of(make_csr(key=key))
        if der[-1:] in [bytes([b]) for b in WHITESPACE]:
            break
    else:
        pytest.fail("no DER CSR ending in a whitespace byte was made")
    assert pki.common_name(pki.load_csr(der).subject) == "host1.example.test"


def test_load_csr_refuses_more_than_64_kib():
    """A CSR above 64 KiB is refused before anything parses it."""
    pem = make_csr().encode()
    with pytest.raises(
        pki.CSRError, match="The CSR is 65 KiB; a certificate request is at most 64 KiB"
    ):
        pki.load_csr(pem + b" " * (pki.MAX_CSR_BYTES + 1 - len(pem)))


def test_load_csr_accepts_exactly_64_kib():
    """64 KiB itself is still allowed."""
    pem = make_csr().encode()
    assert pki.load_csr(pem + b"\n" * (pki.MAX_CSR_BYTES - len(pem)))


@pytest.mark.parametrize("data", [b"", "", b"   \n\t ", "\n"])
def test_load_csr_refuses_empty_input(data):
    """Nothing (or only whitespace) is an empty CSR."""
    with pytest.raises(pki.CSRError, match="The CSR is empty"):
        pki.load_csr(data)


@pytest.mark.parametrize("data", [b"hello world", b"\x30\x03\x02\x01\x00", b"\x00" * 100])
def test_load_csr_refuses_garbage(data):
    """Bytes that are neither PEM nor a DER CSR are refused."""
    with pytest.raises(pki.CSRError, match="This is not a certificate signing request"):
        pki.load_csr(data)


def test_load_csr_refuses_truncated_pem():
    """A PEM CSR without its END line says it is cut short."""
    pem = make_csr()
    cut = pem[: pem.index("-----END")]
    with pytest.raises(pki.CSRError, match="The CSR is cut short"):
        pki.load_csr(cut)


def test_load_csr_refuses_damaged_base64():
    """A PEM CSR with lines missing from its middle is damaged."""
    lines = make_csr().splitlines()
    damaged = "\n".join([lines[0], *lines[2:]])
    with pytest.raises(pki.CSRError, match="The CSR text is damaged"):
        pki.load_csr(damaged)


def test_load_csr_refuses_a_certificate():
    """A certificate pasted instead of a CSR is named as such."""
    with pytest.raises(pki.CSRError, match="This is a certificate, not a certificate signing"):
        pki.load_csr(pki.to_pem(root()[1]))


@pytest.mark.parametrize(
    "private_format",
    [
        (serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        (serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()),
        (serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")),
    ],
    ids=["pkcs8", "ec-private-key", "encrypted"],
)
def test_load_csr_refuses_a_private_key_and_warns(private_format):
    """A private key pasted instead of a CSR is refused with a warning never to send it."""
    pem = pki.generate_private_key("p256").private_bytes(
        serialization.Encoding.PEM, *private_format
    )
    with pytest.raises(pki.CSRError, match="This is a private key: never send it to anyone"):
        pki.load_csr(pem)


def test_load_csr_refuses_a_public_key_and_other_pem_blocks():
    """A bare public key and unknown PEM blocks are named for what they are."""
    public = (
        root()[0]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(pki.CSRError, match="This is a public key alone"):
        pki.load_csr(public)
    with pytest.raises(pki.CSRError, match="a PEM block of type 'X509 CRL', not a CSR"):
        pki.load_csr("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")


def test_load_csr_refuses_an_invalid_version_in_der_and_pem():
    """A CSR whose version is not 1 gets a clear refusal (cryptography's InvalidVersion is no
    ValueError)."""
    der = der_of(make_csr())
    bad = der.replace(b"\x02\x01\x00", b"\x02\x01\x01", 1)
    with pytest.raises(pki.CSRError, match="The CSR has an invalid version number"):
        pki.load_csr(bad)
    body = base64.b64encode(bad).decode()
    pem = f"-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----\n"
    with pytest.raises(pki.CSRError, match="The CSR has an invalid version number"):
        pki.check_csr(pem)


# --- CSRs: checking ----------------------------------------------------------------------


def _csr_with_the_san_twice() -> bytes:
    """A correctly signed CSR whose extensionRequest holds subjectAltName twice."""
    key = pki.generate_private_key("p256")
    der = der_of(make_csr(key=key, sans=[x509.DNSName("a.example.com")]))
    request, _ = decoder.decode(der, asn1Spec=rfc2986.CertificationRequest())
    info = request["certificationRequestInfo"]
    values = info["attributes"][0]["values"]
    extensions, _ = decoder.decode(bytes(values[0]), asn1Spec=rfc5280.Extensions())
    extensions.append(extensions[0])
    values[0] = univ.Any(encoder.encode(extensions))
    signature = key.sign(encoder.encode(info), ec.ECDSA(hashes.SHA256()))
    request["signature"] = univ.BitString.fromOctetString(signature)
    return encoder.encode(request)


def test_check_csr_refuses_a_duplicate_extension():
    """A signed CSR with an extension twice is refused (DuplicateExtension is no ValueError)."""
    data = _csr_with_the_san_twice()
    assert x509.load_der_x509_csr(data).is_signature_valid
    with pytest.raises(pki.CSRError, match=r"The CSR has the extension 2\.5\.29\.17 twice"):
        pki.check_csr(data)


def test_check_csr_describes_the_request():
    """The checked CSR's subject, key and SANs are read out."""
    key = pki.generate_private_key("p256")
    sans = [x509.DNSName("a.example.com"), x509.IPAddress(ipaddress.ip_address("192.0.2.1"))]
    info = pki.check_csr(make_csr(cn="a.example.com", sans=sans, key=key))
    assert info.subject == "CN=a.example.com"
    assert (info.key_type, info.key_algorithm, info.key_size) == ("p256", "EC P-256", 256)
    assert info.sans == ["DNS:a.example.com", "IP:192.0.2.1"]
    assert info.public_key_sha256 == pki.public_key_sha256(key.public_key())
    assert info.pem.startswith("-----BEGIN CERTIFICATE REQUEST-----")


def test_check_csr_refuses_a_csr_altered_after_signing():
    """Changing the subject of a signed CSR breaks its signature."""
    der = der_of(make_csr(cn="host1.example.test"))
    tampered = der.replace(b"host1.example.test", b"host2.example.test")
    with pytest.raises(pki.CSRError, match="The CSR's signature does not verify"):
        pki.check_csr(tampered)


def test_check_csr_refuses_a_swapped_public_key():
    """A CSR whose public key was replaced by another does not verify."""
    key, other = pki.generate_private_key("p256"), pki.generate_private_key("p256")
    der = der_of(make_csr(key=key))

    def spki(k):
        return k.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    swapped = der.replace(spki(key), spki(other))
    assert swapped != der
    with pytest.raises(pki.CSRError, match="the key that signed it does not match"):
        pki.check_csr(swapped)


def test_check_csr_refuses_rsa_1024():
    """A 1024-bit RSA key is too weak."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - on purpose
    with pytest.raises(pki.CSRError, match="RSA key is 1024 bits; at least 2048 are required"):
        pki.check_csr(make_csr(key=key))


def test_check_csr_refuses_rsa_exponent_3():
    """RSA with public exponent 3 is refused."""
    key = rsa.generate_private_key(public_exponent=3, key_size=2048)
    with pytest.raises(pki.CSRError, match="RSA public exponent is 3; only 65537 is accepted"):
        pki.check_csr(make_csr(key=key))


def test_check_csr_accepts_rsa_2048():
    """RSA 2048 with e=65537 passes."""
    info = pki.check_csr(make_csr(key=root("rsa2048")[0]))
    assert (info.key_type, info.key_algorithm, info.key_size) == ("rsa2048", "RSA", 2048)


@pytest.mark.parametrize(
    ("key_type", "algorithm", "size"),
    [("p256", "EC P-256", 256), ("p384", "EC P-384", 384), ("p521", "EC P-521", 521)],
)
def test_check_csr_accepts_the_nist_curves(key_type, algorithm, size):
    """EC P-256, P-384 and P-521 keys pass."""
    info = pki.check_csr(make_csr(key_type=key_type))
    assert (info.key_type, info.key_algorithm, info.key_size) == (key_type, algorithm, size)


def test_check_csr_refuses_secp256k1():
    """Curves other than the NIST ones are refused."""
    key = ec.generate_private_key(ec.SECP256K1())
    with pytest.raises(pki.CSRError, match="ECDSA keys on the curve secp256k1 are not accepted"):
        pki.check_csr(make_csr(key=key))


def test_check_csr_refuses_ed25519_unless_the_profile_allows_it():
    """Ed25519 is refused by default and accepted when allowed."""
    csr = make_csr(key_type="ed25519")
    with pytest.raises(pki.CSRError, match="Ed25519 keys are not accepted for this profile"):
        pki.check_csr(csr)
    info = pki.check_csr(csr, allow_ed25519=True)
    assert (info.key_type, info.key_algorithm) == ("ed25519", "Ed25519")


def test_check_csr_refuses_other_kinds_of_keys():
    """An Ed448 key is refused, named as people name it (never a Python class name)."""
    key = ed448.Ed448PrivateKey.generate()
    csr = x509.CertificateSigningRequestBuilder().subject_name(pki.parse_dn("CN=x")).sign(key, None)
    with pytest.raises(pki.CSRError, match=r"^Ed448 keys are not accepted; use RSA"):
        pki.check_csr(csr.public_bytes(serialization.Encoding.PEM))


def test_load_csr_accepts_der_ending_in_a_whitespace_byte_with_a_newline_after_it():
    """A DER CSR whose last byte looks like whitespace still reads with a stray newline after it."""
    key = pki.generate_private_key("p256")
    for _ in range(5000):
        der = der_of(make_csr(key=key))
        if der[-1:] in [bytes([b]) for b in WHITESPACE]:
            break
    else:
        pytest.fail("no DER CSR ending in a whitespace byte was made")
    assert pki.common_name(pki.load_csr(der + b"\n").subject) == "host1.example.test"
    assert pki.common_name(pki.load_csr(der + b"\r\n").subject) == "host1.example.test"
