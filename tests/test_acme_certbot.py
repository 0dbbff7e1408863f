"""certbot, the real client, against a live portal on loopback: registration with an agent's
EAB credentials, http-01 with certbot's standalone server, dns-01 for a wildcard through
hook scripts that update a local DNS server, forced renewal, and revocation that OCSP then
reports.

The portal is a real server process (gunicorn on a free port of 127.0.0.1, its own SQLite
file and CA, tests/helpers/portal_process.py), set up and inspected with manage.py as an
administrator would: ACME_HTTP01_ADDRESS/PORT send http-01 validation to certbot's
standalone server on another free port, and ACME_DNS_RESOLVER sends dns-01 lookups to
tests/helpers/dns.py's server, so nothing needs /etc/hosts or a public network. One portal
serves the module; each test makes its own binding and certbot directories.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from tests.helpers.certbot import CERTBOT, Certbot
from tests.helpers.dns import LocalDNS, query_txt
from tests.helpers.portal_process import PortalProcess
from tests.helpers.servers import free_port

OPENSSL = shutil.which("openssl")


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False, **kwargs)


@dataclass
class Portal:
    process: PortalProcess
    http01_port: int
    dns: LocalDNS
    ca_pem: Path

    @property
    def base(self) -> str:
        return self.process.base

    @property
    def directory(self) -> str:
        return f"{self.base}/acme/directory"

    def create_binding(self, *names: str, email: str = "ops@example.test") -> dict:
        """EAB credentials as an administrator makes them: create_acme_binding --json."""
        out = self.process.manage(
            "create_acme_binding", "--email", email, "--names", *names, "--json"
        ).stdout
        return json.loads(out)

    def binding(self, kid: str) -> dict:
        rows = json.loads(self.process.manage("list_acme_bindings", "--json").stdout)
        return next(row for row in rows if row["kid"] == kid)

    def certificate(self, cert: x509.Certificate) -> dict:
        """The portal's record of a certificate and the request it answered."""
        rows = self.process.query(
            "SELECT c.status, c.revocation_reason, r.channel, r.status"
            " FROM requests_app_certificate c"
            " LEFT JOIN requests_app_certificaterequest r ON r.certificate_id = c.id"
            " WHERE c.serial = ?",
            f"{cert.serial_number:x}",
        )
        assert rows, f"the portal has no certificate {cert.serial_number:x}"
        status, reason, channel, request_status = rows[0]
        return {
            "status": status,
            "reason": reason,
            "channel": channel,
            "request_status": request_status,
        }


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    """A portal process with a CA, whose ACME validation goes to loopback: http-01 to a free
    port (certbot's standalone server listens there), dns-01 to a local DNS server."""
    assert CERTBOT, "certbot is not installed (requirements-dev.txt)"
    assert OPENSSL, "openssl is not installed"
    tmp = tmp_path_factory.mktemp("acme-portal")
    http01_port = free_port()
    with LocalDNS(tmp / "zone.json") as dns:
        settings = {
            "ACME_REQUIRE_EAB": "True",
            "ACME_HTTP01_ADDRESS": "127.0.0.1",
            "ACME_HTTP01_PORT": str(http01_port),
            "ACME_ALLOW_PRIVATE_ADDRESSES": "True",
            "ACME_DNS_RESOLVER": dns.address,
        }
        with PortalProcess(tmp, **settings) as process:
            ca_pem = tmp / "ca.pem"
            process.manage("export_ca", "--output", str(ca_pem))
            yield Portal(process, http01_port, dns, ca_pem)


@pytest.fixture
def certbot(portal, tmp_path):
    return Certbot(tmp_path, directory=portal.directory, http01_port=portal.http01_port)


def register(certbot: Certbot, binding: dict) -> None:
    certbot.run(
        "register",
        "--eab-kid",
        binding["kid"],
        "--eab-hmac-key",
        binding["hmac_key"],
        "-m",
        binding["email"],
    )


