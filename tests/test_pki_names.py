"""The CA engine (requests_app.pki): DNs, host names and subjectAltName text."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from requests_app import pki


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
