"""The real client: certmonger (session mode, its own D-Bus) enrolls against a live ca-portal."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from django.test import Client
from django.urls import reverse

from requests_app import pki, services
from requests_app.models import CertificateRequest
from tests.helpers.mfa import login_verified

HELPERS = ("/usr/lib/certmonger/dogtag-submit", "/usr/libexec/certmonger/dogtag-submit")
HELPER = next((path for path in HELPERS if os.access(path, os.X_OK)), None)
MISSING = [tool for tool in ("certmonger", "getcert", "dbus-daemon") if not shutil.which(tool)]
if HELPER is None:
    MISSING.append("dogtag-submit")

pytestmark = [
    pytest.mark.skipif(bool(MISSING), reason=f"needs certmonger and dbus ({', '.join(MISSING)})"),
    pytest.mark.django_db(transaction=True),
]

WAIT = 30  # seconds for any one state change; certmonger acts within a second or two

# A session bus without service activation: a getcert that runs before our daemon has
# its bus name would otherwise start another certmonger, with state in ~/.config.
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class Certmonger:
    """A private D-Bus session bus and a certmonger daemon on it, state kept under `root`."""

    def __init__(self, root: Path):
        self.root = root
        for name in ("requests", "cas", "local"):
            (root / name).mkdir(parents=True)
        self.env = {
            **os.environ,
            "CERTMONGER_REQUESTS_DIR": str(root / "requests"),
            "CERTMONGER_CAS_DIR": str(root / "cas"),
            "CERTMONGER_LOCAL_CA_DIR": str(root / "local"),
        }
        self.bus_pid: int | None = None
        self.daemon: subprocess.Popen | None = None
        self.log = None

    def start(self) -> Certmonger:
        config = self.root / "bus.conf"
        config.write_text(BUS_CONFIG.format(socket=self.root / "bus"))
        out = subprocess.run(
            [
                "dbus-daemon",
                f"--config-file={config}",
                "--fork",
                "--nopidfile",
                "--print-address=1",
                "--print-pid=1",
            ],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.split()
        self.env["DBUS_SESSION_BUS_ADDRESS"], self.bus_pid = out[0], int(out[1])
        self.log = (self.root / "certmonger.log").open("w")
        self.daemon = subprocess.Popen(
            ["certmonger", "-s", "-n", "-d", "3"],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.wait_for(lambda: self.getcert("list-cas", check=False).returncode == 0, "start")
        return self

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.terminate()
            try:
                self.daemon.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait(timeout=5)
        if self.bus_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.bus_pid, signal.SIGTERM)
        if self.log is not None:
            self.log.close()

    def getcert(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["getcert", args[0], "-s", *args[1:]],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"getcert {' '.join(args)}: {result.stdout}{result.stderr}")
        return result

    def wait_for(self, condition, what: str):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if value := condition():
                return value
            time.sleep(0.25)
        log = (self.root / "certmonger.log").read_text()[-3000:]
        raise AssertionError(f"certmonger did not {what} within {WAIT} s; its log ends:\n{log}")

    def ca_profiles(self, ca: str) -> list[str]:
        """The profiles certmonger read from the CA's profileList (0.79's getcert hides them)."""
        for path in (self.root / "cas").iterdir():
            lines = path.read_text().splitlines()
            if f"id={ca}" in lines:
                found = [line for line in lines if line.startswith("ca_profiles=")]
                return found[0].removeprefix("ca_profiles=").split(",") if found else []
        return []

    def listing(self, tracking_id: str) -> str:
        return self.getcert("list", "-i", tracking_id).stdout

    def wait_for_state(self, tracking_id: str, state: str) -> str:
        """Poll `getcert list` until the tracking request is in `state`; return the listing."""

        def reached() -> str | None:
            text = self.listing(tracking_id)
            return text if f"status: {state}\n" in text else None

        return self.wait_for(reached, f"reach {state} for {tracking_id}")


@pytest.fixture
def certmonger(tmp_path, live_server, ca):
    """certmonger with the portal added as the CA "portal" (getcert add-ca)."""
    daemon = Certmonger(tmp_path / "cm")
    try:
        daemon.start()
        daemon.getcert("add-ca", "-c", "portal", "-e", f"{HELPER} -E {live_server.url}/ca/ee/ca")
        yield daemon
    finally:
        daemon.stop()


def field(listing: str, name: str) -> str:
    match = re.search(rf"^\s*{name}: (.*)$", listing, re.MULTILINE)
    assert match, f"no {name} in:\n{listing}"
    return match.group(1)


def request_certificate(certmonger, tmp_path, tracking_id: str, host: str) -> tuple[Path, Path]:
    cert, key = tmp_path / f"{tracking_id}.pem", tmp_path / f"{tracking_id}.key"
    certmonger.getcert(
        "request", "-c", "portal", "-I", tracking_id, "-f", str(cert), "-k", str(key),
        "-N", f"CN={host}", "-D", host, "-T", "caServerCert",
    )  # fmt: skip
    return cert, key


def the_request(subject: str, **filters) -> CertificateRequest:
    return CertificateRequest.objects.filter(subject=subject, **filters).latest("submitted_at")


def test_enroll_approve_install_and_renew(certmonger, tmp_path, ca, agent):
    """certmonger lists our profiles, waits in the queue, installs the approved certificate,
    and after `getcert resubmit` installs an approved renewal with the same key."""
    profiles = certmonger.wait_for(lambda: certmonger.ca_profiles("portal"), "read profileList")
    assert profiles == ["caServerCert", "caECServerCert", "caUserCert", "caECUserCert"]

    cert_file, key_file = request_certificate(certmonger, tmp_path, "www", "www.example.test")
    certmonger.wait_for_state("www", "CA_WORKING")
    req = the_request("CN=www.example.test")
    assert (req.status, req.channel, req.profile) == ("pending", "dogtag", "server")
    agent_client = Client()
    login_verified(agent_client, agent)
    assert req.display_id in agent_client.get(reverse("agent:request_list")).content.decode()

    first = services.approve_request(req, agent=agent)
    certmonger.getcert("refresh", "-i", "www")
    listing = certmonger.wait_for_state("www", "MONITORING")
    assert field(listing, "subject") == "CN=www.example.test"
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(ca.certificate_pem)
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca_file), str(cert_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    installed = pki.load_pem(cert_file.read_bytes())
    assert installed == first.x509
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert pki.same_public_key(installed.public_key(), key)

    # Renewal: certmonger sends renewal=true and the serial, no CSR; an agent must approve it.
    certmonger.getcert("resubmit", "-i", "www")
    certmonger.wait_for(
        lambda: CertificateRequest.objects.filter(renewal_of=first).exists(), "ask for a renewal"
    )
    renewal = CertificateRequest.objects.get(renewal_of=first)
    assert (renewal.status, renewal.channel, renewal.csr_pem) == ("pending", "dogtag", "")
    certmonger.wait_for_state("www", "CA_WORKING")

    second = services.approve_request(renewal, agent=agent)
    certmonger.getcert("refresh", "-i", "www")
    certmonger.wait_for(
        lambda: pki.load_pem(cert_file.read_bytes()) == second.x509, "install the renewal"
    )
    certmonger.wait_for_state("www", "MONITORING")
    renewed = pki.load_pem(cert_file.read_bytes())
    assert renewed.serial_number != installed.serial_number
    assert renewed.subject == installed.subject
    assert pki.same_public_key(renewed.public_key(), key)


def test_rejected_request_ends_ca_rejected_with_our_reason(certmonger, tmp_path, agent):
    """An agent's rejection reaches certmonger as CA_REJECTED, the reason in ca-error."""
    request_certificate(certmonger, tmp_path, "bad", "bad.example.test")
    certmonger.wait_for_state("bad", "CA_WORKING")
    req = the_request("CN=bad.example.test")
    services.reject_request(req, agent=agent, reason="bad.example.test is not one of our hosts")
    certmonger.getcert("refresh", "-i", "bad")
    listing = certmonger.wait_for_state("bad", "CA_REJECTED")
    assert "bad.example.test is not one of our hosts" in field(listing, "ca-error")


def test_auto_approve_profile_installs_at_once(certmonger, tmp_path, settings):
    """With an auto_approve profile certmonger goes straight to MONITORING, no agent involved."""
    settings.CA_PROFILES = {"server": {"auto_approve": True}}
    cert_file, _ = request_certificate(certmonger, tmp_path, "auto", "auto.example.test")
    certmonger.wait_for_state("auto", "MONITORING")
    req = the_request("CN=auto.example.test")
    assert req.status == "complete"
    assert pki.load_pem(cert_file.read_bytes()) == req.certificate.x509
