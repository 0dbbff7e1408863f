"""The PKCS#11 key backend with SoftHSM2: a CA whose key was made in a token issues
certificates, CRLs and OCSP answers that OpenSSL accepts; the key stays in the token; a
wrong PIN or a vanished token fails an approval cleanly and shows on /healthz."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from django.core.management import CommandError, call_command

from requests_app import keys, pki, services
from requests_app.models import AuditEvent, Certificate, CertificateAuthority, CertificateRequest
from tests.helpers.csrs import make_csr
from tests.helpers.mailbox import submit_confirmed
from tests.helpers.softhsm import init_token, needs_pkcs11_tool, needs_softhsm, use_token

pytestmark = needs_softhsm

SUBJECT = "CN=Token Root CA,O=ca-portal tests,C=US"


@pytest.fixture
def token(tmp_path, monkeypatch, settings):
    """A fresh SoftHSM2 token this process signs with (PKCS11_* settings point at it)."""
    made = init_token(tmp_path / "softhsm")
    use_token(made, monkeypatch, settings)
    return made


def init_token_ca(key_type: str = "p256", *extra: str) -> CertificateAuthority:
    call_command(
        "init_ca",
        "--subject",
        SUBJECT,
        "--key-type",
        key_type,
        "--key-backend",
        "pkcs11",
        *extra,
        stdout=open("/dev/null", "w"),  # noqa: SIM115 - closed with the process
    )
    return CertificateAuthority.objects.default()


def openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["openssl", *args], capture_output=True, text=True, timeout=60, check=False
    )


def approve_server(cn: str = "www.example.test") -> Certificate:
    req = services.submit_request(
        profile="server",
        csr=make_csr(cn=cn),
        requester_email="ops@example.test",
        requester_name="Ops",
    )
    return services.approve_request(req, agent=None)


def verify(
    ca: CertificateAuthority, cert: Certificate, tmp_path: Path
) -> subprocess.CompletedProcess:
    (tmp_path / "ca.pem").write_text(ca.certificate_pem)
    (tmp_path / "leaf.pem").write_text(cert.pem)
    return openssl("verify", "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "leaf.pem"))


# --- a CA in the token ------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("key_type", ["p256", "p384", "rsa2048"])
def test_token_ca_issues_server_and_user_certificates_openssl_verifies(token, key_type, tmp_path):
    """init_ca --key-backend pkcs11 makes the key in the token; what it signs verifies."""
    ca = init_token_ca(key_type, "--key-label", "root-key")
    assert ca.key_backend == "pkcs11"
    assert ca.key_type == key_type
    assert ca.key_filename.startswith(f"pkcs11:token={token.label};object=root-key;id=")
    server = approve_server()
    assert verify(ca, server, tmp_path).returncode == 0, verify(ca, server, tmp_path).stderr
    user_req = submit_confirmed(
        profile="user",
        csr=make_csr(cn="Ada Lovelace", key_type="p256"),
        requester_email="ada@example.test",
        requester_name="Ada Lovelace",
    )
    user = services.approve_request(user_req, agent=None)
    result = verify(ca, user, tmp_path)
    assert result.returncode == 0, result.stderr
    assert user.x509.issuer == ca.certificate.subject


@pytest.mark.django_db
@pytest.mark.parametrize("key_type", ["rsa3072", "rsa4096"])
def test_larger_rsa_keys_are_made_in_the_token(token, key_type):
    """RSA 3072 and 4096 CA keys are made in the token too, and their CA signs."""
    ca = init_token_ca(key_type)
    assert ca.key_type == key_type
    assert ca.certificate.public_key().key_size == int(key_type[3:])
    assert pki.verify_signed_by(approve_server().x509, ca.certificate)


@pytest.mark.django_db
def test_crl_signed_in_the_token_passes_openssl_crl_verify(token, tmp_path):
    """A revoked certificate is on a CRL the token signed, and `openssl crl -verify` says OK."""
    ca = init_token_ca("p256")
    revoked = approve_server("gone.example.test")
    services.revoke_certificate(revoked, reason="keyCompromise", actor=None)
    crl, _ = services.publish_crl(ca)
    (tmp_path / "ca.pem").write_text(ca.certificate_pem)
    (tmp_path / "crl.der").write_bytes(bytes(crl.der))
    result = openssl(
        "crl", "-inform", "DER", "-in", str(tmp_path / "crl.der"), "-noout", "-text",
        "-CAfile", str(tmp_path / "ca.pem"), "-verify",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "verify OK" in result.stderr + result.stdout
    assert revoked.serial.upper().lstrip("0") in result.stdout.upper().replace(":", "")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("delegated", [False, True], ids=["ca-key", "delegated-in-token"])
def test_openssl_ocsp_accepts_answers_signed_in_the_token(
    token, live_server, settings, tmp_path, delegated
):
    """`openssl ocsp` verifies answers signed by the CA's token key, or by a delegated
    responder whose key the token made and keeps, for good and revoked certificates."""
    settings.REVOCATION_BASE_URL = f"http://127.0.0.1:{live_server.thread.port}"
    ca = init_token_ca("p256")
    if delegated:
        responder = services.create_ocsp_responder(validity_days=30)
        listing = token.pkcs11_tool("--list-objects", "--login", "--pin", token.pin).stdout
        assert "ocsp-" in listing and "Certificate Object" in listing
    good, gone = approve_server("good.example.test"), approve_server("gone.example.test")
    services.revoke_certificate(gone, reason="keyCompromise", actor=None)
    (tmp_path / "ca.pem").write_text(ca.certificate_pem)
    url = f"{settings.REVOCATION_BASE_URL}/ocsp"
    for cert, status in ((good, "good"), (gone, "revoked")):
        (tmp_path / "leaf.pem").write_text(cert.pem)
        (tmp_path / "answer.der").unlink(missing_ok=True)
        result = openssl(
            "ocsp", "-issuer", str(tmp_path / "ca.pem"), "-cert", str(tmp_path / "leaf.pem"),
            "-url", url, "-CAfile", str(tmp_path / "ca.pem"),
            "-respout", str(tmp_path / "answer.der"),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "Response verify OK" in result.stderr
        assert f"leaf.pem: {status}" in result.stdout
    answer = x509.ocsp.load_der_ocsp_response((tmp_path / "answer.der").read_bytes())
    if delegated:
        assert answer.certificates == [responder]
    else:
        assert answer.responder_name == ca.certificate.subject


@needs_pkcs11_tool
@pytest.mark.django_db
def test_the_key_is_private_sensitive_never_extractable_and_not_in_ca_key_dir(token, settings):
    """pkcs11-tool sees the CA key as private, sensitive and never extractable; CA_KEY_DIR
    holds no private key of it, and the CA row names only the token and the key."""
    ca = init_token_ca("p256", "--key-label", "root-key")
    listing = token.pkcs11_tool("--list-objects", "--login", "--pin", token.pin).stdout
    private = listing.split("Private Key Object")[1].split("Object")[0]
    assert "label:      root-key" in private
    access = next(line for line in private.splitlines() if "Access:" in line)
    assert "sensitive" in access and "never extractable" in access
    assert "local" in access  # made in the token, never imported
    # Without the PIN a private object is not even listed.
    anonymous = token.pkcs11_tool("--list-objects").stdout
    assert "Private Key Object" not in anonymous
    key_dir = Path(settings.CA_KEY_DIR)
    found = list(key_dir.rglob("*")) if key_dir.exists() else []
    assert not [p for p in found if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]
    assert token.pin not in str(ca.__dict__)
    # --key-id names the key the same way pkcs11-tool does: the certificate's SKI.
    ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert f"ID:         {ski.digest.hex()}" in private


@pytest.mark.django_db
def test_show_ca_says_where_the_key_lives(token, ca):
    """show_ca names the token and the key label of a token CA, and the path of a file CA."""
    token_ca = init_token_ca("p256", "--key-label", "root-key", "--force")
    from io import StringIO

    out = StringIO()
    call_command("show_ca", stdout=out)
    text = out.getvalue()
    assert f"PKCS#11 token {token.label!r}, key 'root-key'" in text
    assert str(keys.backend_for(ca).key_location(ca)) in text
    assert token.pin not in text
    assert token_ca.key_backend == "pkcs11"


# --- the key backend's options on the commands -----------------------------------------


@pytest.mark.django_db
def test_init_ca_names_another_token_and_module_on_the_command_line(
    tmp_path, monkeypatch, settings
):
    """--pkcs11-module and --token-label choose the token when no PKCS11_TOKEN_LABEL is set."""
    other = init_token(tmp_path / "other")
    use_token(other, monkeypatch, settings)
    settings.PKCS11_TOKEN_LABEL = ""
    settings.PKCS11_MODULE = ""
    ca = init_token_ca("p256", "--pkcs11-module", other.module, "--token-label", other.label)
    assert ca.key_filename.startswith(f"pkcs11:token={other.label};")


@pytest.mark.django_db
def test_init_ca_refusals_change_nothing(token, settings):
    """An unknown backend, a taken key label, a bad key ID and a missing module are clear
    CommandErrors, and no CA row is left behind."""
    init_token_ca("p256", "--key-label", "taken")
    before = CertificateAuthority.objects.count()
    with pytest.raises(CommandError, match="no key backend 'nope'"):
        init_token_ca("p256", "--key-backend", "nope")
    with pytest.raises(CommandError, match="already holds a key labelled 'taken'"):
        init_token_ca("p256", "--key-label", "taken", "--force")
    with pytest.raises(CommandError, match="not hexadecimal"):
        init_token_ca("p256", "--key-id", "xyz", "--force")
    with pytest.raises(CommandError, match=r"a key made through /nonexistent\.so would not"):
        init_token_ca("p256", "--pkcs11-module", "/nonexistent.so", "--force")
    settings.PKCS11_MODULE = ""
    with pytest.raises(CommandError, match="no PKCS#11 module: set PKCS11_MODULE"):
        init_token_ca("p256", "--force")
    assert CertificateAuthority.objects.count() == before


@needs_pkcs11_tool
@pytest.mark.django_db
def test_import_ca_takes_a_key_already_in_the_token(token, tmp_path):
    """import_ca --key-backend pkcs11 --key-label makes a CA of a key made elsewhere in the
    token (pkcs11-tool) and a certificate signed with it outside the portal."""
    token.pkcs11_tool(
        "--login", "--pin", token.pin, "--keypairgen", "--key-type", "EC:prime256v1",
        "--label", "external", "--id", "4242",
    )  # fmt: skip
    backend = keys.backends["pkcs11"]
    existing = backend.import_key(None, None, key_label="external")
    builder = pki.ca_certificate_builder(
        "CN=External Token CA,C=US", existing.public_key, validity_days=365
    )
    cert = backend.sign_with_new_key(existing, builder)  # as a ceremony elsewhere would
    (tmp_path / "ca.pem").write_text(pki.to_pem(cert))
    keys.reset()
    with pytest.raises(CommandError, match="no private key in the token"):
        call_command(
            "import_ca", "--cert", str(tmp_path / "ca.pem"), "--key-backend", "pkcs11",
            "--key-label", "missing",
        )  # fmt: skip
    other_root = tmp_path / "other.pem"
    other_root.write_text(pki.to_pem(pki.create_ca("CN=Someone Else,C=US")[1]))
    with pytest.raises(CommandError, match="does not match the CA certificate"):
        call_command(
            "import_ca", "--cert", str(other_root), "--key-backend", "pkcs11",
            "--key-label", "external",
        )  # fmt: skip
    with pytest.raises(CommandError, match="does not take a key file"):
        call_command(
            "import_ca", "--cert", str(tmp_path / "ca.pem"), "--key", str(tmp_path / "ca.pem"),
            "--key-backend", "pkcs11",
        )  # fmt: skip
    call_command(
        "import_ca", "--cert", str(tmp_path / "ca.pem"), "--key-backend", "pkcs11",
        "--key-id", "4242", stdout=open("/dev/null", "w"),  # noqa: SIM115
    )  # fmt: skip
    ca = CertificateAuthority.objects.default()
    assert CertificateAuthority.objects.count() == 1  # the refusals stored nothing
    assert ca.key_filename == f"pkcs11:token={token.label};object=external;id=%42%42"
    assert verify(ca, approve_server(), tmp_path).returncode == 0


# --- failures: nothing stored, a clear error, /healthz ----------------------------------


def _assert_nothing_stored(req: CertificateRequest) -> None:
    req.refresh_from_db()
    assert req.status == CertificateRequest.Status.PENDING
    assert req.certificate_id is None
    assert not Certificate.objects.filter(request=req).exists()
    assert not AuditEvent.objects.filter(request=req, action="request_approved").exists()


@pytest.mark.django_db
def test_wrong_pin_fails_the_approval_cleanly_and_healthz_reports_it(
    token, settings, client, caplog
):
    """With a wrong PIN an approval is refused naming the PIN problem (not the PIN), the
    request stays pending without a certificate, and /healthz fails."""
    settings.HEALTHZ_TOKEN = "health-token-for-tests"
    init_token_ca("p256")
    req = services.submit_request(
        profile="server", csr=make_csr(cn="www.example.test"), requester_email="o@example.test"
    )
    settings.PKCS11_PIN = "00000000"  # resets the backends: the next use logs in again
    with pytest.raises(services.CAUnavailable, match=r"PIN of the token .* is wrong") as refused:
        services.approve_request(req, agent=None)
    assert "00000000" not in str(refused.value) and token.pin not in str(refused.value)
    _assert_nothing_stored(req)
    answer = client.get("/healthz", HTTP_AUTHORIZATION="Bearer health-token-for-tests")
    assert answer.status_code == 503
    assert answer.json()["ca_key"].startswith("error:")
    assert answer.json()["ca_key_tokens"].startswith("error: the token key of CA")
    assert "00000000" not in caplog.text and token.pin not in caplog.text
    assert not AuditEvent.objects.filter(details__icontains="00000000").exists()


@pytest.mark.django_db
def test_pin_file(token, settings, tmp_path):
    """PKCS11_PIN_FILE's first line is the PIN; an unreadable file is a clear refusal."""
    pin_file = tmp_path / "pin"
    pin_file.write_text(token.pin + "\n")
    settings.PKCS11_PIN = ""
    settings.PKCS11_PIN_FILE = str(pin_file)
    init_token_ca("p256")
    assert approve_server().status == Certificate.Status.VALID
    settings.PKCS11_PIN_FILE = str(tmp_path / "missing")
    req = services.submit_request(
        profile="server", csr=make_csr(cn="b.example.test"), requester_email="o@example.test"
    )
    with pytest.raises(services.CAUnavailable, match="cannot read the PIN file"):
        services.approve_request(req, agent=None)
    _assert_nothing_stored(req)


