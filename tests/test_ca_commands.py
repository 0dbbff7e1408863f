"""The CA commands: init_ca, import_ca, show_ca and export_ca, happy paths and refusals."""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
from django.core.management import call_command
from django.core.management.base import CommandError

from requests_app import pki, services
from requests_app.models import AuditEvent, CertificateAuthority
from tests.helpers.certs import make_ca_cert, openssl_verify, write_pem
from tests.helpers.csrs import make_csr
from tests.helpers.keys import key_dir, key_path

ROOT_SUBJECT = "CN=Example Root CA,O=Example,C=US"
INTERMEDIATE_PASSPHRASE = "int-pass"


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(*args, stdout=None, **options) -> str:
    """Run a command and return what it wrote to stdout."""
    out = stdout if stdout is not None else io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue() if isinstance(out, io.StringIO) else ""


def refused(*args, **options) -> str:
    """Run a command that must fail and return its CommandError message."""
    with pytest.raises(CommandError) as caught:
        run(*args, **options)
    return str(caught.value)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def offline(tmp_path_factory) -> dict[str, Path]:
    """An offline root and an intermediate it signed, made with openssl as an admin would;
    the intermediate's key is encrypted. Also a bundle (intermediate + root) and bad inputs."""
    d = tmp_path_factory.mktemp("offline-ca")
    files = {name: d / name for name in ("root.pem", "root.key", "int.pem", "int.key", "int.csr")}
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(files["root.key"]), "-out", str(files["root.pem"]),
        "-subj", "/C=US/O=Offline/CN=Offline Root CA", "-days", "3650",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    _openssl(
        "req", "-new", "-newkey", "rsa:2048", "-keyout", str(files["int.key"]),
        "-passout", f"pass:{INTERMEDIATE_PASSPHRASE}", "-out", str(files["int.csr"]),
        "-subj", "/C=US/O=Offline/CN=Issuing CA 1",
    )  # fmt: skip
    ext = d / "ext.cnf"
    ext.write_text(
        "[v3_int]\n"
        "basicConstraints=critical,CA:TRUE,pathlen:0\n"
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid:always\n"
    )
    _openssl(
        "x509", "-req", "-in", str(files["int.csr"]), "-CA", str(files["root.pem"]),
        "-CAkey", str(files["root.key"]), "-set_serial", "0x1234abcd", "-days", "365",
        "-extfile", str(ext), "-extensions", "v3_int", "-out", str(files["int.pem"]),
    )  # fmt: skip
    files["bundle.pem"] = d / "bundle.pem"
    files["bundle.pem"].write_text(files["int.pem"].read_text() + files["root.pem"].read_text())

    _, other_root = pki.create_ca("CN=Unrelated Root,C=US")
    files["other-root.pem"] = write_pem(d / "other-root.pem", other_root)

    leaf_key = pki.generate_private_key("p256")
    leaf = make_ca_cert("CN=leaf.example.com", leaf_key, ca=False, key_cert_sign=False)
    files["leaf.pem"] = write_pem(d / "leaf.pem", leaf)
    files["leaf.key"] = d / "leaf.key"
    files["leaf.key"].write_bytes(pki.encrypt_private_key(leaf_key, "leaf-pass"))

    old_key = pki.generate_private_key("p256")
    expired = make_ca_cert(
        "CN=Expired CA", old_key, not_before=pki.utcnow() - dt.timedelta(days=30), days=10
    )
    files["expired.pem"] = write_pem(d / "expired.pem", expired)
    files["expired.key"] = d / "expired.key"
    files["expired.key"].write_bytes(pki.encrypt_private_key(old_key, "old-pass"))

    files["garbage"] = d / "garbage"
    files["garbage"].write_bytes(b"this is no certificate\n")
    return files


def import_intermediate(offline, monkeypatch, **options) -> str:
    monkeypatch.setenv("INT_PASS", INTERMEDIATE_PASSPHRASE)
    return run(
        "import_ca",
        cert=str(offline["int.pem"]),
        key=str(offline["int.key"]),
        chain=str(offline["root.pem"]),
        key_passphrase_env="INT_PASS",
        **options,
    )


# --- init_ca -----------------------------------------------------------------------------


