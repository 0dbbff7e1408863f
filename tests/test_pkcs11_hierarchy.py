"""A CA hierarchy with the subordinate's key in a hardware token (SoftHSM2): init_ca
--csr-only --key-backend pkcs11 makes the key in the token and its CSR; a root made with
openssl outside the portal signs it; import_ca --certificate completes the CA (in this
process after its sessions are gone, and in another process); the subordinate issues what
`openssl verify -CAfile root.pem -untrusted sub.pem` accepts, and the key is never
extractable. And init_ca --parent with either CA, or both, in the token."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from django.core.management import call_command
from django.core.management.base import CommandError

from requests_app import keys, pki, services
from requests_app.keys.pkcs11 import KeyRef
from requests_app.keys.pkcs11.session import library
from requests_app.models import AuditEvent, Certificate, CertificateAuthority
from tests.helpers.certs import openssl_verify, write_pem
from tests.helpers.csrs import make_csr
from tests.helpers.softhsm import init_token, needs_pkcs11_tool, needs_softhsm, use_token
from tests.test_ca_hierarchy import OfflineRoot

ROOT = Path(__file__).resolve().parent.parent
SUB_SUBJECT = "CN=Token Issuing CA,O=Example,C=US"

pytestmark = [
    needs_softhsm,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
]


@pytest.fixture
def token(tmp_path, monkeypatch, settings):
    """A fresh SoftHSM2 token this process signs with (PKCS11_* settings point at it)."""
    made = init_token(tmp_path / "softhsm")
    use_token(made, monkeypatch, settings)
    return made


@pytest.fixture
def root(tmp_path) -> OfflineRoot:
    directory = tmp_path / "offline"
    directory.mkdir()
    return OfflineRoot(directory)


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def refused(*args: str) -> str:
    with pytest.raises(CommandError) as caught:
        run(*args)
    return str(caught.value)


def approve_server(cn: str = "www.example.test") -> Certificate:
    req = services.submit_request(
        profile="server", csr=make_csr(cn=cn), requester_email="ops@example.test"
    )
    return services.approve_request(req, agent=None)


def private_key_listing(token, label: str) -> str:
    """pkcs11-tool's (another process's) description of the private key labelled label."""
    listing = token.pkcs11_tool("--list-objects", "--login", "--pin", token.pin).stdout
    for block in listing.split("Private Key Object")[1:]:
        block = block.split("Object")[0]
        if f"label:      {label}\n" in block:
            return block
    raise AssertionError(f"no private key {label!r} in the token:\n{listing}")


def assert_never_extractable(token, label: str) -> None:
    access = next(
        line for line in private_key_listing(token, label).splitlines() if "Access:" in line
    )
    assert "sensitive" in access and "never extractable" in access, access
    assert "local" in access  # made in the token, never imported


def no_private_key_files(settings) -> bool:
    """CA_KEY_DIR holds no private key (of any CA)."""
    key_dir = Path(settings.CA_KEY_DIR)
    found = list(key_dir.rglob("*")) if key_dir.exists() else []
    return not [p for p in found if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]


def state() -> tuple:
    """What a refused completion must leave as it was."""
    rows = CertificateAuthority.with_pending.order_by("pk").values_list(
        "pk", "status", "is_default", "key_filename", "certificate_pem"
    )
    return list(rows), AuditEvent.objects.count()


# --- the offline root signs the CSR of a subordinate whose key is in the token ---------


@needs_pkcs11_tool
@pytest.mark.django_db
def test_offline_root_signs_a_subordinate_whose_key_is_in_the_token(
    token, root, tmp_path, settings
):
    """init_ca --csr-only --key-backend pkcs11 leaves the key on the token (it outlives this
    process's sessions and the module's initialisation); the openssl root signs the CSR;
    import_ca --certificate completes the CA, which issues a certificate `openssl verify
    -CAfile root.pem -untrusted sub.pem` accepts; pkcs11-tool shows the key sensitive and
    never extractable, and CA_KEY_DIR holds no private key."""
    csr_path = tmp_path / "sub.csr"
    out, err = run(
        "init_ca", "--csr-only", "--subject", SUB_SUBJECT, "--key-type", "p384",
        "--key-backend", "pkcs11", "--key-label", "issuing-key", "--out", str(csr_path),
    )  # fmt: skip
    pending = CertificateAuthority.with_pending.get(status="pending")
    assert (pending.key_backend, pending.key_type, pending.is_default) == ("pkcs11", "p384", False)
    ref = KeyRef.parse(pending.key_filename)
    assert (ref.token, ref.label) == (token.label, "issuing-key")
    assert f"PKCS#11 token {token.label!r}, key 'issuing-key'" in err
    assert "(encrypted)" not in out + err and token.pin not in out + err
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    assert csr.is_signature_valid  # signed in the token
    assert pki.same_public_key(
        csr.public_key(), x509.load_pem_x509_csr(pending.csr_pem.encode()).public_key()
    )
    assert ref.key_id == x509.SubjectKeyIdentifier.from_public_key(csr.public_key()).digest

    # As another process would: no session of this one survives, the key is on the token.
    keys.reset()
    library(token.module).reinitialize()
    assert_never_extractable(token, "issuing-key")
    assert no_private_key_files(settings)

    sub_pem = root.sign(csr_path, tmp_path / "sub.pem")
    out, err = run(
        "import_ca", "--certificate", str(sub_pem), "--chain", str(root.cert),
        "--key-backend", "pkcs11",
    )  # fmt: skip
    assert "Completed CA" in out
    assert f"key          PKCS#11 token {token.label!r}, key 'issuing-key'" in out
    ca = CertificateAuthority.objects.get(pk=pending.pk)
    assert (ca.status, ca.is_default, ca.key_filename) == ("active", True, pending.key_filename)
    assert ca.chain == x509.load_pem_x509_certificates(root.cert.read_bytes())
    # The backend names the completed CA's key as it named the pending one.
    assert keys.backend_for(ca).key_reference(ca.certificate) == ca.key_filename

    cert = approve_server()
    assert cert.ca == ca
    leaf = write_pem(tmp_path / "leaf.pem", cert.x509)
    verdict = openssl_verify(leaf, ca_file=root.cert, untrusted=sub_pem)
    assert verdict.returncode == 0, verdict.stderr
    assert verdict.stdout.strip().endswith("OK")
    # The subordinate's CRL is signed in the token too.
    crl, _ = services.publish_crl(ca)
    signed = x509.load_der_x509_crl(bytes(crl.der))
    assert signed.is_signature_valid(ca.certificate.public_key())

    assert_never_extractable(token, "issuing-key")
    assert no_private_key_files(settings)
    # Importing the same token key again as another CA is refused.
    before = state()
    assert "already installed" in refused(
        "import_ca", "--cert", str(sub_pem), "--chain", str(root.cert),
        "--key-backend", "pkcs11", "--key-label", "issuing-key", "--force",
    )  # fmt: skip
    assert state() == before


@pytest.mark.django_db
def test_completing_a_token_ca_refuses_what_does_not_name_its_key(token, root, tmp_path):
    """Completion refuses another backend, another token, another key label, and importing
    the pending key as a new CA; each refusal changes nothing and the right call then
    completes the CA."""
    csr_path = tmp_path / "sub.csr"
    run(
        "init_ca", "--csr-only", "--subject", SUB_SUBJECT, "--key-backend", "pkcs11",
        "--key-label", "issuing-key", "--out", str(csr_path),
    )  # fmt: skip
    sub_pem = root.sign(csr_path, tmp_path / "sub.pem")
    chain = ("--chain", str(root.cert))
    before = state()
    message = refused(
        "import_ca", "--certificate", str(sub_pem), *chain, "--key-backend", "default"
    )
    assert "is in the key backend 'pkcs11', not 'default'" in message
    message = refused(
        "import_ca", "--certificate", str(sub_pem), *chain, "--key-backend", "pkcs11",
        "--token-label", "another-token",
    )  # fmt: skip
    assert f"token {token.label!r}" in message and "--token-label does not name" in message
    message = refused(
        "import_ca", "--certificate", str(sub_pem), *chain, "--key-backend", "pkcs11",
        "--key-label", "issuing-key",
    )  # fmt: skip
    assert "pending CA" in message and "without naming its key" in message
    assert state() == before
    assert token.pin not in message

    out, _ = run(
        "import_ca", "--certificate", str(sub_pem), *chain, "--key-backend", "pkcs11",
        "--token-label", token.label,
    )  # fmt: skip
    assert "Completed CA" in out
    assert CertificateAuthority.objects.default().key_backend == "pkcs11"


@needs_pkcs11_tool
@pytest.mark.django_db
def test_another_process_completes_the_pending_token_ca(token, root, tmp_path):
    """Three processes, as an administrator runs them: `init_ca --csr-only --key-backend
    pkcs11`, then (after the root signed the CSR) `import_ca --certificate`, then `show_ca
    --json`; they share only the database file and the token."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"} | {
        "DJANGO_SETTINGS_MODULE": "ca_portal.settings",
        "ENV_FILE": "/nonexistent/.env",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.sqlite3'}",
        "SECRET_KEY": "pkcs11-hierarchy-test-secret-key-0123456789abcdefghijklmnop",
        "CA_KEY_DIR": str(tmp_path / "keys"),
        "CA_KEY_PASSPHRASE": "a passphrase for the file key backend",
        **token.env,
    }

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert token.pin not in done.stdout + done.stderr
        return done.stdout + done.stderr

    manage("migrate", "-v0")
    csr_path = tmp_path / "sub.csr"
    manage(
        "init_ca", "--csr-only", "--subject", SUB_SUBJECT, "--key-backend", "pkcs11",
        "--key-label", "issuing-key", "--out", str(csr_path),
    )  # fmt: skip
    assert_never_extractable(token, "issuing-key")
    sub_pem = root.sign(csr_path, tmp_path / "sub.pem")
    output = manage("import_ca", "--certificate", str(sub_pem), "--chain", str(root.cert))
    assert "Completed CA" in output and "key          PKCS#11 token" in output
    (shown,) = json.loads(manage("show_ca", "--json"))
    assert (shown["status"], shown["default"], shown["key_backend"]) == ("active", True, "pkcs11")
    assert shown["key_location"].startswith(f"PKCS#11 token {token.label!r}, key 'issuing-key'")
    assert shown["chain"] == ["CN=Offline Root CA,O=Example,C=US"]
    key_dir = tmp_path / "keys"
    found = [p for p in key_dir.rglob("*") if p.is_file()] if key_dir.exists() else []
    assert not [p for p in found if b"PRIVATE KEY" in p.read_bytes()]


