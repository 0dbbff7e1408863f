"""The OCSP responder: good, revoked and unknown answers, nonces, the delegated responder,
malformed input, and `openssl ocsp` against a live server."""

from __future__ import annotations

import base64
import io
import os
import subprocess
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID
from django.core.management import call_command
from django.core.management.base import CommandError

from requests_app import pki, services
from requests_app.keys import backend_for
from requests_app.models import Certificate
from tests.helpers.csrs import make_csr

OCSP_REQUEST = "application/ocsp-request"


def issue(cn: str = "www.example.test") -> Certificate:
    return services.issue_certificate(
        profile="server", csr=make_csr(cn=cn), requester_email="ops@example.test"
    )


def ocsp_request(cert, issuer, *, algorithm=None, nonce: bytes | None = None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm or hashes.SHA1())  # noqa: S303 - the CertID hash most clients send
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def ask(client, data: bytes) -> ocsp.OCSPResponse:
    response = client.post("/ocsp", data, content_type=OCSP_REQUEST)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/ocsp-response"
    return ocsp.load_der_ocsp_response(response.content)


def verify(answer: ocsp.OCSPResponse, key) -> None:
    """Raise unless the answer's signature verifies with key (EC keys, as our CAs use)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key.verify(
        answer.signature, answer.tbs_response_bytes, ec.ECDSA(answer.signature_hash_algorithm)
    )


def test_good_answer_is_signed_by_the_ca_and_echoes_the_nonce(client, ca):
    """A valid certificate is good; the answer is signed by the CA, names it byName (which
    GnuTLS needs to find the signer among its trust anchors), and echoes the nonce."""
    cert = issue()
    answer = ask(client, ocsp_request(cert.x509, ca.certificate, nonce=b"0123456789abcdef"))
    assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert answer.serial_number == cert.x509.serial_number
    assert answer.responder_name == ca.certificate.subject
    assert answer.responder_key_hash is None
    assert answer.next_update_utc is None
    nonce = answer.extensions.get_extension_for_class(x509.OCSPNonce).value
    assert nonce.nonce == b"0123456789abcdef"
    assert answer.certificates == []
    verify(answer, ca.certificate.public_key())


def test_revoked_answer_has_time_and_reason(client, ca, agent):
    """A revoked certificate is revoked, with its revocation time and reason."""
    cert = issue()
    services.revoke_certificate(cert, reason="keyCompromise", actor=agent)
    cert.refresh_from_db()
    answer = ask(client, ocsp_request(cert.x509, ca.certificate))
    assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason == x509.ReasonFlags.key_compromise
    assert answer.revocation_time_utc == cert.revoked_at.replace(microsecond=0)
    with pytest.raises(x509.ExtensionNotFound):
        answer.extensions.get_extension_for_class(x509.OCSPNonce)


def test_hold_is_revoked_with_certificate_hold_then_good_after_release(client, ca, agent):
    """On hold the answer is revoked (certificateHold); released, it is good again."""
    cert = issue()
    services.revoke_certificate(cert, reason="certificateHold", actor=agent)
    held = ask(client, ocsp_request(cert.x509, ca.certificate))
    assert held.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert held.revocation_reason == x509.ReasonFlags.certificate_hold
    services.release_hold(cert, actor=agent)
    released = ask(client, ocsp_request(cert.x509, ca.certificate))
    assert released.certificate_status == ocsp.OCSPCertStatus.GOOD


def test_sha256_cert_ids_are_answered(client, ca):
    """A CertID hashed with SHA-256 is recognised and echoed."""
    cert = issue()
    answer = ask(client, ocsp_request(cert.x509, ca.certificate, algorithm=hashes.SHA256()))
    assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert isinstance(answer.hash_algorithm, hashes.SHA256)


def test_unknown_serial_and_unknown_issuer_are_unknown(client, ca):
    """A serial we never issued, or an issuer we do not serve, is unknown."""
    cert = issue()
    stranger = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        *_hashes(ca.certificate),
        12345,
        hashes.SHA1(),  # noqa: S303
    )
    der = stranger.build().public_bytes(serialization.Encoding.DER)
    assert ask(client, der).certificate_status == ocsp.OCSPCertStatus.UNKNOWN
    _, other_ca = pki.create_ca("CN=Someone Else's CA")
    foreign = ask(client, ocsp_request(cert.x509, other_ca))
    assert foreign.certificate_status == ocsp.OCSPCertStatus.UNKNOWN
    verify(foreign, ca.certificate.public_key())


def _hashes(ca_cert):
    from requests_app.pki import issuer_hashes

    return issuer_hashes(ca_cert, hashes.SHA1())  # noqa: S303


def test_issuer_hashes_match_cryptography(ca):
    """Our issuerKeyHash equals the one cryptography computes for a request."""
    cert = issue()
    request = ocsp.load_der_ocsp_request(ocsp_request(cert.x509, ca.certificate))
    assert _hashes(ca.certificate) == (request.issuer_name_hash, request.issuer_key_hash)


def test_get_requests_are_answered(client, ca):
    """GET /ocsp/<base64, URL-encoded> answers like a POST."""
    cert = issue()
    encoded = quote(base64.b64encode(ocsp_request(cert.x509, ca.certificate)).decode(), safe="")
    response = client.get(f"/ocsp/{encoded}")
    assert response.status_code == 200
    answer = ocsp.load_der_ocsp_response(response.content)
    assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/ocsp", b"this is not DER"),
        ("post", "/ocsp", b""),
        ("post", "/ocsp", b"\x30\x03\x02\x01\x01"),
        ("post", "/ocsp", b"\x30" + b"\x00" * 20000),
        ("get", "/ocsp/not*base64!", None),
        ("get", "/ocsp/" + quote(base64.b64encode(b"garbage").decode(), safe=""), None),
        ("get", "/ocsp/", None),
        ("get", "/ocsp", None),
    ],
)
def test_malformed_requests_get_malformed_request(client, ca, method, path, body):
    """Garbage, an empty body, bad base64 or no request at all: malformedRequest, never 500."""
    if method == "post":
        response = client.post(path, body, content_type=OCSP_REQUEST)
    else:
        response = client.get(path)
    assert response.status_code == 200
    answer = ocsp.load_der_ocsp_response(response.content)
    assert answer.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_unreadable_ca_key_is_internal_error_not_500(client, ca, settings, tmp_path):
    """When the CA key cannot be opened the answer is internalError."""
    cert = issue()
    settings.CA_KEY_DIR = tmp_path / "elsewhere"
    answer = ask(client, ocsp_request(cert.x509, ca.certificate))
    assert answer.response_status == ocsp.OCSPResponseStatus.INTERNAL_ERROR


def test_no_ca_at_all_is_unauthorized(client, db):
    """Before any CA exists, the responder is not authoritative for anything."""
    key, other_ca = pki.create_ca("CN=Someone Else's CA")
    leaf = pki.issue_certificate(
        ca_cert=other_ca,
        ca_key=key,
        public_key=pki.generate_private_key("p256").public_key(),
        subject=x509.Name.from_rfc4514_string("CN=x.example.test"),
        sans=[],
        extended_key_usages=[],
        validity_days=1,
    )
    answer = ask(client, ocsp_request(leaf, other_ca))
    assert answer.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED


# --- the delegated responder ------------------------------------------------------------


def run(*args, **options) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def test_create_ocsp_responder_issues_a_delegated_certificate(ca, settings):
    """The responder certificate has OCSPSigning and nocheck; its key is encrypted, 0600."""
    output = run("create_ocsp_responder", validity_days=7)
    assert "OCSP responder CN=Test Root CA OCSP Responder" in output
    cert_path = settings.CA_KEY_DIR / f"ocsp-{ca.pk}.cert.pem"
    cert = pki.load_pem(cert_path.read_bytes())
    assert pki.verify_signed_by(cert, ca.certificate)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    assert cert.extensions.get_extension_for_class(x509.OCSPNoCheck)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 7
    key_path = settings.CA_KEY_DIR / backend_for(ca).responder_key_filename(ca, cert)
    assert key_path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert oct(os.stat(key_path).st_mode & 0o777) == "0o600"
    assert ca.crls.count() == 0  # nothing else changed


def test_answers_are_signed_by_the_delegated_responder(client, ca, agent, settings):
    """With a responder, answers carry its certificate and verify with its key."""
    services.create_ocsp_responder(validity_days=7, actor=agent)
    delegate = pki.load_pem((settings.CA_KEY_DIR / f"ocsp-{ca.pk}.cert.pem").read_bytes())
    cert = issue()
    answer = ask(client, ocsp_request(cert.x509, ca.certificate))
    assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert answer.certificates == [delegate]
    assert (
        answer.responder_key_hash
        == x509.SubjectKeyIdentifier.from_public_key(delegate.public_key()).digest
    )
    verify(answer, delegate.public_key())


def test_a_new_responder_replaces_the_old_one(client, ca, settings):
    """Running the command again swaps in the new responder and removes the old key."""
    first = services.create_ocsp_responder(validity_days=7)
    second = services.create_ocsp_responder(validity_days=7)
    keys = sorted(p.name for p in settings.CA_KEY_DIR.glob(f"ocsp-{ca.pk}-*.key.pem"))
    assert keys == [backend_for(ca).responder_key_filename(ca, second)]
    answer = ask(client, ocsp_request(issue().x509, ca.certificate))
    assert answer.certificates == [second]
    assert first != second


def test_create_ocsp_responder_without_a_ca_fails_clearly(db):
    """Without a CA the command is a one-line CommandError."""
    with pytest.raises(CommandError, match="no CA exists yet"):
        run("create_ocsp_responder")


# --- openssl ocsp against a live server -------------------------------------------------


def _openssl_ocsp(tmp_path, leaf: Certificate, url: str) -> str:
    (tmp_path / "leaf.pem").write_text(leaf.pem)
    ca_pem, leaf_pem = tmp_path / "ca.pem", tmp_path / "leaf.pem"
    result = subprocess.run(
        f"openssl ocsp -issuer {ca_pem} -cert {leaf_pem} -url {url} -CAfile {ca_pem}".split(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Response verify OK" in result.stdout + result.stderr
    return result.stdout


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("delegated", [False, True], ids=["ca-signed", "delegated"])
def test_openssl_ocsp_reports_good_then_revoked(live_server, ca, tmp_path, delegated):
    """`openssl ocsp` says good before and revoked (with its reason) after revocation."""
    if delegated:
        services.create_ocsp_responder(validity_days=7)
    (tmp_path / "ca.pem").write_text(ca.certificate_pem)
    leaf = issue()
    url = f"{live_server.url}/ocsp"
    assert "leaf.pem: good" in _openssl_ocsp(tmp_path, leaf, url)
    services.revoke_certificate(leaf, reason="keyCompromise", actor=None)
    revoked = _openssl_ocsp(tmp_path, leaf, url)
    assert "leaf.pem: revoked" in revoked
    assert "Reason: keyCompromise" in revoked