@pytest.mark.django_db
def test_token_removed_between_approvals(token, settings, client):
    """The first approval signs; after the token is deleted the next one is refused saying
    the token is gone, stores nothing, and /healthz fails until it is back."""
    settings.HEALTHZ_TOKEN = "health-token-for-tests"
    init_token_ca("p256")
    first = approve_server("one.example.test")
    assert first.status == Certificate.Status.VALID
    assert client.get("/healthz").status_code in (200, 503)  # other checks may fail here
    assert (
        client.get("/healthz", HTTP_AUTHORIZATION="Bearer health-token-for-tests").json()[
            "ca_key_tokens"
        ]
        == "ok"
    )
    token.delete()
    req = services.submit_request(
        profile="server", csr=make_csr(cn="two.example.test"), requester_email="o@example.test"
    )
    with pytest.raises(services.CAUnavailable, match="removed"):
        services.approve_request(req, agent=None)
    _assert_nothing_stored(req)
    details = client.get("/healthz", HTTP_AUTHORIZATION="Bearer health-token-for-tests")
    assert details.status_code == 503
    assert details.json()["ca_key_tokens"].startswith("error:")
    assert token.label not in details.content.decode()  # names no token, module or setting


@pytest.mark.django_db
def test_missing_token_label_is_a_clear_error(token, settings):
    """A CA whose token is not in the module (another slot, a typo) cannot sign: the error
    names the missing token."""
    ca = init_token_ca("p256")
    ca.key_filename = ca.key_filename.replace(token.label, "no-such-token")
    with pytest.raises(pki.CAError, match="no token labelled 'no-such-token'"):
        keys.backend_for(ca).check_usable(ca)