# --- init_ca --parent: a subordinate signed by a root held here -------------------------


@needs_pkcs11_tool
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("root_backend", "sub_backend"),
    [("default", "pkcs11"), ("pkcs11", "pkcs11"), ("pkcs11", "default")],
)
def test_parent_signs_a_subordinate_with_either_key_in_the_token(
    token, tmp_path, settings, root_backend, sub_backend
):
    """init_ca --parent --key-backend: the root (in a file or the token) signs a subordinate
    whose key is made where --key-backend says, with its path length and name constraints;
    the subordinate issues what `openssl verify -CAfile root.pem -untrusted sub.pem`
    accepts, and a name outside its constraints is refused at approval."""
    root_args = ["--key-backend", root_backend]
    if root_backend == "pkcs11":
        root_args += ["--key-label", "root-key"]
    run("init_ca", "--subject", "CN=Portal Root,O=Example,C=US", *root_args)
    parent = CertificateAuthority.objects.default()
    sub_args = ["--key-backend", sub_backend]
    if sub_backend == "pkcs11":
        sub_args += ["--key-label", "issuing-key"]
    out, _ = run(
        "init_ca", "--parent", str(parent.pk), "--subject", SUB_SUBJECT, "--key-type",
        "rsa2048", "--permitted-dns", "example.test", *sub_args,
    )  # fmt: skip
    sub = CertificateAuthority.objects.default()
    assert (sub.parent_id, sub.key_backend, sub.key_type) == (parent.pk, sub_backend, "rsa2048")
    assert f"key          {keys.backend_for(sub).key_location(sub)}" in out
    assert "(encrypted)" not in out
    if sub_backend == "pkcs11":
        assert f"PKCS#11 token {token.label!r}, key 'issuing-key'" in out
        assert_never_extractable(token, "issuing-key")
    if "default" not in (root_backend, sub_backend):
        assert no_private_key_files(settings)
    event = AuditEvent.objects.get(action="ca_subordinate_created")
    assert (event.ca_id, event.details["parent_id"]) == (sub.pk, parent.pk)

    cert = approve_server("www.example.test")
    assert cert.ca == sub
    root_pem = write_pem(tmp_path / "root.pem", parent.certificate)
    sub_pem = write_pem(tmp_path / "sub.pem", sub.certificate)
    leaf = write_pem(tmp_path / "leaf.pem", cert.x509)
    verdict = openssl_verify(leaf, ca_file=root_pem, untrusted=sub_pem)
    assert verdict.returncode == 0, verdict.stderr
    with pytest.raises(services.InvalidRequest):
        approve_server("www.elsewhere.test")  # outside --permitted-dns
    assert Certificate.objects.filter(ca=sub).count() == 1


