"""CRLs: their contents, the distribution point, generate_crl, and openssl's verdicts."""

from __future__ import annotations

import datetime as dt
import io
import subprocess

import pytest
from cryptography import x509
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils.http import http_date

from requests_app import pki, services
from requests_app.models import AuditEvent, Certificate, CertificateRevocationList
from requests_app.services import crls
from tests.helpers.csrs import make_csr


def issue(cn: str) -> Certificate:
    """A server certificate for cn, issued by the default CA."""
    return services.issue_certificate(
        profile="server", csr=make_csr(cn=cn), requester_email="ops@example.test"
    )


def parsed(row: CertificateRevocationList) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(bytes(row.der))


def entry(crl_: x509.CertificateRevocationList, cert: Certificate):
    return crl_.get_revoked_certificate_by_serial_number(int(cert.serial, 16))


def run(*args, **options) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def test_crl_contents(ca, agent, settings):
    """Signed by the CA, with number, AKI, this/next update, reasons and invalidity dates."""
    settings.CRL_NEXT_UPDATE_HOURS = 6
    compromised, plain, held, valid = (issue(f"h{i}.example.test") for i in range(4))
    services.revoke_certificate(
        compromised,
        reason="keyCompromise",
        actor=agent,
        invalidity_date=dt.datetime(2025, 1, 31, 12, tzinfo=dt.UTC),
    )
    services.revoke_certificate(plain, reason="unspecified", actor=agent)
    services.revoke_certificate(held, reason="certificateHold", actor=agent)
    row, made = services.publish_crl(ca)
    signed = parsed(row)
    assert made and row.number == 1
    assert signed.is_signature_valid(ca.certificate.public_key())
    assert signed.issuer == ca.certificate.subject
    assert signed.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    aki = signed.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert signed.next_update_utc - signed.last_update_utc == dt.timedelta(hours=6)
    assert (signed.last_update_utc, signed.next_update_utc) == (row.this_update, row.next_update)
    assert len(signed) == 3

    first = entry(signed, compromised)
    assert first.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.key_compromise
    )
    invalidity = first.extensions.get_extension_for_class(x509.InvalidityDate).value
    assert invalidity.invalidity_date_utc == dt.datetime(2025, 1, 31, 12, tzinfo=dt.UTC)
    compromised.refresh_from_db()
    assert first.revocation_date_utc == compromised.revoked_at.replace(microsecond=0)
    # RFC 5280 5.3.1: "unspecified" is said by leaving the reason code out.
    with pytest.raises(x509.ExtensionNotFound):
        entry(signed, plain).extensions.get_extension_for_class(x509.CRLReason)
    hold = entry(signed, held).extensions.get_extension_for_class(x509.CRLReason).value
    assert hold.reason == x509.ReasonFlags.certificate_hold
    assert entry(signed, valid) is None


def test_numbers_increase_and_released_or_expired_certificates_leave(ca, agent):
    """Each CRL has the next number; a released or expired certificate is not listed."""
    held, expired = issue("held.example.test"), issue("old.example.test")
    services.revoke_certificate(held, reason="certificateHold", actor=agent)
    services.revoke_certificate(expired, reason="superseded", actor=agent)
    first, _ = services.publish_crl(ca)
    assert entry(parsed(first), held) and entry(parsed(first), expired)
    services.release_hold(held, actor=agent)
    Certificate.objects.filter(pk=expired.pk).update(
        not_after=pki.utcnow() - dt.timedelta(minutes=1)
    )
    second, _ = services.publish_crl(ca)
    assert second.number == first.number + 1
    assert len(parsed(second)) == 0
    audited = AuditEvent.objects.filter(action="crl_generated", ca=ca).order_by("id")
    assert [e.details["number"] for e in audited][-2:] == [first.number, second.number]
    assert audited.last().details["entries"] == 0


def test_distribution_point_serves_der_with_caching_headers(client, ca, agent):
    """The CRL DP URL makes the first CRL on request and serves DER until nextUpdate."""
    cert = issue("www.example.test")
    services.revoke_certificate(cert, reason="superseded", actor=agent)
    assert not CertificateRevocationList.objects.exists()
    response = client.get(f"/ca/{ca.pk}/crl.crl")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pkix-crl"
    row = CertificateRevocationList.objects.get()
    assert response.content == bytes(row.der)
    assert entry(x509.load_der_x509_crl(response.content), cert) is not None
    max_age = int(response["Cache-Control"].split("max-age=")[1].split(",")[0])
    assert 86400 - 60 < max_age <= 86400
    assert "public" in response["Cache-Control"]
    assert response["Last-Modified"] == http_date(row.this_update.timestamp())
    assert response["Expires"] == http_date(row.next_update.timestamp())
    again = client.get(f"/ca/{ca.pk}/crl.crl", HTTP_IF_MODIFIED_SINCE=response["Last-Modified"])
    assert again.status_code == 304
    assert CertificateRevocationList.objects.count() == 1


