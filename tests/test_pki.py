"""The CA engine (requests_app.pki): CSR checks, names, CAs, issuing and encodings."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc2986, rfc5280

from requests_app import pki
from tests.helpers.csrs import make_csr

# pkilint's CLI sits next to the interpreter running the tests (the virtualenv's bin/).
LINT = str(Path(sys.executable).parent / "lint_pkix_cert")
WHITESPACE = b" \t\n\r\x0b\x0c"


# --- helpers shared with the other CA test modules ---------------------------------------


def pkilint(path: Path) -> subprocess.CompletedProcess:
    """Run pkilint's RFC 5280 linter on a PEM file, reporting ERROR and worse."""
    return subprocess.run(
        [LINT, "lint", "-s", "ERROR", str(path)], capture_output=True, text=True, check=False
    )


def assert_lints_clean(path: Path) -> None:
    """pkilint exits 0 and prints no finding for the certificate in path."""
    result = pkilint(path)
    assert result.stdout.strip() == "", result.stdout
    assert result.returncode == 0, result.stderr


def openssl_verify(leaf: Path, *, ca_file: Path, untrusted: Path | None = None):
    """`openssl verify` of leaf against ca_file (and untrusted intermediates)."""
    args = ["openssl", "verify", "-CAfile", str(ca_file)]
    if untrusted is not None:
        args += ["-untrusted", str(untrusted)]
    return subprocess.run([*args, str(leaf)], capture_output=True, text=True, check=False)


def write_pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_text(pki.to_fullchain_pem(list(certs)))
    return path


@cache
def root(key_type: str = "p256") -> tuple[pki.PrivateKey, x509.Certificate]:
    """One self-signed root per key type for the whole module (RSA 4096 is slow to make)."""
    return pki.create_ca(f"CN=Root {key_type},O=ca-portal tests,C=US", key_type=key_type)


def make_ca_cert(
    subject: str,
    key: pki.PrivateKey,
    *,
    issuer: tuple[pki.PrivateKey, x509.Certificate] | None = None,
    ca: bool = True,
    key_cert_sign: bool = True,
    not_before: dt.datetime | None = None,
    days: int = 365,
) -> x509.Certificate:
    """A (CA) certificate for key, signed by issuer or self-signed, built by hand."""
    name = pki.parse_dn(subject)
    issuer_key, issuer_name = (issuer[0], issuer[1].subject) if issuer else (key, name)
    not_before = not_before or pki.utcnow() - dt.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=key_cert_sign,
                crl_sign=key_cert_sign,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return builder.sign(issuer_key, pki.signature_hash(issuer_key))


def issue(ca: tuple[pki.PrivateKey, x509.Certificate], **overrides) -> x509.Certificate:
    """An end-entity certificate from ca with sensible defaults."""
    key = overrides.pop("key", None) or pki.generate_private_key("p256")
    options = {
        "ca_cert": ca[1],
        "ca_key": ca[0],
        "public_key": key.public_key(),
        "subject": pki.parse_dn("CN=leaf.example.com"),
        "sans": [x509.DNSName("leaf.example.com")],
        "extended_key_usages": ["serverAuth"],
        "validity_days": 30,
        **overrides,
    }
    return pki.issue_certificate(**options)


def der_of(pem: str) -> bytes:
    return x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER)


# --- keys --------------------------------------------------------------------------------


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


# --- names -------------------------------------------------------------------------------


def test_parse_dn_reads_rfc4514_order():
    """A DN written most-specific first is stored country first, as X.500 orders it."""
    name = pki.parse_dn("CN=Example Root CA,O=Example\\, Inc.,C=US")
    assert [a.oid for a in name] == [
        NameOID.COUNTRY_NAME,
        NameOID.ORGANIZATION_NAME,
        NameOID.COMMON_NAME,
    ]
    assert pki.common_name(name) == "Example Root CA"
    assert name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Example, Inc."
    assert name.rfc4514_string() == "CN=Example Root CA,O=Example\\, Inc.,C=US"


@pytest.mark.parametrize(
    ("dn", "message"),
    [
        ("", "the subject DN is empty"),
        ("   ", "the subject DN is empty"),
        ("CN=x,C=USA", "cannot parse the DN"),
        ("CN=", "cannot parse the DN"),
        ("CN=\\ ,O=x", "has an empty attribute"),
        ("FOO=bar,CN=x", "with known attribute names"),
        ("just words", "cannot parse the DN"),
    ],
)
def test_parse_dn_refusals(dn, message):
    """Bad DNs are refused with a message that says why."""
    with pytest.raises(pki.InvalidName, match=message):
        pki.parse_dn(dn)


