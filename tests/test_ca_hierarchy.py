"""A CA hierarchy with an offline root: init_ca --csr-only makes the subordinate's key here and
a CSR; a root made with openssl outside the portal signs it; import_ca --certificate
completes it; the subordinate issues certificates that clients trusting only the root accept.
And every way completing it must be refused."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from requests_app import downloads, pki, services
from requests_app.models import AuditEvent, Certificate, CertificateAuthority
from tests.helpers.certs import openssl_verify, write_pem
from tests.helpers.csrs import make_csr
from tests.helpers.tls import client_context, handshake, server_context

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
]

SUB_SUBJECT = "CN=Portal Issuing CA,O=Example,C=US"

ROOT_CNF = """
[req]
distinguished_name = dn
prompt = no
[dn]
C = US
O = Example
CN = Offline Root CA
[v3_root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""

SUB_EXT = """
[v3_sub]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[v3_leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
"""


def openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True)


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def refused(*args: str) -> str:
    with pytest.raises(CommandError) as caught:
        run(*args)
    return str(caught.value)


class OfflineRoot:
    """A root CA made with openssl, as an administrator makes it on an offline machine."""

    def __init__(self, directory: Path, name: str = "root"):
        self.dir = directory
        self.cert = directory / f"{name}.pem"
        self.key = directory / f"{name}.key"
        (directory / "root.cnf").write_text(ROOT_CNF)
        (directory / "sub.ext").write_text(SUB_EXT)
        openssl(
            "req", "-x509", "-config", str(directory / "root.cnf"), "-extensions", "v3_root",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-nodes",
            "-keyout", str(self.key), "-out", str(self.cert), "-days", "3650",
        )  # fmt: skip

    def sign(self, csr: Path, out: Path, *, extensions: str = "v3_sub") -> Path:
        """`openssl x509 -req`: the root signs a CSR with one of SUB_EXT's sections."""
        openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-CAcreateserial", "-days", "1825", "-sha384",
            "-extfile", str(self.dir / "sub.ext"), "-extensions", extensions, "-out", str(out),
        )  # fmt: skip
        return out


@pytest.fixture
def root(tmp_path) -> OfflineRoot:
    directory = tmp_path / "offline"
    directory.mkdir()
    return OfflineRoot(directory)


def request_csr(tmp_path: Path, *extra: str) -> tuple[CertificateAuthority, Path]:
    """init_ca --csr-only: the pending CA and the CSR file it wrote."""
    csr = tmp_path / "sub.csr"
    run("init_ca", "--csr-only", "--subject", SUB_SUBJECT, "--out", str(csr), *extra)
    return CertificateAuthority.with_pending.get(status="pending"), csr


def state() -> tuple:
    """What a refused completion must leave as it was."""
    return (
        list(
            CertificateAuthority.with_pending.order_by("pk").values_list(
                "pk", "status", "is_default", "certificate_pem"
            )
        ),
        AuditEvent.objects.count(),
    )


def test_csr_only_makes_a_pending_ca_with_its_key_in_the_backend(db, tmp_path, settings):
    """The CSR is signed by a new key that the key backend keeps (encrypted, here), asks for
    a CA certificate, and the CA is pending: not the default, not usable, not served."""
    ca, csr_path = request_csr(tmp_path, "--key-type", "rsa3072")
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == SUB_SUBJECT
    assert csr.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert csr.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is True
    assert (ca.status, ca.is_default, ca.key_type, ca.certificate_pem) == (
        "pending",
        False,
        "rsa3072",
        "",
    )
    key_file = Path(settings.CA_KEY_DIR) / ca.key_filename
    assert b"ENCRYPTED PRIVATE KEY" in key_file.read_bytes()
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert "PRIVATE" not in ca.csr_pem
    assert not CertificateAuthority.objects.exists()  # no lookup sees a pending CA
    with pytest.raises(services.CAUnavailable):
        services.issue_certificate(
            profile="server", csr=make_csr(cn="www.example.test"), requester_email="a@b.test"
        )
    event = AuditEvent.objects.get(action="ca_csr_created")
    assert (event.ca_id, event.details["key_type"]) == (ca.pk, "rsa3072")
    shown = run("show_ca")
    assert "subordinate, pending" in shown and "BEGIN CERTIFICATE REQUEST" in shown