def test_distribution_point_serves_pem(client, ca):
    """crl.pem is the same CRL in PEM."""
    response = client.get(f"/ca/{ca.pk}/crl.pem")
    assert response.status_code == 200
    assert response.content.startswith(b"-----BEGIN X509 CRL-----")
    der = bytes(CertificateRevocationList.objects.get().der)
    assert x509.load_pem_x509_crl(response.content) == x509.load_der_x509_crl(der)


def test_distribution_point_refuses_unknown_ca_and_post(client, ca):
    """An unknown CA is a 404 and a POST a 405."""
    assert client.get(f"/ca/{ca.pk + 1}/crl.crl").status_code == 404
    assert client.post(f"/ca/{ca.pk}/crl.crl").status_code == 405


def test_a_crl_missing_a_revocation_is_remade_when_fetched(client, ca, agent):
    """Should the after-commit task be lost, the next fetch signs a CRL that lists it."""
    services.publish_crl(ca)
    cert = issue("www.example.test")
    services.revoke_certificate(cert, reason="superseded", actor=agent)  # no on_commit here
    response = client.get(f"/ca/{ca.pk}/crl.crl")
    assert entry(x509.load_der_x509_crl(response.content), cert) is not None
    assert CertificateRevocationList.objects.count() == 2


def test_an_expired_crl_is_remade_when_fetched(client, ca):
    """A CRL past its nextUpdate is never served."""
    old, _ = services.publish_crl(ca)
    CertificateRevocationList.objects.filter(pk=old.pk).update(
        next_update=pki.utcnow() - dt.timedelta(seconds=1)
    )
    client.get(f"/ca/{ca.pk}/crl.crl")
    assert crls.newest(ca).number == 2


def test_generate_crl_command_signs_only_when_due(ca):
    """generate_crl signs a first CRL, then only when forced or past half its lifetime."""
    assert "CRL 1 signed" in run("generate_crl")
    assert "CRL 1 is current" in run("generate_crl")
    assert "CRL 2 signed" in run("generate_crl", force=True)
    half = pki.utcnow() - dt.timedelta(hours=12, seconds=1)
    CertificateRevocationList.objects.filter(number=2).update(
        this_update=half, next_update=half + dt.timedelta(hours=24)
    )
    assert "CRL 3 signed" in run("generate_crl")


def test_generate_crl_command_without_a_ca_fails_clearly(db):
    """Without a CA, generate_crl is a one-line CommandError."""
    with pytest.raises(CommandError, match="no CA exists yet"):
        run("generate_crl")


def test_generate_crl_command_reports_an_unreadable_key(ca, settings, tmp_path):
    """A CA key that cannot be opened is a CommandError naming the CA."""
    settings.CA_KEY_DIR = tmp_path / "elsewhere"
    with pytest.raises(CommandError, match="no new CRL for Test Root CA"):
        run("generate_crl")


def _openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)


def test_openssl_verifies_the_crl_and_checks_certificates_against_it(client, ca, agent, tmp_path):
    """openssl crl verifies the CRL; openssl verify -crl_check refuses the revoked certificate
    and accepts the valid one."""
    revoked, valid = issue("revoked.example.test"), issue("valid.example.test")
    services.revoke_certificate(revoked, reason="keyCompromise", actor=agent)
    (tmp_path / "ca.pem").write_text(ca.certificate_pem)
    (tmp_path / "crl.crl").write_bytes(client.get(f"/ca/{ca.pk}/crl.crl").content)
    (tmp_path / "crl.pem").write_bytes(client.get(f"/ca/{ca.pk}/crl.pem").content)
    (tmp_path / "revoked.pem").write_text(revoked.pem)
    (tmp_path / "valid.pem").write_text(valid.pem)
    ca_pem, crl_pem = str(tmp_path / "ca.pem"), str(tmp_path / "crl.pem")

    checked = _openssl(
        "crl", "-inform", "DER", "-in", str(tmp_path / "crl.crl"), "-CAfile", ca_pem, "-noout"
    )
    assert checked.returncode == 0, checked.stderr
    assert "verify OK" in checked.stdout + checked.stderr

    refused = _openssl(
        "verify",
        "-crl_check",
        "-CAfile",
        ca_pem,
        "-CRLfile",
        crl_pem,
        str(tmp_path / "revoked.pem"),
    )
    assert refused.returncode != 0
    assert "certificate revoked" in refused.stdout + refused.stderr

    accepted = _openssl(
        "verify", "-crl_check", "-CAfile", ca_pem, "-CRLfile", crl_pem, str(tmp_path / "valid.pem")
    )
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "OK" in accepted.stdout


def test_distribution_point_without_a_usable_key_is_503(client, ca, settings, tmp_path):
    """With no CRL yet and the CA key unreadable, the CRL DP answers 503, not 500."""
    settings.CA_KEY_DIR = tmp_path / "elsewhere"
    response = client.get(f"/ca/{ca.pk}/crl.crl")
    assert response.status_code == 503
