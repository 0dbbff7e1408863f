"""Enrollment profiles: their rules, and what each issues end to end from an openssl CSR."""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from requests_app import dogtag, pki, profiles, services
from tests.helpers.certs import assert_lints_clean, openssl_verify, write_pem
from tests.helpers.csrs import openssl_csr
from tests.helpers.mailbox import submit_confirmed

# pkilint (like browsers) wants URLs with a dotted host name; "testserver" is not one.
SITE_URL = "http://ca.example.test"


# --- the profile table -------------------------------------------------------------------


def test_the_three_default_profiles():
    """server, user and agent exist, enabled, with their EKUs and validity."""
    assert profiles.profile_names() == ["server", "user", "agent"]
    server, user, agent = profiles.all_profiles()
    assert (server.extended_key_usages, server.validity_days, server.max_validity_days) == (
        ("serverAuth",),
        198,
        200,
    )
    assert server.takes_hostnames and not user.takes_hostnames
    assert user.extended_key_usages == ("clientAuth", "emailProtection")
    assert agent.extended_key_usages == ("clientAuth",)
    assert not agent.key_encipherment


def test_get_profile_refuses_an_unknown_name():
    """An unknown profile names the ones that exist."""
    with pytest.raises(profiles.ProfileError, match="unknown profile 'codesign'; choose one of"):
        profiles.get_profile("codesign")


@pytest.mark.parametrize(
    ("dogtag_id", "name"),
    [
        ("caServerCert", "server"),
        ("caECServerCert", "server"),
        ("caUserCert", "user"),
        ("caECUserCert", "user"),
    ],
)
def test_profile_for_dogtag_id(dogtag_id, name):
    """Dogtag profile IDs map to our profiles."""
    assert dogtag.profile_for_id(dogtag_id).name == name


def test_profile_for_an_unknown_dogtag_id():
    """An unknown Dogtag ID gets Dogtag's own message."""
    with pytest.raises(dogtag.ProtocolError, match="Profile caFooCert is not found"):
        dogtag.profile_for_id("caFooCert")


def test_ca_profiles_overrides_a_field(settings):
    """CA_PROFILES changes one field of a default profile and leaves the rest."""
    settings.CA_PROFILES = {"server": {"validity_days": 90, "max_validity_days": 90}}
    server = profiles.get_profile("server")
    assert (server.validity_days, server.max_validity_days) == (90, 90)
    assert server.extended_key_usages == ("serverAuth",)


def test_ca_profiles_adds_and_disables_profiles(settings):
    """A new profile can be added (lists become tuples) and a default one disabled."""
    settings.CA_PROFILES = {
        "vpn": {
            "label": "VPN client",
            "description": "For the VPN.",
            "extended_key_usages": ["clientAuth"],
            "validity_days": 30,
            "max_validity_days": 60,
            "san_policy": "optional_email",
            "dogtag_ids": ["caVPNCert"],
        },
        "agent": {"enabled": False},
    }
    assert profiles.profile_names() == ["server", "user", "vpn"]
    assert profiles.get_profile("vpn").extended_key_usages == ("clientAuth",)
    assert dogtag.profile_for_id("caVPNCert").name == "vpn"
    assert [p.name for p in profiles.all_profiles(enabled_only=False)][-2:] == ["agent", "vpn"]
    with pytest.raises(profiles.ProfileError, match="unknown profile 'agent'"):
        profiles.get_profile("agent")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"server": {"validty_days": 5}}, r"CA_PROFILES\['server'\] has unknown fields"),
        ({"vpn": {"label": "VPN"}}, r"CA_PROFILES\['vpn'\]: .*missing"),
        ({"server": {"max_validity_days": 90}}, r"validity_days \(198\) must be between 1"),
        ({"server": {"validity_days": 0}}, r"validity_days \(0\) must be between 1"),
        ({"user": {"extended_key_usages": ["timeStamping"]}}, "unknown extended key usages"),
        ({"user": {"san_policy": "anything"}}, "san_policy 'anything' is not one of"),
    ],
)
def test_ca_profiles_refuses_bad_settings(settings, overrides, message):
    """A profile that could not issue what it promises is refused with its name."""
    settings.CA_PROFILES = overrides
    with pytest.raises(profiles.ProfileError, match=message):
        profiles.all_profiles()


