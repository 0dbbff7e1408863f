"""The CA engine (requests_app.pki): creating and checking CAs, and issuing certificates."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from requests_app import pki
from tests.helpers.certs import (
    assert_lints_clean,
    issue,
    make_ca_cert,
    openssl_verify,
    root,
    write_pem,
)

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
