"""Subordinates signed by a root held here (init_ca --parent): path length and DNS name
constraints, refused at approval and flagged by `openssl verify`; and the rollover to a new
default CA while the old one keeps its CRL and OCSP answers."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from requests_app import keys, pki, services
from requests_app.models import AuditEvent, Certificate, CertificateAuthority, CertificateRequest
from tests.helpers.certs import openssl_verify, write_pem
from tests.helpers.csrs import make_csr

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is missing")


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def refused(*args: str) -> str:
    with pytest.raises(CommandError) as caught:
        run(*args)
    return str(caught.value)


def subordinate(parent: CertificateAuthority, *extra: str, subject="CN=Issuing CA,O=Example"):
    run("init_ca", "--parent", str(parent.pk), "--subject", subject, *extra)
    return CertificateAuthority.objects.get(subject=pki.parse_dn(subject).rfc4514_string())


def submit(cn: str, *sans: str) -> CertificateRequest:
    names = [x509.DNSName(n) for n in sans] or None
    return services.submit_request(
        profile="server", csr=make_csr(cn=cn, sans=names), requester_email="ops@example.test"
    )


def test_parent_signs_a_subordinate_that_takes_over_issuing(ca, agent, tmp_path):
    """The root held here signs the subordinate (pathlen 0 by default, name constraints as
    asked, critical), which becomes the default; the root stays active, not retired; an
    audit row names parent and constraints; show_ca shows roles and parent."""
    sub = subordinate(ca, "--permitted-dns", "example.test", "--excluded-dns", "bad.example.test")
    ca.refresh_from_db()
    assert (sub.is_default, sub.status, sub.parent_id, sub.role) == (
        True,
        "active",
        ca.pk,
        "subordinate, default",
    )
    assert (ca.is_default, ca.status, ca.role) == (False, "active", "root")
    assert pki.verify_signed_by(sub.certificate, ca.certificate)
    assert sub.chain == [ca.certificate]
    constraints = sub.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert (constraints.critical, constraints.value.ca, constraints.value.path_length) == (
        True,
        True,
        0,
    )
    nc = sub.certificate.extensions.get_extension_for_class(x509.NameConstraints)
    assert nc.critical
    assert nc.value.permitted_subtrees == [x509.DNSName("example.test")]
    assert nc.value.excluded_subtrees == [x509.DNSName("bad.example.test")]
    event = AuditEvent.objects.get(action="ca_subordinate_created")
    assert event.ca_id == sub.pk
    assert event.details["parent_id"] == ca.pk
    assert event.details["path_length"] == 0
    assert event.details["permitted_dns"] == ["example.test"]
    shown = run("show_ca")
    assert f"parent               {ca.pk} (Test Root CA)" in shown
    assert "subordinate, default" in shown and "role                 root" in shown
    cert = services.approve_request(submit("www.example.test", "www.example.test"), agent=agent)
    assert cert.ca == sub
    assert [c.subject for c in cert.chain] == [
        cert.x509.subject,
        sub.certificate.subject,
        ca.certificate.subject,
    ]


@needs_openssl
def test_name_constraints_refuse_at_approval_and_openssl_agrees(ca, agent, tmp_path):
    """A leaf outside the permitted names, or inside an excluded one, is refused at
    approval (nothing signed, the request still pending); one inside is issued and openssl
    verify accepts it; a leaf outside, signed behind the portal's back with the same key,
    is flagged by openssl verify as a name constraint violation."""
    sub = subordinate(ca, "--permitted-dns", "example.test", "--excluded-dns", "bad.example.test")
    for name in ("www.other.test", "x.bad.example.test", "example.test.evil.test"):
        req = submit(name, name)
        with pytest.raises(services.InvalidRequest) as caught:
            services.approve_request(req, agent=agent)
        assert name in caught.value.message
        req.refresh_from_db()
        assert (req.status, req.certificate_id) == ("pending", None)
    # The commonName counts when it looks like a hostname.
    with pytest.raises(services.InvalidRequest):
        services.approve_request(submit("www.other.test", "www.example.test"), agent=agent)
    assert Certificate.objects.count() == 0

    good = services.approve_request(submit("a.example.test", "a.example.test"), agent=agent)
    root_file = write_pem(tmp_path / "root.pem", ca.certificate)
    sub_file = write_pem(tmp_path / "sub.pem", sub.certificate)
    ok = openssl_verify(
        write_pem(tmp_path / "good.pem", good.x509), ca_file=root_file, untrusted=sub_file
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr

    # What openssl says of a certificate the portal would have refused.
    builder = pki.certificate_builder(
        ca_cert=sub.certificate,
        public_key=pki.generate_private_key("p256").public_key(),
        subject=x509.Name([]),
        sans=[x509.DNSName("www.other.test")],
        extended_key_usages=["serverAuth"],
        validity_days=30,
    )
    outside = keys.backend_for(sub).sign_certificate(sub, builder)
    flagged = openssl_verify(
        write_pem(tmp_path / "out.pem", outside), ca_file=root_file, untrusted=sub_file
    )
    assert flagged.returncode != 0
    assert "permitted subtree violation" in flagged.stdout + flagged.stderr


def test_path_length_limits_the_depth(ca):
    """A subordinate with pathlen 0 signs no CA; one with pathlen 1 signs a subordinate
    whose path length may be 0 only; the refusals change nothing."""
    leaf_ca = subordinate(ca, subject="CN=Leaf-only CA")
    before = CertificateAuthority.with_pending.count(), AuditEvent.objects.count()
    message = refused("init_ca", "--parent", str(leaf_ca.pk), "--subject", "CN=Too deep", "--force")
    assert "pathLenConstraint 0" in message
    assert (CertificateAuthority.with_pending.count(), AuditEvent.objects.count()) == before

    middle = subordinate(ca, "--path-length", "1", "--force", subject="CN=Middle CA")
    assert pki.path_length_of(middle.certificate) == 1
    message = refused(
        "init_ca", "--parent", str(middle.pk), "--subject", "CN=Deep", "--path-length", "1"
    )
    assert "at most 0" in message
    deep = subordinate(middle, subject="CN=Deep CA")
    assert pki.path_length_of(deep.certificate) == 0
    assert deep.chain == [middle.certificate, ca.certificate]
    assert deep.not_after <= middle.not_after  # never outlives its parent


def test_parent_refusals(ca):
    """An unknown parent, a retired one, a bad DNS constraint and a non-default parent
    without --force are refused, changing nothing."""
    assert "no CA has the id 999" in refused("init_ca", "--parent", "999", "--subject", "CN=X")
    assert "not a domain name" in refused(
        "init_ca", "--parent", str(ca.pk), "--subject", "CN=X", "--permitted-dns", "not a name"
    )
    other = subordinate(ca, subject="CN=First sub")
    # The default is now `other`; a second subordinate of the root needs --force.
    assert "--force" in refused("init_ca", "--parent", str(ca.pk), "--subject", "CN=Second")
    replacement = subordinate(ca, "--make-default", subject="CN=Second sub")
    other.refresh_from_db()
    assert (other.status, replacement.is_default) == ("retired", True)
    assert "retired" in refused(
        "init_ca", "--parent", str(other.pk), "--subject", "CN=Y", "--force"
    )
    assert "subordinates" in refused(
        "init_ca", "--subject", "CN=Z", "--force", "--permitted-dns", "example.test"
    )


# --- rollover -----------------------------------------------------------------------------


def _ocsp_request(cert: x509.Certificate, issuer: x509.Certificate) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())  # noqa: S303 - what clients send
    return builder.build().public_bytes(serialization.Encoding.DER)


@needs_openssl
def test_rollover_old_ca_keeps_crl_and_ocsp(client, ca, agent, tmp_path):
    """After init_ca --make-default, new requests get the new CA while the old, retired CA
    still publishes a CRL listing its revoked certificate (openssl crl -verify accepts it)
    and answers OCSP for its certificates, signed by itself (openssl ocsp accepts it)."""
    old_cert = services.approve_request(submit("old.example.test", "old.example.test"), agent=agent)
    kept = services.approve_request(submit("kept.example.test", "kept.example.test"), agent=agent)
    run("init_ca", "--subject", "CN=Next Root CA,O=Example", "--make-default")
    ca.refresh_from_db()
    new = CertificateAuthority.objects.default()
    assert (ca.is_default, ca.status, ca.role) == (False, "retired", "root, retired")
    assert "role                 root, retired" in run("show_ca")

    fresh = services.approve_request(submit("new.example.test", "new.example.test"), agent=agent)
    assert fresh.ca == new
    services.revoke_certificate(old_cert, reason="keyCompromise", actor=agent)

    old_pem = write_pem(tmp_path / "old-ca.pem", ca.certificate)
    response = client.get(reverse("crl", args=[ca.pk]))
    assert response.status_code == 200
    crl_der = response.content
    crl = x509.load_der_x509_crl(crl_der)
    assert crl.issuer == ca.certificate.subject
    assert crl.get_revoked_certificate_by_serial_number(old_cert.x509.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(kept.x509.serial_number) is None
    (tmp_path / "old.crl").write_bytes(crl_der)
    crl_file = tmp_path / "old.crl"
    checked = subprocess.run(
        ["openssl", "crl", "-inform", "DER", "-in", str(crl_file), "-CAfile", str(old_pem),
         "-noout", "-verify"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0 and "verify OK" in checked.stdout + checked.stderr, (
        checked.stderr
    )

    for cert, issuer, status in (
        (old_cert, ca, ocsp.OCSPCertStatus.REVOKED),
        (kept, ca, ocsp.OCSPCertStatus.GOOD),
        (fresh, new, ocsp.OCSPCertStatus.GOOD),
    ):
        data = _ocsp_request(cert.x509, issuer.certificate)
        answer_der = client.post("/ocsp", data, content_type="application/ocsp-request").content
        answer = ocsp.load_der_ocsp_response(answer_der)
        assert answer.certificate_status == status
        assert answer.responder_name == issuer.certificate.subject
        issuer_file = write_pem(tmp_path / f"issuer-{issuer.pk}.pem", issuer.certificate)
        (tmp_path / "req.der").write_bytes(data)
        (tmp_path / "resp.der").write_bytes(answer_der)
        cert_file = write_pem(tmp_path / "c.pem", cert.x509)
        verdict = subprocess.run(
            ["openssl", "ocsp", "-reqin", str(tmp_path / "req.der"),
             "-respin", str(tmp_path / "resp.der"), "-issuer", str(issuer_file),
             "-CAfile", str(issuer_file), "-cert", str(cert_file)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert "Response verify OK" in verdict.stdout + verdict.stderr, (
            verdict.stdout + verdict.stderr
        )


def test_ca_page_lists_the_retired_ca(client, ca):
    """The CA page shows the new default and the retired CA with its role."""
    run("init_ca", "--subject", "CN=Next Root CA", "--force")
    text = client.get(reverse("ca_page")).content.decode()
    assert "CN=Next Root CA" in text
    assert "root, retired" in text


def test_generate_crl_still_signs_for_the_retired_ca(ca, agent):
    """generate_crl publishes for every CA whose certificate has not expired, retired too."""
    run("init_ca", "--subject", "CN=Next Root CA", "--force")
    run("generate_crl")
    assert ca.crls.exists()
    assert CertificateAuthority.objects.default().crls.exists()


def test_key_files_of_subordinates_stay_in_the_backend(ca, settings):
    """The subordinate's key is an encrypted file in CA_KEY_DIR, never in the database."""
    sub = subordinate(ca)
    data = (Path(settings.CA_KEY_DIR) / sub.key_filename).read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in data
    row = CertificateAuthority.objects.filter(pk=sub.pk).values().get()
    assert not any("PRIVATE KEY" in str(v) for v in row.values())


def test_pkcs12_of_a_server_made_key_carries_the_chain(ca, agent, settings):
    """The .p12 of a key the portal made holds the leaf, the subordinate and the root."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    from tests.helpers.mailbox import confirmed

    sub = subordinate(ca)
    settings.SERVER_KEY_TYPE = "p256"
    passphrase = "correct horse battery staple"
    req = services.submit_request_with_server_key(
        profile="user",
        passphrase=passphrase,
        requester_email="ada@example.test",
        requester_name="Ada Lovelace",
    )
    cert = services.approve_request(confirmed(req), agent=agent)
    bundle = pkcs12.load_pkcs12(
        services.download_server_key(req.public_id, passphrase=passphrase), passphrase.encode()
    )
    assert bundle.cert.certificate == cert.x509
    assert [c.certificate for c in bundle.additional_certs] == [sub.certificate, ca.certificate]