def test_check_validity():
    """No choice gives the default; a choice must be within 1 and the maximum."""
    server = profiles.get_profile("server")
    assert profiles.check_validity(server, None) == 198
    assert profiles.check_validity(server, 200) == 200
    assert profiles.check_validity(server, 1) == 1
    for bad in (0, 201, -5):
        with pytest.raises(profiles.ProfileError, match="between 1 and 200 days for the server"):
            profiles.check_validity(server, bad)


# --- SANs --------------------------------------------------------------------------------


def _requested(profile: str, **kwargs) -> list[str]:
    options = {
        "csr_sans": [],
        "subject_cn": None,
        "extra_hostnames": [],
        "requester_email": "ada@example.com",
        **kwargs,
    }
    return profiles.requested_sans(profiles.get_profile(profile), **options)


def test_server_sans_come_from_csr_extras_and_cn_normalized_once():
    """CSR SANs, extra hostnames and a hostname CN are merged, normalized and deduplicated."""
    sans = _requested(
        "server",
        csr_sans=["DNS:WWW.example.com", "IP:192.0.2.1", "email:x@example.com"],
        subject_cn="www.example.com",
        extra_hostnames=["bücher.example", " ", "192.0.2.1", "api.example.com."],
    )
    assert sans == [
        "DNS:www.example.com",
        "IP:192.0.2.1",
        "DNS:xn--bcher-kva.example",
        "DNS:api.example.com",
    ]


def test_server_cn_that_is_not_a_hostname_is_a_label():
    """A CN like "My Web Server" is ignored when another name is given."""
    assert _requested("server", subject_cn="My Web Server", extra_hostnames=["a.example.com"]) == [
        "DNS:a.example.com"
    ]


def test_server_needs_at_least_one_hostname():
    """A server request with no usable name is refused."""
    with pytest.raises(profiles.ProfileError, match="needs at least one hostname"):
        _requested("server", subject_cn="My Web Server")


def test_server_refuses_a_bad_extra_hostname():
    """A malformed extra hostname is refused by the name checks."""
    with pytest.raises(profiles.ProfileError, match="wildcard") as refused:
        _requested("server", extra_hostnames=["*.com"])
    assert refused.value.field == "extra_hostnames"


def test_user_and_agent_sans_are_the_requester_email():
    """User and agent certificates name the requester's email, whatever the CSR says."""
    assert _requested("user", csr_sans=["DNS:evil.example.com"]) == ["email:ada@example.com"]
    assert _requested("agent") == ["email:ada@example.com"]
    assert _requested("agent", requester_email="") == []


def test_check_sans_for_a_server():
    """Hostnames and IPs are checked and deduplicated; other kinds are refused."""
    server = profiles.get_profile("server")
    names = profiles.check_sans(
        server, ["DNS:A.example.com", " ", "DNS:a.example.com", "IP:10.0.0.1"], requester_email=""
    )
    assert names == [
        x509.DNSName("a.example.com"),
        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
    ]


@pytest.mark.parametrize(
    ("profile", "sans", "message"),
    [
        ("server", [], "needs at least one DNS name or IP address"),
        ("server", ["email:ada@example.com"], "names only hostnames and IPs, not email:"),
        ("server", ["DNS:a..example.com"], "has an empty label"),
        ("server", ["nonsense"], "cannot read the subject alternative name"),
        ("user", [], "must name the requester's email address"),
        ("user", ["email:eve@example.com"], "names only the requester's email address"),
        ("user", ["DNS:a.example.com"], "names only the requester's email address"),
        ("agent", ["email:eve@example.com"], "names only the requester's email address"),
    ],
)
def test_check_sans_refusals(profile, sans, message):
    """Names outside the profile's rules are refused."""
    with pytest.raises(profiles.ProfileError, match=message):
        profiles.check_sans(profiles.get_profile(profile), sans, requester_email="ada@example.com")


