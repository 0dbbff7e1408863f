"""Enrollment is rate-limited per client address, on the web form and the Dogtag servlet."""

import pytest
from django.core.cache import cache

from requests_app import throttle
from requests_app.models import CertificateRequest
from tests.helpers.csrs import make_csr


@pytest.fixture(autouse=True)
def _low_limit(settings):
    settings.ENROLL_RATE_LIMIT = "3/3600"
    cache.clear()
    yield
    cache.clear()


def _enroll(client, n, ip="198.51.100.7"):
    return client.post(
        "/enroll/server/",
        {"csr": make_csr(cn=f"flood{n}.example.test"), "requester_email": "f@example.test"},
        REMOTE_ADDR=ip,
    )


def test_a_flood_from_one_address_is_refused_with_429(client, ca):
    """Past the limit, the form answers 429 with a clear page and queues nothing more."""
    assert [_enroll(client, n).status_code for n in range(3)] == [302, 302, 302]
    response = _enroll(client, 4)
    assert response.status_code == 429
    assert "Too many requests from your address" in response.content.decode()
    assert CertificateRequest.objects.count() == 3
    assert _enroll(client, 5, ip="203.0.113.9").status_code == 302  # others are not affected


def test_the_dogtag_servlet_counts_too(client, ca):
    """certmonger clients share the limit and get Dogtag's rejection in XML."""
    for n in range(3):
        _enroll(client, n)
    response = client.post(
        "/ca/ee/ca/profileSubmit",
        {
            "profileId": "caServerCert",
            "cert_request_type": "pkcs10",
            "cert_request": make_csr(cn="dog.example.test"),
            "xml": "true",
        },
        REMOTE_ADDR="198.51.100.7",
    )
    body = response.content.decode()
    assert "<Status>3</Status>" in body or "<Status>1</Status>" in body
    assert "too many requests" in body
    assert CertificateRequest.objects.count() == 3


@pytest.mark.parametrize(
    ("rate", "parsed"), [("60/3600", (60, 3600)), ("0/60", (0, 60)), ("3/1", (3, 1))]
)
def test_rates_are_count_per_seconds(rate, parsed):
    """A rate is written count/seconds."""
    assert throttle.parse_rate(rate) == parsed


@pytest.mark.parametrize("rate", ["60", "60/0", "60/h", "a/b", "/3600", "60/3600/1", "٣/60"])
def test_malformed_rates_are_refused(rate):
    """Anything else is a ValueError naming the expected shape."""
    with pytest.raises(ValueError, match="count/seconds"):
        throttle.parse_rate(rate)


def test_server_key_enrollments_have_their_own_budget(settings, db):
    """SERVER_KEY_ENROLL_RATE_LIMIT counts apart from ENROLL_RATE_LIMIT, per address."""
    settings.SERVER_KEY_ENROLL_RATE_LIMIT = 1
    assert throttle.server_key_enrollment_allowed("192.0.2.1")
    assert not throttle.server_key_enrollment_allowed("192.0.2.1")
    assert throttle.server_key_enrollment_allowed("192.0.2.2")
    assert throttle.enrollment_allowed("192.0.2.1")