@pytest.mark.django_db
def test_token_removed_while_signing_stores_nothing(token, monkeypatch):
    """A token that goes between the approval's check and its signature: the signature
    fails with a clear error, the approval stores nothing, and the next approval after the
    token's return opens a new session."""
    init_token_ca("p256")
    approve_server("one.example.test")  # the session and the key's handle are pooled
    req = services.submit_request(
        profile="server", csr=make_csr(cn="two.example.test"), requester_email="o@example.test"
    )
    backend = keys.backends["pkcs11"]
    monkeypatch.setattr(type(backend), "check_usable", lambda self, ca: None)
    token.delete()
    with pytest.raises(services.CAUnavailable, match=r"failed while signing .* removed"):
        services.approve_request(req, agent=None)
    _assert_nothing_stored(req)


@pytest.mark.django_db
def test_a_ca_row_pointed_at_another_key_does_not_sign(token):
    """A CA row whose reference was changed to another key of the token (say, its OCSP
    responder's or another CA's) is refused: the key must match the CA certificate."""
    ca = init_token_ca("p256", "--key-label", "first")
    other = init_token_ca("p256", "--key-label", "second", "--force")
    approve_server()  # the other CA's key is found and kept in the pooled session
    ca.key_filename = other.key_filename
    backend = keys.backend_for(ca)
    with pytest.raises(pki.CAError, match="does not match the certificate of CA"):
        backend.check_usable(ca)
    builder = pki.ocsp_responder_builder(
        ca_cert=ca.certificate,
        public_key=pki.generate_private_key("p256").public_key(),
        validity_days=1,
    )
    with pytest.raises(pki.CAError, match="does not match the certificate of CA"):
        backend.sign_certificate(ca, builder)


