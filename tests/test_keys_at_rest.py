"""Keys at rest: CA and OCSP responder key files use PBKDF2-HMAC-SHA256 with 600,000 rounds;
files written by the old code (2,048 rounds) still open, and rewrap_keys upgrades them, once."""

from __future__ import annotations

import re
import subprocess

import pytest
from django.core.management import CommandError, call_command

from requests_app import keys, pki, services
from requests_app.models import AuditEvent
from tests.helpers.csrs import make_csr
from tests.helpers.keys import key_dir, key_path, read_ca_key

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _production_rounds(settings):
    settings.CA_KEY_KDF_ROUNDS = 600_000


def kdf_of(path) -> tuple[str, int]:
    """The PRF and iteration count of a PKCS#8 file, as openssl asn1parse reads them."""
    out = subprocess.run(
        ["openssl", "asn1parse", "-in", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert ":PBES2" in out and ":PBKDF2" in out, out
    iterations = re.search(r"INTEGER\s+:([0-9A-F]+)", out.split(":PBKDF2", 1)[1])
    prf = re.search(r"OBJECT\s+:(hmacWith\w+)", out)
    return (prf.group(1) if prf else "hmacWithSHA1"), int(iterations.group(1), 16)


def write_old_format(path, key, passphrase):
    """What the code before this change wrote: cryptography's BestAvailableEncryption."""
    path.write_bytes(pki.encrypt_private_key(key, passphrase))
    path.chmod(0o600)


def approve_one(agent, cn="k.example.test"):
    req = services.submit_request(
        profile="server", csr=make_csr(cn=cn), requester_email="o@example.test"
    )
    return services.approve_request(req.public_id, agent=agent)


def test_a_new_ca_key_file_uses_600000_rounds_of_sha256(ca):
    """init_ca's key file: PBES2, PBKDF2-HMAC-SHA256, 600,000 rounds, AES-256-CBC, mode 0600."""
    path = key_path(ca)
    assert kdf_of(path) == ("hmacWithSHA256", 600_000)
    assert (
        "aes-256-cbc"
        in subprocess.run(
            ["openssl", "asn1parse", "-in", str(path)], capture_output=True, text=True
        ).stdout
    )
    assert path.stat().st_mode & 0o777 == 0o600
    # openssl opens it with the passphrase, and not without the right one.
    ok = subprocess.run(
        ["openssl", "pkey", "-in", str(path), "-passin", "pass:test-passphrase-not-secret"],
        capture_output=True,
    )
    assert ok.returncode == 0
    bad = subprocess.run(
        ["openssl", "pkey", "-in", str(path), "-passin", "pass:wrong"], capture_output=True
    )
    assert bad.returncode != 0


def test_an_ocsp_responder_key_file_is_strong_too(ca):
    """The delegated responder's key is written with the same KDF."""
    services.create_ocsp_responder(ca=ca, actor=None)
    (responder_key,) = key_dir().glob(f"ocsp-{ca.pk}-*.key.pem")
    assert kdf_of(responder_key) == ("hmacWithSHA256", 600_000)


def test_an_old_key_file_still_opens_and_rewrap_upgrades_it_once(ca, agent, capsys, settings):
    """A 2,048-round file signs; rewrap_keys makes it 600,000 rounds; a second run does not."""
    path = key_path(ca)
    key = read_ca_key(ca)
    path.unlink()
    write_old_format(path, key, settings.CA_KEY_PASSPHRASE)
    assert kdf_of(path) == ("hmacWithSHA256", 2048)
    keys.reset()
    approve_one(agent, "old.example.test")  # the old file opens

    call_command("rewrap_keys")
    out = capsys.readouterr().out
    assert f"{path.name}: PBKDF2-SHA256 2,048 rounds -> PBKDF2-SHA256 600,000 rounds" in out
    assert kdf_of(path) == ("hmacWithSHA256", 600_000)
    assert path.stat().st_mode & 0o777 == 0o600
    assert pki.same_public_key(read_ca_key(ca), key)
    keys.reset()
    approve_one(agent, "new.example.test")  # and the rewrapped one too

    before = path.read_bytes()
    call_command("rewrap_keys")
    assert "0 of 1 key files rewrapped" in capsys.readouterr().out
    assert path.read_bytes() == before
    rows = AuditEvent.objects.filter(action="keys_rewrapped").order_by("seq")
    assert [row.details["rewrapped"] for row in rows] == [[f"default:{path.name}"], []]
    call_command("verify_audit")


def test_rewrap_under_a_new_passphrase(ca, agent, monkeypatch, settings, capsys):
    """--new-passphrase-env re-encrypts every file under the new passphrase; run twice, once."""
    responder = services.create_ocsp_responder(ca=ca, actor=None)
    assert responder
    new = "a-brand-new-ca-passphrase-of-length"
    monkeypatch.setenv("NEW_CA_PASS", new)
    call_command("rewrap_keys", "--new-passphrase-env", "NEW_CA_PASS")
    assert "2 of 2 key files rewrapped" in capsys.readouterr().out
    for path in key_dir().glob("*.key.pem"):
        pki.load_private_key(path.read_bytes(), new)
        with pytest.raises(pki.CAError):
            pki.load_private_key(path.read_bytes(), settings.CA_KEY_PASSPHRASE)
    call_command("rewrap_keys", "--new-passphrase-env", "NEW_CA_PASS")
    assert "0 of 2 key files rewrapped" in capsys.readouterr().out
    settings.CA_KEY_PASSPHRASE = new
    approve_one(agent)


def test_rewrap_with_the_wrong_passphrase_changes_nothing(ca, settings):
    """When a file does not open, no file is written and no audit row is kept."""
    path = key_path(ca)
    before = path.read_bytes()
    settings.CA_KEY_PASSPHRASE = "not-the-passphrase-of-these-keys"
    with pytest.raises(CommandError, match="does not open with CA_KEY_PASSPHRASE"):
        call_command("rewrap_keys")
    assert path.read_bytes() == before
    assert not AuditEvent.objects.filter(action="keys_rewrapped").exists()


def test_a_short_new_passphrase_is_refused(ca, monkeypatch):
    """A new passphrase under 20 characters is refused before any file is touched."""
    monkeypatch.setenv("SHORT", "short")
    before = key_path(ca).read_bytes()
    with pytest.raises(CommandError, match="at least 20 characters"):
        call_command("rewrap_keys", "--new-passphrase-env", "SHORT")
    assert key_path(ca).read_bytes() == before


def test_key_encryption_reads_what_a_file_uses():
    """The PKCS#8 reader names the KDF and rounds of each kind of file, without decrypting."""
    key = pki.generate_private_key("p256")
    strong = pki.key_encryption(pki.encrypt_key_strongly(key, "pw", rounds=600_000))
    weak = pki.key_encryption(pki.encrypt_private_key(key, "pw"))
    assert (strong.kdf, strong.rounds, strong.prf) == ("pbkdf2", 600_000, "hmacWithSHA256")
    assert strong.strong() and not weak.strong()
    assert pki.key_encryption(b"not a key").kdf == "unknown"


def test_production_refuses_weak_key_file_rounds(settings):
    """A system check error when DEBUG is off and CA_KEY_KDF_ROUNDS is below 600,000."""
    from requests_app.keys.checks import check_key_file_kdf

    settings.DEBUG = False
    settings.CA_KEY_KDF_ROUNDS = 2048
    assert [e.id for e in check_key_file_kdf()] == ["ca.E013"]
    settings.CA_KEY_KDF_ROUNDS = 600_000
    assert check_key_file_kdf() == []