def test_init_ca_creates_the_default_ca(db):
    """init_ca makes a P-256 root by default, stores its key, audits it and reports it."""
    output = run("init_ca", subject=ROOT_SUBJECT)
    ca = CertificateAuthority.objects.get()
    assert ca.is_default and ca.key_type == "p256"
    assert ca.subject == ROOT_SUBJECT
    assert "Created CA Example Root CA (p256), the default CA." in output
    assert ca.fingerprint_sha256 in output
    assert str(key_path(ca)) in output
    assert key_path(ca).exists()
    assert "PRIVATE KEY" not in output
    assert AuditEvent.objects.filter(action="ca_created", ca=ca).count() == 1


def test_init_ca_with_key_type_and_validity(db):
    """--key-type and --validity-days are honoured (command-line form)."""
    run("init_ca", f"--subject={ROOT_SUBJECT}", "--key-type=rsa2048", "--validity-days=30")
    ca = CertificateAuthority.objects.get()
    assert ca.key_type == "rsa2048"
    assert ca.not_after - ca.not_before == dt.timedelta(days=30, minutes=1)


def test_init_ca_refuses_a_second_ca_without_force(ca):
    """A second CA needs --force; with it the new one is the default and the old one stays."""
    message = refused("init_ca", subject=ROOT_SUBJECT)
    assert message.startswith("a CA already exists (Test Root CA); use --force")
    assert CertificateAuthority.objects.count() == 1
    run("init_ca", subject=ROOT_SUBJECT, force=True)
    assert CertificateAuthority.objects.count() == 2
    assert CertificateAuthority.objects.default().name == "Example Root CA"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--subject=nonsense"], "cannot parse the DN 'nonsense'"),
        (["--subject=CN=x,C=USA"], "cannot parse the DN"),
        ([f"--subject={ROOT_SUBJECT}", "--key-type=rsa1024"], "invalid choice: 'rsa1024'"),
        ([f"--subject={ROOT_SUBJECT}", "--validity-days=0"], "'0' must be at least 1"),
        ([f"--subject={ROOT_SUBJECT}", "--validity-days=40000"], "between 1 and 36500 days"),
        ([], "the following arguments are required: --subject"),
    ],
)
def test_init_ca_refusals(db, args, message):
    """Bad input is a CommandError with the reason, and no CA is made."""
    assert message in refused("init_ca", *args)
    assert not CertificateAuthority.objects.exists()


# --- import_ca ---------------------------------------------------------------------------