def test_check_sans_for_user_and_agent():
    """The requester's email is accepted in any case; an agent may have no SAN."""
    user = profiles.get_profile("user")
    names = profiles.check_sans(user, ["email:Ada@Example.com"], requester_email="ada@example.com")
    assert names == [x509.RFC822Name("Ada@Example.com")]
    assert profiles.check_sans(profiles.get_profile("agent"), [], requester_email="a@b.c") == []


# --- end to end: openssl CSR -> submit -> approve -> openssl verify + pkilint -----------------


@pytest.fixture
def site(settings):
    settings.SITE_URL = SITE_URL
    settings.REVOCATION_BASE_URL = SITE_URL
    return settings


def _ec_params(directory: Path) -> str:
    params = directory / "p256.pem"
    subprocess.run(
        ["openssl", "ecparam", "-name", "prime256v1", "-out", str(params)],
        check=True,
        capture_output=True,
    )
    return f"ec:{params}"


REQUESTS = {
    "server": {
        "subject": "/CN=www.example.test/O=Example",
        "sans": "DNS:alt.example.test,IP:192.0.2.10",
        "extra_hostnames": ["extra.example.test"],
        "email": "webmaster@example.test",
    },
    "user": {
        "subject": "/CN=Ada Lovelace/O=Example",
        "sans": "",
        "extra_hostnames": [],
        "email": "ada@example.test",
    },
    "agent": {
        "subject": "/CN=agent1",
        "sans": "",
        "extra_hostnames": [],
        "email": "agent1@example.test",
    },
}
EXPECTED_SANS = {
    "server": [
        x509.DNSName("alt.example.test"),
        x509.IPAddress(ipaddress.ip_address("192.0.2.10")),
        x509.DNSName("extra.example.test"),
        x509.DNSName("www.example.test"),
    ],
    "user": [x509.RFC822Name("ada@example.test")],
    "agent": [x509.RFC822Name("agent1@example.test")],
}
EXPECTED_EKUS = {
    "server": [ExtendedKeyUsageOID.SERVER_AUTH],
    "user": [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION],
    "agent": [ExtendedKeyUsageOID.CLIENT_AUTH],
}
USAGE_BITS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


def _enroll(profile: str, directory: Path, *, key_spec: str, agent) -> tuple:
    """Submit an openssl-made CSR for profile and approve it; return (cert row, x509)."""
    spec = REQUESTS[profile]
    csr = openssl_csr(directory, subject=spec["subject"], key_spec=key_spec, sans=spec["sans"])
    req = submit_confirmed(
        profile=profile,
        csr=csr.read_bytes(),
        requester_email=spec["email"],
        extra_hostnames=spec["extra_hostnames"],
    )
    cert = services.approve_request(req.public_id, agent=agent)
    return cert, cert.x509