@pytest.mark.django_db
def test_parent_refusals_with_the_token_leave_no_key_and_no_row(token, settings):
    """A key label already taken in the token is a clear CommandError for --parent and
    --csr-only alike: no CA row, no audit row and no new key in the token."""
    run("init_ca", "--subject", "CN=Portal Root,O=Example,C=US", "--key-backend", "pkcs11",
        "--key-label", "root-key")  # fmt: skip
    parent = CertificateAuthority.objects.default()
    before = state()
    message = refused(
        "init_ca", "--parent", str(parent.pk), "--subject", SUB_SUBJECT,
        "--key-backend", "pkcs11", "--key-label", "root-key",
    )  # fmt: skip
    assert "already holds a key labelled 'root-key'" in message
    message = refused(
        "init_ca", "--csr-only", "--subject", SUB_SUBJECT,
        "--key-backend", "pkcs11", "--key-label", "root-key",
    )  # fmt: skip
    assert "already holds a key labelled 'root-key'" in message
    assert state() == before
    backend = keys.backends["pkcs11"]
    labels = backend._tokens().run(
        lambda session: sorted(
            k.label for k in session.get_objects({}) if getattr(k, "label", None)
        ),
        what="listing",
    )
    assert labels == ["root-key", "root-key"]  # its private and public halves only
