"""The engine's hierarchy helpers alone: DNS name constraint matching (as OpenSSL reads
it), path length arithmetic, and the check that a chain reaches a self-signed root."""

from __future__ import annotations

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from requests_app import pki
from tests.helpers.certs import root

LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
DOMAIN = st.lists(LABEL, min_size=1, max_size=4).map(".".join)


@pytest.mark.parametrize(
    ("name", "base", "within"),
    [
        ("example.com", "example.com", True),
        ("www.example.com", "example.com", True),
        ("WWW.Example.COM", "example.com", True),
        ("www.example.com", ".example.com", True),
        ("example.com", ".example.com", False),
        ("badexample.com", "example.com", False),
        ("example.com.evil.test", "example.com", False),
        ("*.example.com", "example.com", True),
        ("anything.test", "", True),
    ],
)
def test_dns_name_within(name, base, within):
    """A base holds itself and names with labels added on its left; a leading dot only
    the names under it."""
    assert pki.dns_name_within(name, base) is within


@given(prefix=DOMAIN, base=DOMAIN)
def test_adding_labels_on_the_left_stays_within(prefix, base):
    """Any name made by adding labels to a base is within it and within ".base"."""
    name = f"{prefix}.{base}"
    assert pki.dns_name_within(name, base)
    assert pki.dns_name_within(name, "." + base)


@given(name=DOMAIN, base=DOMAIN)
def test_a_name_within_a_base_ends_with_it_on_a_label_boundary(name, base):
    """Never a match in the middle of a label (badexample.com is not in example.com)."""
    if pki.dns_name_within(name, base):
        assert name == base or name.endswith("." + base)


def _sub(parent, path_length, *, key=None):
    key = key or pki.generate_private_key("p256")
    builder = pki.subordinate_certificate_builder(
        parent=parent[1],
        subject=f"CN=Sub {path_length}",
        public_key=key.public_key(),
        validity_days=30,
        path_length=path_length,
    )
    return key, pki.sign(builder, parent[0])


def test_path_length_arithmetic():
    """Unlimited under a root without pathlen; pathlen N allows N-1 below; 0 allows none;
    the tightest CA above wins."""
    top = root("p256")
    assert pki.allowed_path_length(top[1], []) is None
    two = _sub(top, 2)
    assert pki.allowed_path_length(two[1], [top[1]]) == 1
    one = _sub(two, 1)
    assert pki.allowed_path_length(one[1], [two[1], top[1]]) == 0
    zero = _sub(one, 0)
    with pytest.raises(pki.CAError, match="pathLenConstraint 0"):
        pki.allowed_path_length(zero[1], [one[1], two[1], top[1]])
    assert pki.check_path_length(None, two[1], [top[1]]) == 1
    with pytest.raises(pki.CAError, match="at most 1"):
        pki.check_path_length(3, two[1], [top[1]])


def test_chain_must_end_in_a_self_signed_root():
    """Nothing given, a gap, or a last certificate that is not self-signed: refused."""
    top = root("p256")
    middle = _sub(top, 1)
    leaf_ca = _sub(middle, 0)
    pki.check_chain_to_root(leaf_ca[1], [middle[1], top[1]])
    with pytest.raises(pki.CAError, match="does not reach a root"):
        pki.check_chain_to_root(leaf_ca[1], [])
    with pytest.raises(pki.CAError, match="does not reach a root"):
        pki.check_chain_to_root(leaf_ca[1], [middle[1]])
    with pytest.raises(pki.CAError, match="does not reach a root"):
        pki.check_chain_to_root(leaf_ca[1], [top[1]])


def test_names_checked_against_every_ca_above():
    """A constraint of the root binds a subordinate without constraints of its own."""
    key = pki.generate_private_key("p256")
    top_key, top_cert = root("p256")
    builder = pki.subordinate_certificate_builder(
        parent=top_cert,
        subject="CN=Constrained",
        public_key=key.public_key(),
        validity_days=30,
        permitted_dns=["example.test"],
    )
    constrained = pki.sign(builder, top_key)
    _, below = _sub((key, constrained), None)
    pki.check_names_permitted([below, constrained, top_cert], ["a.example.test"])
    with pytest.raises(pki.NameNotPermitted, match="outside"):
        pki.check_names_permitted([below, constrained, top_cert], ["a.other.test"])
    with pytest.raises(pki.NameNotPermitted):
        pki.check_names_permitted([below, constrained], [], common_name="www.other.test")
    # A commonName that is no hostname (a person's name) is not a DNS name.
    pki.check_names_permitted([below, constrained], [], common_name="Ada Lovelace")


def test_bad_constraints_are_refused():
    """Wildcards and non-names are no DNS constraints."""
    for bad in ("*.example.test", "not a name", "exa mple.test"):
        with pytest.raises(pki.CAError):
            pki.name_constraints([bad])
    assert pki.name_constraints() is None
    nc = pki.name_constraints(["Example.TEST"], [".bad.example.test"])
    assert nc.permitted_subtrees == [x509.DNSName("example.test")]
    assert nc.excluded_subtrees == [x509.DNSName(".bad.example.test")]