def test_common_name_is_none_without_a_cn():
    """A name without CN has no common name."""
    assert pki.common_name(pki.parse_dn("O=Example,C=US")) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("WWW.Example.COM", "www.example.com"),
        ("www.example.com.", "www.example.com"),
        ("  host.example.com  ", "host.example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("ü.example.com", "xn--tda.example.com"),
        ("*.example.com", "*.example.com"),
        ("*.Bücher.example", "*.xn--bcher-kva.example"),
        ("localhost", "localhost"),
        ("a-b.example.com", "a-b.example.com"),
        ("x" * 63 + ".example.com", "x" * 63 + ".example.com"),
    ],
)
def test_normalize_hostname_accepts(value, expected):
    """Valid names come back lower-case, in A-label (IDNA) form, without a trailing dot."""
    assert pki.normalize_hostname(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "a hostname is empty"),
        (".", "a hostname is empty"),
        ("a..example.com", "has an empty label"),
        (".example.com", "has an empty label"),
        ("example.com..", "has an empty label"),
        ("*.com", "a wildcard must stand above at least two labels"),
        ("*", "a wildcard must stand above at least two labels"),
        ("a*.example.com", "a wildcard may only be the whole left-most label"),
        ("www.*.example.com", "a wildcard may only be the whole left-most label"),
        ("*.*.example.com", "a wildcard may only be the whole left-most label"),
        ("-a.example.com", "is not a valid hostname"),
        ("a-.example.com", "is not a valid hostname"),
        ("under_score.example.com", "is not a valid hostname"),
        ("sp ace.example.com", "is not a valid hostname"),
        ("x" * 64 + ".example.com", "is not a valid hostname"),
        ("example.123", "the last label is numeric"),
        (".".join(["a" * 60] * 5), "is longer than 253 characters"),
    ],
)
def test_normalize_hostname_refuses(value, message):
    """Malformed names, misplaced wildcards and over-long names are refused."""
    with pytest.raises(pki.InvalidName, match=message):
        pki.normalize_hostname(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.7", x509.IPAddress(ipaddress.ip_address("192.0.2.7"))),
        ("2001:db8::1", x509.IPAddress(ipaddress.ip_address("2001:db8::1"))),
        ("[2001:db8::1]", x509.IPAddress(ipaddress.ip_address("2001:db8::1"))),
        (" Host.Example.com ", x509.DNSName("host.example.com")),
    ],
)
def test_parse_san_tells_ips_from_hostnames(text, expected):
    """An IP address becomes an iPAddress, anything else a checked dNSName."""
    assert pki.parse_san(text) == expected


def test_parse_san_refuses_an_ip_with_leading_zeros():
    """An ambiguous dotted quad is neither an IP nor a hostname."""
    with pytest.raises(pki.InvalidName, match="the last label is numeric"):
        pki.parse_san("010.0.0.1")


@pytest.mark.parametrize(
    "text",
    [
        "DNS:www.example.com",
        "IP:10.0.0.1",
        "IP:2001:db8::1",
        "email:a@example.com",
        "URI:https://x.example/",
    ],
)
def test_san_text_round_trip(text):
    """san_from_text and san_to_text are inverses."""
    assert pki.san_to_text(pki.san_from_text(text)) == text


def test_san_to_text_of_other_kinds():
    """Kinds without a short prefix are named by their class."""
    name = x509.RegisteredID(x509.ObjectIdentifier("1.2.3.4"))
    assert pki.san_to_text(name).startswith("RegisteredID:")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("www.example.com", "cannot read the subject alternative name"),
        ("DNS:", "cannot read the subject alternative name"),
        ("X400:foo", "cannot read the subject alternative name"),
        ("IP:10.0.0.300", "'IP:10.0.0.300'"),
        ("DNS:*.com", "a wildcard must stand above"),
    ],
)
def test_san_from_text_refusals(text, message):
    """Unknown kinds, empty values and bad values are refused."""
    with pytest.raises(pki.InvalidName, match=message):
        pki.san_from_text(text)


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
    with pytest.raises(pki.CSRError, match="EC curve secp256k1 is not accepted"):
        pki.check_csr(make_csr(key=key))