def _check_with_openssl_and_pkilint(cert_row, leaf: x509.Certificate, directory: Path) -> None:
    leaf_path = write_pem(directory / "leaf.pem", leaf)
    ca_path = write_pem(directory / "ca.pem", cert_row.ca.certificate, *cert_row.ca.chain)
    result = openssl_verify(leaf_path, ca_file=ca_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{leaf_path}: OK"
    assert_lints_clean(leaf_path)


@pytest.mark.parametrize("key", ["rsa", "ec"])
@pytest.mark.parametrize("profile", ["server", "user", "agent"])
def test_each_profile_issues_a_verifiable_lint_clean_certificate(
    profile, key, ca, agent, site, tmp_path
):
    """An openssl CSR approved under each profile gives a certificate openssl and pkilint accept,
    with every extension the profile promises."""
    key_spec = "rsa:2048" if key == "rsa" else _ec_params(tmp_path)
    before = pki.utcnow().replace(microsecond=0)
    row, leaf = _enroll(profile, tmp_path, key_spec=key_spec, agent=agent)
    after = pki.utcnow()
    _check_with_openssl_and_pkilint(row, leaf, tmp_path)
    ext = leaf.extensions

    constraints = ext.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is False
    assert constraints.value.path_length is None

    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    bits = {name for name in USAGE_BITS if getattr(usage.value, name)}
    if profile == "agent":
        assert bits == {"digital_signature"}
    elif key == "rsa":
        assert bits == {"digital_signature", "key_encipherment"}
    else:
        assert bits == {"digital_signature", "key_agreement"}

    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage)
    assert not eku.critical
    assert list(eku.value) == EXPECTED_EKUS[profile]

    san = ext.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical
    assert list(san.value) == EXPECTED_SANS[profile]
    assert row.sans == [pki.san_to_text(n) for n in EXPECTED_SANS[profile]]

    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert not ski.critical
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(leaf.public_key())

    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert not aki.critical
    assert aki.value.key_identifier == ca_ski.digest

    access = ext.get_extension_for_class(x509.AuthorityInformationAccess)
    assert not access.critical
    assert [(a.access_method, a.access_location) for a in access.value] == [
        (
            x509.AuthorityInformationAccessOID.OCSP,
            x509.UniformResourceIdentifier(f"{SITE_URL}/ocsp"),
        ),
        (
            x509.AuthorityInformationAccessOID.CA_ISSUERS,
            x509.UniformResourceIdentifier(ca.ca_issuers_url()),
        ),
    ]
    assert ca.ca_issuers_url() == f"{SITE_URL}/ca/{ca.pk}/ca.cer"

    points = ext.get_extension_for_class(x509.CRLDistributionPoints)
    assert not points.critical
    assert [p.full_name for p in points.value] == [[x509.UniformResourceIdentifier(ca.crl_url())]]

    assert leaf.issuer == ca.certificate.subject
    assert leaf.subject.rfc4514_string() == row.subject
    assert before - dt.timedelta(minutes=1) <= leaf.not_valid_before_utc
    assert leaf.not_valid_before_utc <= after - dt.timedelta(seconds=59)
    validity = profiles.get_profile(profile).validity_days
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(
        days=validity, minutes=1
    )
    assert 0 < leaf.serial_number < 2**159
    assert leaf.serial_number.bit_length() > 64
    assert row.serial == pki.serial_hex(leaf.serial_number)
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)
    assert leaf.version == x509.Version.v3


def test_a_p384_ca_signs_with_sha384(db, agent, site, tmp_path):
    """A P-384 CA signs with ECDSA-SHA384, and the result still verifies and lints clean."""
    services.create_ca("CN=P-384 Root,O=ca-portal tests,C=US", key_type="p384")
    row, leaf = _enroll("server", tmp_path, key_spec="rsa:2048", agent=agent)
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA384)
    _check_with_openssl_and_pkilint(row, leaf, tmp_path)


def test_a_certificate_never_outlives_a_short_lived_ca(db, agent, site, tmp_path):
    """With a CA that ends in 30 days, a 198-day server certificate ends with the CA."""
    ca = services.create_ca("CN=Short Root,O=ca-portal tests,C=US", validity_days=30)
    row, leaf = _enroll("server", tmp_path, key_spec="rsa:2048", agent=agent)
    assert leaf.not_valid_after_utc == ca.certificate.not_valid_after_utc
    assert row.not_after == ca.not_after
    _check_with_openssl_and_pkilint(row, leaf, tmp_path)


def test_serials_differ_across_certificates(ca, agent, site, tmp_path):
    """Two certificates for the same request data get different random serials."""
    first, _ = _enroll("agent", tmp_path, key_spec="rsa:2048", agent=agent)
    second, _ = _enroll("agent", tmp_path, key_spec="rsa:2048", agent=agent)
    assert first.serial != second.serial