@pytest.mark.django_db
def test_the_pin_is_nowhere_in_the_database_or_output(token, settings, capsys):
    """After a CA is made and used, no row of the database and no command output holds the
    PIN: the CA row names the token and the key only."""
    from io import StringIO

    from django.core import serializers

    out = StringIO()
    call_command("init_ca", "--subject", SUBJECT, "--key-backend", "pkcs11", stdout=out, stderr=out)
    approve_server()
    call_command("show_ca", "--json", stdout=out)
    dump = serializers.serialize(
        "json",
        [
            *CertificateAuthority.objects.all(),
            *Certificate.objects.all(),
            *AuditEvent.objects.all(),
        ],
    )
    assert token.pin not in dump
    assert token.pin not in out.getvalue() + "".join(capsys.readouterr())


def test_healthz_checks_tokens_where_a_module_is_configured(settings):
    """The token check joins /healthz in a deployment that names a PKCS#11 module (in
    PKCS11_MODULE or a pkcs11 backend's OPTIONS), and not elsewhere."""
    from requests_app.keys.pkcs11 import tokens_configured

    settings.PKCS11_MODULE = ""
    assert not tokens_configured()
    settings.CA_KEY_BACKENDS = settings.CA_KEY_BACKENDS | {
        "hsm2": {
            "BACKEND": "requests_app.keys.pkcs11.PKCS11Backend",
            "OPTIONS": {"module": "/usr/lib/x.so"},
        }
    }
    assert tokens_configured()
    settings.PKCS11_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
    assert tokens_configured()