def test_check_csr_refuses_ed25519_unless_the_profile_allows_it():
    """Ed25519 is refused by default and accepted when allowed."""
    csr = make_csr(key_type="ed25519")
    with pytest.raises(pki.CSRError, match="Ed25519 keys are not accepted for this profile"):
        pki.check_csr(csr)
    info = pki.check_csr(csr, allow_ed25519=True)
    assert (info.key_type, info.key_algorithm) == ("ed25519", "Ed25519")


def test_check_csr_refuses_other_kinds_of_keys():
    """An Ed448 key is refused."""
    key = ed448.Ed448PrivateKey.generate()
    csr = x509.CertificateSigningRequestBuilder().subject_name(pki.parse_dn("CN=x")).sign(key, None)
    with pytest.raises(pki.CSRError, match="Ed448PublicKey keys are not accepted"):
        pki.check_csr(csr.public_bytes(serialization.Encoding.PEM))


# --- CAs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", pki.CA_KEY_TYPES)
def test_create_ca_for_every_key_type(key_type, tmp_path):
    """Each CA key type makes a self-signed root with the CA extensions, clean for pkilint."""
    key, cert = root(key_type)
    assert pki.key_type_of(key) == key_type
    assert pki.same_public_key(key, cert.public_key())
    assert cert.subject == cert.issuer
    assert pki.verify_signed_by(cert, cert)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign and usage.value.crl_sign
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert not ski.critical
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.value.digest
    expected_hash = hashes.SHA384 if key_type == "p384" else hashes.SHA256
    assert isinstance(cert.signature_hash_algorithm, expected_hash)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == dt.timedelta(days=3650, minutes=1)
    assert cert.not_valid_before_utc < pki.utcnow()
    assert_lints_clean(write_pem(tmp_path / "ca.pem", cert))
    pki.check_ca(cert, key)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key_type": "rsa1024"}, "unknown CA key type 'rsa1024'"),
        ({"key_type": "ed25519"}, "unknown CA key type 'ed25519'"),
        ({"validity_days": 0}, "between 1 and 36500 days"),
        ({"validity_days": 36501}, "between 1 and 36500 days"),
        ({"subject": "nonsense"}, "cannot parse the DN"),
    ],
)
def test_create_ca_refusals(kwargs, message):
    """Unknown key types, absurd validity and bad names are refused before any key is made."""
    subject = kwargs.pop("subject", "CN=Bad CA")
    with pytest.raises(pki.PKIError, match=message):
        pki.create_ca(subject, **kwargs)


def test_check_ca_refuses_a_key_that_does_not_match():
    """The key must be the CA certificate's."""
    with pytest.raises(pki.CAError, match="the private key does not match the CA certificate"):
        pki.check_ca(root("p256")[1], pki.generate_private_key("p256"))


def test_check_ca_refuses_a_certificate_that_is_not_a_ca():
    """An end-entity certificate cannot be a CA."""
    key = pki.generate_private_key("p256")
    cert = make_ca_cert("CN=Not A CA", key, issuer=root(), ca=False, key_cert_sign=False)
    with pytest.raises(pki.CAError, match=r"not a CA certificate \(basicConstraints CA:TRUE"):
        pki.check_ca(cert, key, [root()[1]])


def test_check_ca_refuses_a_ca_without_keycertsign():
    """A CA certificate whose keyUsage forbids signing certificates is refused."""
    key = pki.generate_private_key("p256")
    cert = make_ca_cert("CN=No Signing CA", key, key_cert_sign=False)
    with pytest.raises(pki.CAError, match="does not allow keyCertSign"):
        pki.check_ca(cert, key)


def test_check_ca_refuses_an_expired_or_future_ca():
    """A CA is only accepted while its certificate is valid."""
    key, cert = root()
    with pytest.raises(pki.CAError, match="is not valid now"):
        pki.check_ca(cert, key, now=cert.not_valid_after_utc + dt.timedelta(seconds=1))
    with pytest.raises(pki.CAError, match="is not valid now"):
        pki.check_ca(cert, key, now=cert.not_valid_before_utc - dt.timedelta(seconds=1))
    old_key = pki.generate_private_key("p256")
    expired = make_ca_cert(
        "CN=Old CA", old_key, not_before=pki.utcnow() - dt.timedelta(days=30), days=10
    )
    with pytest.raises(pki.CAError, match="the certificate is not valid now"):
        pki.check_ca(expired, old_key)