def leaf(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def dns_names(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(san.get_values_for_type(x509.DNSName))


def openssl_verify(ca_pem: Path, live: Path) -> subprocess.CompletedProcess:
    return _run(
        [
            OPENSSL,
            "verify",
            "-CAfile",
            str(ca_pem),
            "-untrusted",
            str(live / "chain.pem"),
            "-purpose",
            "sslserver",
            str(live / "cert.pem"),
        ]
    )


def tls_handshake(ca_pem: Path, live: Path, hostname: str) -> subprocess.CompletedProcess:
    """openssl s_server with the installed certificate and key; openssl s_client connects
    by hostname (SNI and hostname check) trusting only the portal's CA."""
    port = free_port()
    server = subprocess.Popen(
        [
            OPENSSL,
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            "-cert",
            str(live / "fullchain.pem"),
            "-key",
            str(live / "privkey.pem"),
            "-www",
            "-quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            probe = _run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}"], input="")
            if probe.returncode == 0 or "CONNECTED" in probe.stdout:
                break
            assert server.poll() is None, server.stderr.read().decode()
            assert time.monotonic() < deadline, "openssl s_server did not start"
            time.sleep(0.05)
        return _run(
            [
                OPENSSL,
                "s_client",
                "-connect",
                f"127.0.0.1:{port}",
                "-servername",
                hostname,
                "-verify_hostname",
                hostname,
                "-CAfile",
                str(ca_pem),
                "-verify_return_error",
                "-brief",
            ],
            input="",
        )
    finally:
        server.terminate()
        server.wait(5)


def ocsp_status(ca_pem: Path, cert_pem: Path, base: str) -> str:
    result = _run(
        [
            OPENSSL,
            "ocsp",
            "-issuer",
            str(ca_pem),
            "-cert",
            str(cert_pem),
            "-url",
            f"{base}/ocsp",
            "-CAfile",
            str(ca_pem),
        ]
    )
    assert "Response verify OK" in result.stderr + result.stdout, result.stdout + result.stderr
    return result.stdout


def test_local_dns_server_answers_what_the_hook_scripts_write(certbot, portal):
    """The hook scripts certbot runs add and remove TXT records that the local DNS server
    then answers over UDP and TCP (and NXDOMAIN for a name it has none for)."""
    add, remove = certbot.dns_hooks(portal.dns.zone)
    env = {"CERTBOT_DOMAIN": "example.test", "CERTBOT_VALIDATION": "the-validation"}
    assert _run([add], env=env).returncode == 0
    name = "_acme-challenge.example.test"
    assert query_txt(portal.dns.address, name) == ["the-validation"]
    assert query_txt(portal.dns.address, name, tcp=True) == ["the-validation"]
    assert _run([remove], env=env).returncode == 0
    assert query_txt(portal.dns.address, name) == []


def test_register_http01_verify_handshake_renew_revoke_ocsp(portal, certbot):
    """An account bound with the agent's credentials gets a certificate for an approved name
    over http-01 (certbot's standalone server answers): installed, accepted by openssl
    verify, served in a TLS handshake by hostname; a forced renewal gets a new one; certbot's
    revoke makes OCSP answer revoked. Each is a CertificateRequest with channel acme."""
    binding = portal.create_binding("www.example.test")
    register(certbot, binding)
    assert len(certbot.accounts()) == 1
    assert portal.binding(binding["kid"])["status"] == "bound"

    certbot.run("certonly", "--standalone", "-d", "www.example.test")
    live = certbot.live("www.example.test")
    first = leaf(live / "cert.pem")
    assert dns_names(first) == ["www.example.test"]
    verified = openssl_verify(portal.ca_pem, live)
    assert verified.returncode == 0 and ": OK" in verified.stdout, verified.stdout + verified.stderr
    handshake = tls_handshake(portal.ca_pem, live, "www.example.test")
    assert handshake.returncode == 0, handshake.stdout + handshake.stderr
    assert "Verification: OK" in handshake.stdout + handshake.stderr
    issued = portal.certificate(first)
    assert issued["channel"] == "acme"
    assert issued["request_status"] == "complete"

    certbot.run("renew", "--force-renewal")
    renewed = leaf(live / "cert.pem")
    assert renewed.serial_number != first.serial_number
    assert dns_names(renewed) == ["www.example.test"]
    assert portal.certificate(renewed)["channel"] == "acme"
    assert openssl_verify(portal.ca_pem, live).returncode == 0

    assert "good" in ocsp_status(portal.ca_pem, live / "cert.pem", portal.base)
    certbot.run(
        "revoke",
        "--cert-path",
        str(live / "cert.pem"),
        "--reason",
        "keycompromise",
        "--no-delete-after-revoke",
    )
    revoked = portal.certificate(renewed)
    assert revoked["status"] == "revoked"
    assert revoked["reason"] == "keyCompromise"
    assert ": revoked" in ocsp_status(portal.ca_pem, live / "cert.pem", portal.base)
    # The first certificate was not touched by revoking its successor.
    assert portal.certificate(first)["status"] != "revoked"


def test_dns01_wildcard_through_manual_hooks(portal, certbot):
    """A wildcard name over dns-01: certbot's manual hooks put the validation into the local
    DNS server, the portal's resolver finds it there, the certificate names the wildcard,
    and the cleanup hook takes the record out again."""
    binding = portal.create_binding("*.example.test")
    register(certbot, binding)
    add, remove = certbot.dns_hooks(portal.dns.zone)
    certbot.run(
        "certonly",
        "--manual",
        "--preferred-challenges",
        "dns",
        "--manual-auth-hook",
        add,
        "--manual-cleanup-hook",
        remove,
        "--cert-name",
        "wildcard",
        "-d",
        "*.example.test",
    )
    live = certbot.live("wildcard")
    cert = leaf(live / "cert.pem")
    assert dns_names(cert) == ["*.example.test"]
    assert openssl_verify(portal.ca_pem, live).returncode == 0
    assert ("_acme-challenge.example.test.", "TXT") in portal.dns.resolver.queries
    assert portal.dns.txt("_acme-challenge.example.test") == []  # cleaned up
    assert portal.certificate(cert)["channel"] == "acme"


def test_register_without_or_with_wrong_eab_is_refused(portal, certbot):
    """certbot cannot make an account without EAB credentials, nor with a wrong HMAC key;
    the binding stays unused and nothing is issued."""
    binding = portal.create_binding("www.example.test", email="nobody@example.test")
    issued_before = portal.process.query("SELECT count(*) FROM requests_app_certificate")
    bare = certbot.run("register", "-m", "ops@example.test", check=False)
    assert bare.returncode != 0
    assert (
        "externalAccountRequired" in certbot.log_tail(400)
        or "external account" in (bare.stdout + bare.stderr).lower()
    )
    wrong_key = "A" * 43  # base64url of 32 zero-ish bytes: not this binding's key
    wrong = certbot.run(
        "register",
        "--eab-kid",
        binding["kid"],
        "--eab-hmac-key",
        wrong_key,
        "-m",
        "ops@example.test",
        check=False,
    )
    assert wrong.returncode != 0
    assert certbot.accounts() == []
    assert portal.binding(binding["kid"])["status"] == "unused"
    assert portal.process.query("SELECT count(*) FROM requests_app_certificate") == issued_before