@pytest.mark.django_db
def test_ocsp_without_the_token_answers_internal_error(token):
    """With the token gone an OCSP request gets an unsigned internalError answer, not a 500
    and not an answer signed by anything else."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509 import ocsp

    from requests_app.revocation.ocsp import respond

    ca = init_token_ca("p256")
    cert = approve_server()
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(cert.x509, ca.certificate, hashes.SHA1())  # noqa: S303 - OCSP's CertID
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    good = ocsp.load_der_ocsp_response(respond(request))
    assert good.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    token.delete()
    failed = ocsp.load_der_ocsp_response(respond(request))
    assert failed.response_status == ocsp.OCSPResponseStatus.INTERNAL_ERROR


@pytest.mark.django_db
def test_no_public_method_returns_a_private_key_object(token, monkeypatch):
    """Every public method of the PKCS#11 backend, run through a CA's life (create, issue,
    CRL, OCSP responder, OCSP answer, location, check, close), returns certificates, bytes,
    text or NewKeys, never a key object that signs (not even the token key's wrapper)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509 import ocsp

    from requests_app.keys.pkcs11 import PKCS11Backend
    from requests_app.revocation.ocsp import respond

    returned: dict[str, list] = {}
    names = [
        name
        for name, member in vars(PKCS11Backend).items()
        if not name.startswith("_") and callable(member)
    ]
    for name in names:
        real = getattr(PKCS11Backend, name)

        def recording(self, *args, _name=name, _real=real, **kwargs):
            value = _real(self, *args, **kwargs)
            returned.setdefault(_name, []).append(value)
            return value

        monkeypatch.setattr(PKCS11Backend, name, recording)

    ca = init_token_ca("p256")
    cert = approve_server()
    services.publish_crl(ca)
    services.create_ocsp_responder(validity_days=7)
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(cert.x509, ca.certificate, hashes.SHA1())  # noqa: S303 - OCSP's CertID
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    assert respond(request)
    backend = keys.backend_for(ca)
    backend.key_location(ca)
    keys.reset()
    assert {"generate_key", "sign_with_new_key", "key_reference", "store_key"} <= set(returned)
    assert {"check_usable", "sign_certificate", "sign_crl", "sign_ocsp_response"} <= set(returned)
    assert {"store_ocsp_responder", "key_location", "close"} <= set(returned)
    for name, values in returned.items():
        for value in values:
            assert not isinstance(value, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey), name
    for new_key in returned["generate_key"]:
        assert isinstance(new_key, keys.NewKey)
        assert "pkcs11" not in repr(new_key).lower() and token.pin not in repr(new_key)