def test_check_ca_refuses_a_broken_chain():
    """A chain whose root did not sign the intermediate is refused, naming both."""
    key = pki.generate_private_key("p256")
    intermediate = make_ca_cert("CN=Issuing CA", key, issuer=root("p256"))
    pki.check_ca(intermediate, key, [root("p256")[1]])
    with pytest.raises(
        pki.CAError, match="the chain is broken: CN=Issuing CA was not issued by CN=Root p384"
    ):
        pki.check_ca(intermediate, key, [root("p384")[1]])


def test_check_ca_refuses_a_chain_certificate_that_is_not_a_ca():
    """Every certificate of the chain must itself be a CA."""
    leaf_key = pki.generate_private_key("p256")
    not_ca = make_ca_cert("CN=Plain", leaf_key, issuer=root(), ca=False, key_cert_sign=False)
    key = pki.generate_private_key("p256")
    below = make_ca_cert("CN=Below Plain", key, issuer=(leaf_key, not_ca))
    with pytest.raises(pki.CAError, match="the chain's CN=Plain is not a CA certificate"):
        pki.check_ca(below, key, [not_ca])


def test_check_ca_refuses_weak_or_unusual_ca_keys():
    """An RSA 1024, secp256k1 or Ed25519 CA key is refused."""
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    with pytest.raises(pki.CAError, match="the CA key is RSA 1024 bits"):
        pki.check_ca(make_ca_cert("CN=Weak CA", weak), weak)
    k1 = ec.generate_private_key(ec.SECP256K1())
    with pytest.raises(pki.CAError, match="curve secp256k1 is not accepted"):
        pki.check_ca(make_ca_cert("CN=K1 CA", k1), k1)
    edwards = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(pki.CAError, match="the CA key is Ed25519; use RSA or EC"):
        pki.check_ca(make_ca_cert("CN=Edwards CA", edwards), edwards)


def test_an_intermediate_from_an_offline_root_issues_verifiable_certificates(tmp_path):
    """An intermediate checked with its chain issues leaves that openssl verifies to the root."""
    root_key, root_cert = root("rsa3072")
    key = pki.generate_private_key("p256")
    intermediate = make_ca_cert(
        "CN=Issuing CA,O=ca-portal tests", key, issuer=(root_key, root_cert)
    )
    pki.check_ca(intermediate, key, [root_cert])
    leaf = issue((key, intermediate))
    assert pki.verify_signed_by(leaf, intermediate)
    assert not pki.verify_signed_by(leaf, root_cert)
    result = openssl_verify(
        write_pem(tmp_path / "leaf.pem", leaf),
        ca_file=write_pem(tmp_path / "root.pem", root_cert),
        untrusted=write_pem(tmp_path / "intermediate.pem", intermediate),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": OK")
    assert_lints_clean(tmp_path / "leaf.pem")


def test_load_certificates_reads_bundles_and_der():
    """A PEM bundle yields each certificate in order; DER yields the one."""
    certs = [root("p256")[1], root("p384")[1]]
    assert pki.load_certificates(pki.to_fullchain_pem(certs).encode()) == certs
    assert pki.load_certificates(pki.to_der(certs[0])) == certs[:1]
    with pytest.raises(pki.CAError, match="could not read a certificate"):
        pki.load_certificates(b"not a certificate")


# --- issuing -----------------------------------------------------------------------------


def test_issue_certificate_builds_an_end_entity_certificate():
    """The leaf has the profile's extensions, an AKI naming the CA's SKI, and AIA/CRL URLs."""
    ca_key, ca_cert = root("p256")
    key = pki.generate_private_key("rsa2048")
    now = pki.utcnow().replace(microsecond=0)
    cert = issue(
        (ca_key, ca_cert),
        key=key,
        extended_key_usages=["clientAuth", "emailProtection"],
        sans=[x509.RFC822Name("ada@example.com")],
        ca_issuers_url="http://ca.example.com/ca/1/ca.cer",
        crl_url="http://ca.example.com/ca/1/crl.crl",
        ocsp_url="http://ocsp.example.com/",
        now=now,
    )
    ext = cert.extensions
    assert not ext.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = ext.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment and not usage.key_agreement
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH,
        ExtendedKeyUsageOID.EMAIL_PROTECTION,
    ]
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    access = ext.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [(a.access_method, a.access_location.value) for a in access] == [
        (x509.AuthorityInformationAccessOID.OCSP, "http://ocsp.example.com/"),
        (x509.AuthorityInformationAccessOID.CA_ISSUERS, "http://ca.example.com/ca/1/ca.cer"),
    ]
    points = ext.get_extension_for_class(x509.CRLDistributionPoints).value
    assert points[0].full_name[0].value == "http://ca.example.com/ca/1/crl.crl"
    assert cert.not_valid_before_utc == now - dt.timedelta(minutes=1)
    assert cert.not_valid_after_utc == now + dt.timedelta(days=30)


