"""Property-based: random and mutated CSRs get a clear refusal, never a crash or a row."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from requests_app import pki
from requests_app.models import AuditEvent, CertificateRequest
from tests.helpers.csrs import make_csr

VALID_PEM = make_csr(cn="fuzz.example.test").encode()
VALID_DER = pki.load_csr(VALID_PEM).public_bytes(serialization.Encoding.DER)
LABELS = [
    b"CERTIFICATE REQUEST",
    b"CERTIFICATE",
    b"PRIVATE KEY",
    b"X509 CRL",
    b"",
    b"NEW CERTIFICATE REQUEST",
]


@st.composite
def mutated(draw):
    """A valid CSR with bit flips, a cut, a wrong label, or padding to a huge size."""
    kind = draw(st.sampled_from(["flip", "truncate", "label", "huge", "der_flip", "b64"]))
    if kind == "flip":
        data = bytearray(VALID_PEM)
        for index in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
            data[index] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    if kind == "der_flip":
        data = bytearray(VALID_DER)
        for index in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=4)):
            data[index] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    if kind == "truncate":
        return VALID_PEM[: draw(st.integers(0, len(VALID_PEM) - 1))]
    if kind == "label":
        label = draw(st.sampled_from(LABELS))
        return VALID_PEM.replace(b"CERTIFICATE REQUEST", label)
    if kind == "b64":
        body = base64.b64encode(draw(st.binary(max_size=600)))
        return (
            b"-----BEGIN CERTIFICATE REQUEST-----\n"
            + body
            + b"\n-----END CERTIFICATE REQUEST-----\n"
        )
    return VALID_PEM + b" " * draw(st.integers(64 * 1024, 200 * 1024))


inputs = st.one_of(st.binary(max_size=2048), st.text(max_size=2048).map(str.encode), mutated())


@hypothesis_settings(max_examples=400, deadline=None)
@given(data=inputs)
def test_the_csr_parser_only_ever_refuses_clearly(data):
    """check_csr either accepts a CSR or raises CSRError with a message; nothing else escapes."""
    try:
        info = pki.check_csr(data)
    except pki.CSRError as exc:
        assert str(exc)
    else:
        assert info.csr.is_signature_valid


@pytest.mark.django_db
@hypothesis_settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=inputs)
def test_the_enrollment_form_never_fails_and_writes_nothing(client, ca, data):
    """Pasted or uploaded garbage gets a 4xx page, never a 500, and stores nothing."""
    assume(data != VALID_PEM)
    before = CertificateRequest.objects.count(), AuditEvent.objects.count()
    text = data.decode("utf-8", "replace")
    response = client.post(
        "/enroll/server/",
        {
            "csr": text,
            "requester_email": "fuzz@example.test",
            "extra_hostnames": "fuzz.example.test",
        },
    )
    if response.status_code == 302:  # a mutation that left a valid CSR (e.g. trailing blanks)
        assert pki.check_csr(text.strip())
        return
    assert 400 <= response.status_code < 500
    assert (CertificateRequest.objects.count(), AuditEvent.objects.count()) == before