def test_import_an_intermediate_then_issue_a_certificate_openssl_verifies(
    db, offline, monkeypatch, tmp_path
):
    """An openssl-made intermediate with an encrypted key and its root imports and issues
    certificates that verify up to the offline root."""
    output = import_intermediate(offline, monkeypatch)
    ca = CertificateAuthority.objects.default()
    assert "Imported CA Issuing CA 1 (rsa2048), the default CA." in output
    assert "chain        1 certificate(s)" in output
    assert ca.subject == "CN=Issuing CA 1,O=Offline,C=US"
    assert [c.subject.rfc4514_string() for c in ca.chain] == ["CN=Offline Root CA,O=Offline,C=US"]
    assert key_path(ca).read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")

    cert = services.issue_certificate(
        profile="server", csr=make_csr(cn="www.example.test"), requester_email="a@example.test"
    )
    result = openssl_verify(
        write_pem(tmp_path / "leaf.pem", cert.x509),
        ca_file=offline["root.pem"],
        untrusted=offline["int.pem"],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    aki = cert.x509.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    int_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == int_ski.digest


def test_import_a_bundle_carries_the_chain(db, offline, monkeypatch):
    """A PEM bundle (intermediate, then root) as --cert brings its chain without --chain."""
    monkeypatch.setenv("INT_PASS", INTERMEDIATE_PASSPHRASE)
    run(
        "import_ca",
        cert=str(offline["bundle.pem"]),
        key=str(offline["int.key"]),
        key_passphrase_env="INT_PASS",
    )
    assert len(CertificateAuthority.objects.default().chain) == 1


def test_import_a_root_with_an_unencrypted_key(db, offline):
    """A root imports without a chain or passphrase."""
    run("import_ca", cert=str(offline["root.pem"]), key=str(offline["root.key"]))
    ca = CertificateAuthority.objects.default()
    assert (ca.name, ca.key_type, ca.chain) == ("Offline Root CA", "p256", [])


@pytest.mark.parametrize(
    ("files", "env", "message"),
    [
        (
            {"cert": "missing.pem", "key": "int.key"},
            None,
            "cannot read {missing}: No such file or directory",
        ),
        (
            {"cert": "int.pem", "key": "int.key", "chain": "root.pem"},
            {"PASS": "wrong"},
            "could not open the CA key: wrong passphrase, or not a private key in PEM/DER",
        ),
        (
            {"cert": "int.pem", "key": "int.key", "chain": "root.pem"},
            None,
            "the CA key is encrypted and no passphrase was given",
        ),
        (
            {"cert": "int.pem", "key": "int.key"},
            {},
            "the environment variable PASS is not set or is empty",
        ),
        (
            {"cert": "int.pem", "key": "root.key", "chain": "root.pem"},
            None,
            "the private key does not match the CA certificate",
        ),
        (
            {"cert": "leaf.pem", "key": "leaf.key"},
            {"PASS": "leaf-pass"},
            "the certificate is not a CA certificate (basicConstraints CA:TRUE is missing)",
        ),
        (
            {"cert": "expired.pem", "key": "expired.key"},
            {"PASS": "old-pass"},
            "the certificate is not valid now",
        ),
        (
            {"cert": "int.pem", "key": "int.key", "chain": "other-root.pem"},
            {"PASS": INTERMEDIATE_PASSPHRASE},
            "the chain is broken: CN=Issuing CA 1,O=Offline,C=US was not issued by "
            "CN=Unrelated Root,C=US",
        ),
        (
            {"cert": "garbage", "key": "root.key"},
            None,
            "could not read a certificate (PEM or DER) from the data given",
        ),
    ],
    ids=[
        "missing-file",
        "wrong-passphrase",
        "no-passphrase",
        "unset-env",
        "key-mismatch",
        "not-a-ca",
        "expired",
        "broken-chain",
        "garbage",
    ],
)
def test_import_ca_refusals(db, offline, monkeypatch, tmp_path, files, env, message):
    """Each bad import is one CommandError saying what is wrong, and nothing is stored."""
    missing = tmp_path / "missing.pem"
    options = {
        option: str(missing if name == "missing.pem" else offline[name])
        for option, name in files.items()
    }
    if env is not None:
        monkeypatch.delenv("PASS", raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        options["key_passphrase_env"] = "PASS"
    text = refused("import_ca", **options)
    assert message.format(missing=missing) in text
    assert "Traceback" not in text
    assert not CertificateAuthority.objects.exists()
    assert not any(key_dir().glob("*"))


def test_import_ca_refuses_a_second_ca_without_force(ca, offline, monkeypatch):
    """Importing over an existing CA needs --force; the same CA twice is refused even then."""
    message = refused("import_ca", cert=str(offline["root.pem"]), key=str(offline["root.key"]))
    assert message.startswith("a CA already exists (Test Root CA); use --force")
    run("import_ca", cert=str(offline["root.pem"]), key=str(offline["root.key"]), force=True)
    assert CertificateAuthority.objects.default().name == "Offline Root CA"
    again = refused(
        "import_ca", cert=str(offline["root.pem"]), key=str(offline["root.key"]), force=True
    )
    assert again == "this CA certificate is already installed"
    assert CertificateAuthority.objects.count() == 2


# --- show_ca -----------------------------------------------------------------------------


def test_show_ca_without_a_ca(db):
    """With no CA, show_ca says how to make one, and --json is an empty list."""
    assert run("show_ca") == "No CA yet: run manage.py init_ca or import_ca.\n"
    assert json.loads(run("show_ca", json=True)) == []


def test_show_ca_text(ca):
    """The text output shows the CA's public facts, the default marked, and no key material."""
    output = run("show_ca")
    assert output.splitlines()[0] == f"CA {ca.pk}: Test Root CA (default)"
    for value in (ca.subject, ca.key_type, ca.serial, ca.fingerprint_sha256, ca.key_filename):
        assert value in output
    assert f"{ca.not_after:%Y-%m-%d %H:%M:%S} UTC" in output
    assert "PRIVATE KEY" not in output
    assert key_path(ca).read_text().splitlines()[1] not in output


def test_show_ca_json_lists_every_ca_default_first(ca, offline, monkeypatch, settings):
    """--json lists all CAs, the default first, with fingerprints, validity and chains."""
    services.issue_certificate(
        profile="server", csr=make_csr(cn="a.example.test"), requester_email="a@example.test"
    )
    import_intermediate(offline, monkeypatch, force=True)
    rows = json.loads(run("show_ca", json=True))
    assert [(r["name"], r["default"]) for r in rows] == [
        ("Issuing CA 1", True),
        ("Test Root CA", False),
    ]
    new, old = rows
    authority = CertificateAuthority.objects.default()
    assert new == {
        "id": authority.pk,
        "name": "Issuing CA 1",
        "default": True,
        "subject": "CN=Issuing CA 1,O=Offline,C=US",
        "issuer": "CN=Offline Root CA,O=Offline,C=US",
        "key_type": "rsa2048",
        "serial": "1234abcd",
        "not_before": new["not_before"],
        "not_after": new["not_after"],
        "fingerprint_sha256": authority.fingerprint_sha256,
        "chain": ["CN=Offline Root CA,O=Offline,C=US"],
        "key_file": authority.key_filename,
        "key_backend": "default",
        "key_location": str(settings.CA_KEY_DIR / authority.key_filename),
        "certificates_issued": 0,
        "role": "subordinate, default",
        "status": "active",
        "parent": None,
        "path_length": 0,
        "last_certificate_expires": None,
    }
    assert dt.datetime.fromisoformat(new["not_after"]) == authority.not_after
    assert old["certificates_issued"] == 1
    assert (old["role"], old["status"]) == ("root, retired", "retired")
    assert old["fingerprint_sha256"] == ca.fingerprint_sha256
    assert "PRIVATE KEY" not in json.dumps(rows)


# --- export_ca ---------------------------------------------------------------------------


def test_export_ca_pem_to_stdout(ca):
    """The default export is the CA certificate in PEM on stdout."""
    output = run("export_ca")
    assert x509.load_pem_x509_certificates(output.encode()) == [ca.certificate]


def test_export_ca_pem_includes_the_chain(db, offline, monkeypatch):
    """An intermediate's PEM export carries its chain after it."""
    import_intermediate(offline, monkeypatch)
    certs = x509.load_pem_x509_certificates(run("export_ca", format="pem").encode())
    assert [c.subject.rfc4514_string() for c in certs] == [
        "CN=Issuing CA 1,O=Offline,C=US",
        "CN=Offline Root CA,O=Offline,C=US",
    ]


def test_export_ca_der_and_p7b_to_files(db, offline, monkeypatch, tmp_path):
    """der writes the CA certificate alone; p7b all of them, readable as PKCS#7."""
    import_intermediate(offline, monkeypatch)
    ca = CertificateAuthority.objects.default()
    der, p7b = tmp_path / "ca.cer", tmp_path / "ca.p7b"
    assert "Wrote CA Issuing CA 1 (der) to" in run("export_ca", format="der", output=str(der))
    run("export_ca", format="p7b", output=str(p7b))
    assert x509.load_der_x509_certificate(der.read_bytes()) == ca.certificate
    assert set(pkcs7.load_der_pkcs7_certificates(p7b.read_bytes())) == {ca.certificate, *ca.chain}


def test_export_ca_binary_to_a_binary_stdout(ca):
    """Binary formats go to stdout's byte buffer when there is one."""
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    call_command("export_ca", format="p7b", stdout=stdout)
    stdout.flush()
    assert pkcs7.load_der_pkcs7_certificates(stdout.buffer.getvalue()) == [ca.certificate]


def test_export_ca_of_an_older_ca(ca):
    """--ca exports a CA that is no longer the default."""
    services.create_ca("CN=Newer Root,C=US", force=True)
    output = run("export_ca", ca=ca.pk)
    assert x509.load_pem_x509_certificates(output.encode()) == [ca.certificate]


def test_export_ca_refusals(db, tmp_path):
    """No CA, an unknown id, a bad format, binary to a text stream or a terminal, and an
    unwritable path are CommandErrors."""
    assert refused("export_ca").startswith("no CA exists yet")
    authority = services.create_ca(ROOT_SUBJECT)
    assert refused("export_ca", ca=authority.pk + 1) == (
        f"no CA has the id {authority.pk + 1}; show_ca lists them"
    )
    assert "invalid choice: 'p12'" in refused("export_ca", "--format=p12")
    assert refused("export_ca", format="der") == "binary output needs --output PATH here"
    assert refused("export_ca", format="p7b", stdout=TTY()) == (
        "p7b is binary: use --output PATH or redirect stdout"
    )
    missing_dir = tmp_path / "no" / "such" / "dir" / "ca.pem"
    assert refused("export_ca", output=str(missing_dir)).startswith(f"cannot write {missing_dir}")