def test_issue_certificate_without_urls_or_ekus_leaves_those_extensions_out():
    """No AIA, CRL DP or EKU is written when none is given."""
    cert = issue(root(), extended_key_usages=[])
    present = {e.oid for e in cert.extensions}
    assert x509.ExtensionOID.AUTHORITY_INFORMATION_ACCESS not in present
    assert x509.ExtensionOID.CRL_DISTRIBUTION_POINTS not in present
    assert x509.ExtensionOID.EXTENDED_KEY_USAGE not in present


@pytest.mark.parametrize(
    ("key_type", "encipherment", "bits"),
    [
        ("rsa2048", True, {"digital_signature", "key_encipherment"}),
        ("p256", True, {"digital_signature", "key_agreement"}),
        ("rsa2048", False, {"digital_signature"}),
        ("p256", False, {"digital_signature"}),
        ("ed25519", True, {"digital_signature"}),
    ],
)
def test_key_usage_depends_on_the_key(key_type, encipherment, bits):
    """RSA gets keyEncipherment, EC keyAgreement, and neither when the profile says so."""
    key = pki.generate_private_key(key_type) if key_type != "rsa2048" else root("rsa2048")[0]
    usage = pki.key_usage_for(key.public_key(), encipherment=encipherment)
    names = [
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
    ]
    assert {n for n in names if getattr(usage, n)} == bits


def test_issue_certificate_never_outlives_the_ca():
    """The validity is cut at the CA's own end."""
    key = pki.generate_private_key("p256")
    short = make_ca_cert("CN=Short CA", key, days=10)
    cert = issue((key, short), validity_days=365)
    assert cert.not_valid_after_utc == short.not_valid_after_utc


def test_issue_certificate_never_starts_before_the_ca():
    """The one-minute backdating stops at the CA's own start."""
    key = pki.generate_private_key("p256")
    start = pki.utcnow().replace(microsecond=0)
    young = make_ca_cert("CN=Young CA", key, not_before=start)
    cert = issue((key, young), now=start + dt.timedelta(seconds=10))
    assert cert.not_valid_before_utc == young.not_valid_before_utc


def test_issue_certificate_refuses_once_the_ca_has_expired():
    """An expired CA cannot issue."""
    key, cert = root()
    with pytest.raises(pki.CAError, match="the CA certificate has expired"):
        issue((key, cert), now=cert.not_valid_after_utc + dt.timedelta(days=1))


def test_issue_certificate_with_an_empty_subject_marks_the_san_critical():
    """RFC 5280: with an empty subject the SAN extension is critical."""
    cert = issue(root(), subject=x509.Name([]))
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    named = issue(root())
    assert not named.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical


def test_issue_certificate_refuses_a_certificate_that_names_nothing():
    """Neither subject nor SAN is refused."""
    with pytest.raises(pki.CSRError, match="neither a subject nor an alternative name"):
        issue(root(), subject=x509.Name([]), sans=[])


def test_issue_certificate_falls_back_to_the_ca_public_key_for_the_aki():
    """A CA certificate without SKI still gets an AKI computed from its key."""
    key = pki.generate_private_key("p256")
    name = pki.parse_dn("CN=No SKI CA")
    no_ski = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(pki.utcnow() - dt.timedelta(minutes=5))
        .not_valid_after(pki.utcnow() + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert = issue((key, no_ski))
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki == x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())


def test_serials_are_random_positive_and_159_bits_at_most():
    """Serial numbers are positive, below 2**159, and differ each time."""
    serials = {issue(root()).serial_number for _ in range(5)}
    assert len(serials) == 5
    assert all(0 < s < 2**159 and s.bit_length() > 64 for s in serials)


# --- encodings ---------------------------------------------------------------------------


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