def test_offline_root_end_to_end(client, tmp_path, root, agent):
    """The root made with openssl signs the portal's CSR; import_ca completes the CA; it
    issues a server certificate that `openssl verify` accepts with only the root trusted,
    whose caIssuers URL serves the subordinate in DER; a TLS client trusting only the root
    completes a handshake with a server that sends leaf and subordinate."""
    ca, csr = request_csr(tmp_path)
    sub_pem = root.sign(csr, tmp_path / "sub.pem")
    output = run("import_ca", "--certificate", str(sub_pem), "--chain", str(root.cert))
    assert "Completed CA" in output
    ca.refresh_from_db()
    assert (ca.status, ca.is_default, ca.role) == ("active", True, "subordinate, default")
    assert ca.chain == x509.load_pem_x509_certificates(root.cert.read_bytes())
    assert AuditEvent.objects.filter(action="ca_completed", ca=ca).count() == 1

    leaf_key = pki.generate_private_key("p256")
    req = services.submit_request(
        profile="server",
        csr=make_csr(cn="www.example.test", key=leaf_key),
        requester_email="ops@example.test",
    )
    cert = services.approve_request(req, agent=agent)
    assert cert.ca == ca
    leaf = write_pem(tmp_path / "leaf.pem", cert.x509)
    verdict = openssl_verify(leaf, ca_file=root.cert, untrusted=sub_pem)
    assert verdict.returncode == 0, verdict.stderr
    assert verdict.stdout.strip().endswith("OK")

    # caIssuers names the issuing CA's certificate, served in DER.
    aia = cert.x509.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    (issuers_url,) = [
        d.access_location.value
        for d in aia
        if d.access_method == x509.AuthorityInformationAccessOID.CA_ISSUERS
    ]
    assert issuers_url.endswith(f"/ca/{ca.pk}/ca.cer")
    served = client.get(f"/ca/{ca.pk}/ca.cer")
    assert served.status_code == 200
    assert x509.load_der_x509_certificate(served.content) == ca.certificate

    # The server sends leaf + subordinate; the client trusts only the root.
    fullchain = tmp_path / "leaf-and-sub.pem"
    fullchain.write_text(cert.pem + ca.certificate_pem)
    key_file = tmp_path / "leaf.key"
    key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    outcome = handshake(
        server_context(fullchain, key_file), client_context(root.cert), "www.example.test"
    )
    assert outcome.ok, (outcome.client_error, outcome.server_error)
    # Without the subordinate the same client cannot build the path.
    alone = handshake(server_context(leaf, key_file), client_context(root.cert), "www.example.test")
    assert not alone.ok

    # Revocation stays with the issuing CA: its CRL, checked by openssl up to the root.
    services.revoke_certificate(cert, reason="keyCompromise", actor=agent)
    crl = client.get(reverse("crl_pem", args=[ca.pk]))
    assert crl.status_code == 200
    crl_file = tmp_path / "sub-crl.pem"
    crl_file.write_bytes(crl.content)
    revoked = subprocess.run(
        ["openssl", "verify", "-crl_check", "-CAfile", str(root.cert), "-untrusted", str(sub_pem),
         "-CRLfile", str(crl_file), str(leaf)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert revoked.returncode != 0
    assert "certificate revoked" in revoked.stdout + revoked.stderr


def test_openssl_s_client_verifies_the_chain_from_s_server(tmp_path, root, agent):
    """openssl s_server sends leaf+sub from the portal's chain download; `openssl s_client
    -verify_return_error -CAfile root.pem` accepts it (verify return code 0)."""
    ca, csr = request_csr(tmp_path)
    sub_pem = root.sign(csr, tmp_path / "sub.pem")
    run("import_ca", "--certificate", str(sub_pem), "--chain", str(root.cert))
    ca.refresh_from_db()
    leaf_key = pki.generate_private_key("p256")
    cert = services.issue_certificate(
        profile="server",
        csr=make_csr(cn="www.example.test", key=leaf_key),
        requester_email="ops@example.test",
    )
    chain_file = tmp_path / "chain.pem"
    chain_file.write_bytes(downloads.encode_certificate(cert, "chain").data)
    assert x509.load_pem_x509_certificates(chain_file.read_bytes())[:2] == [
        cert.x509,
        ca.certificate,
    ]
    key_file = tmp_path / "leaf.key"
    key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = subprocess.Popen(
        ["openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", str(chain_file),
         "-cert_chain", str(chain_file), "-key", str(key_file), "-naccept", "1", "-www"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        port = None
        for line in server.stdout:
            if line.startswith("ACCEPT"):
                port = line.rsplit(":", 1)[1].strip()
                break
        assert port, "openssl s_server did not report its port"
        client = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-verify_return_error",
             "-CAfile", str(root.cert), "-servername", "www.example.test",
             "-verify_hostname", "www.example.test", "-showcerts"],
            input="", capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    finally:
        server.kill()
        server.wait()
    assert client.returncode == 0, client.stdout + client.stderr
    assert "Verify return code: 0 (ok)" in client.stdout
    assert "Portal Issuing CA" in client.stdout  # the subordinate was sent


def test_every_download_format_carries_the_chain(client, tmp_path, root):
    """PEM bundle, PKCS#7 and the CA downloads carry leaf, subordinate and root."""
    ca, csr = request_csr(tmp_path)
    run(
        "import_ca",
        "--certificate",
        str(root.sign(csr, tmp_path / "sub.pem")),
        "--chain",
        str(root.cert),
    )
    ca.refresh_from_db()
    cert = services.issue_certificate(
        profile="server", csr=make_csr(cn="www.example.test"), requester_email="ops@example.test"
    )
    root_cert = x509.load_pem_x509_certificate(root.cert.read_bytes())
    expected = [cert.x509, ca.certificate, root_cert]
    bundle = client.get(reverse("certificate_download", args=[cert.serial, "chain"]))
    assert (
        x509.load_pem_x509_certificates(
            b"".join(bundle.streaming_content) if bundle.streaming else bundle.content
        )
        == expected
    )
    p7 = downloads.encode_certificate(cert, "p7b").data
    assert set(pkcs7.load_der_pkcs7_certificates(p7)) == set(expected)  # a SET OF: no order
    ca_bundle = client.get(reverse("ca_certificate", args=[ca.pk, "pem"]))
    assert x509.load_pem_x509_certificates(ca_bundle.content) == expected[1:]
    page = client.get(reverse("ca_page"))
    assert page.status_code == 200
    text = page.content.decode()
    assert "Issuers of this CA" in text and "CN=Offline Root CA,O=Example,C=US" in text
    assert "subordinate, default" in text


# --- refusals: each changes nothing ---------------------------------------------------


def test_certificate_for_another_key_is_refused(tmp_path, root):
    """A CA certificate the root signed for some other key completes nothing."""
    request_csr(tmp_path)
    other = tmp_path / "other.csr"
    openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(tmp_path / "other.key"), "-out", str(other), "-subj", "/CN=Other CA",
    )  # fmt: skip
    before = state()
    message = refused(
        "import_ca", "--certificate", str(root.sign(other, tmp_path / "o.pem")),
        "--chain", str(root.cert),
    )  # fmt: skip
    assert "another key" in message
    assert state() == before


def test_not_a_ca_certificate_is_refused(tmp_path, root):
    """The right key in an end-entity certificate (CA:FALSE) is no CA."""
    _, csr = request_csr(tmp_path)
    before = state()
    message = refused(
        "import_ca", "--certificate", str(root.sign(csr, tmp_path / "l.pem", extensions="v3_leaf")),
        "--chain", str(root.cert),
    )  # fmt: skip
    assert "not a CA certificate" in message
    assert state() == before


def test_chain_that_does_not_verify_is_refused(tmp_path, root):
    """A chain whose root has the same name but another key, or no root at all, or a root
    that is not self-signed, completes nothing."""
    _, csr = request_csr(tmp_path)
    sub_pem = root.sign(csr, tmp_path / "sub.pem")
    impostor_dir = tmp_path / "impostor"
    impostor_dir.mkdir()
    impostor = OfflineRoot(impostor_dir)  # same subject, another key
    before = state()
    assert "chain is broken" in refused(
        "import_ca", "--certificate", str(sub_pem), "--chain", str(impostor.cert)
    )
    assert "does not reach a root" in refused("import_ca", "--certificate", str(sub_pem))
    assert state() == before


def test_completing_twice_is_refused(tmp_path, root):
    """The second import of the same certificate is refused and changes nothing."""
    _, csr = request_csr(tmp_path)
    sub_pem = root.sign(csr, tmp_path / "sub.pem")
    run("import_ca", "--certificate", str(sub_pem), "--chain", str(root.cert))
    before = state()
    assert "already complete" in refused(
        "import_ca", "--certificate", str(sub_pem), "--chain", str(root.cert)
    )
    assert state() == before


def test_completing_beside_an_existing_default_needs_make_default(ca, tmp_path, root):
    """With a CA already the default, completion is a rollover: refused without
    --make-default (nothing changed), and with it the old CA is retired."""
    _, csr = request_csr(tmp_path)
    sub_pem = root.sign(csr, tmp_path / "sub.pem")
    before = state()
    assert "--force" in refused(
        "import_ca", "--certificate", str(sub_pem), "--chain", str(root.cert)
    )
    assert state() == before
    run("import_ca", "--certificate", str(sub_pem), "--chain", str(root.cert), "--make-default")
    ca.refresh_from_db()
    assert (ca.is_default, ca.status) == (False, "retired")
    assert CertificateAuthority.objects.default().subject == SUB_SUBJECT


def test_pending_ca_is_not_served(client, tmp_path):
    """A pending CA has no certificate: its downloads and CRL are not found."""
    ca, _ = request_csr(tmp_path)
    assert client.get(f"/ca/{ca.pk}/ca.cer").status_code == 404
    assert client.get(f"/ca/{ca.pk}/crl.crl").status_code == 404
    assert Certificate.objects.count() == 0


def test_garbage_and_pending_parents_are_refused(tmp_path):
    """A file that holds no certificate completes nothing; a pending CA signs nothing
    (no lookup finds it as a parent)."""
    pending, _ = request_csr(tmp_path)
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    before = state()
    assert "could not read a certificate" in refused("import_ca", "--certificate", str(junk))
    assert f"no CA has the id {pending.pk}" in refused(
        "init_ca", "--parent", str(pending.pk), "--subject", "CN=Child"
    )
    assert "--csr-only is for an outside root" in refused(
        "init_ca", "--csr-only", "--parent", "1", "--subject", "CN=Both"
    )
    assert state() == before
