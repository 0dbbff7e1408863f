"""Dogtag's REST client (`dogtag-pki`, module `pki`) against a live portal: connections,
CSRs made by `openssl req`, and the agent's basic-auth secret (password + current TOTP)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

try:  # requirements-clients.txt; python-ldap needs libldap2-dev/libsasl2-dev to build
    import pki
    import pki.cert
    import pki.client

    PKI_MISSING = ""
except ImportError as exc:  # pragma: no cover - CI installs it
    PKI_MISSING = f"dogtag-pki is not importable ({exc}); pip install -r requirements-clients.txt"

needs_pki = pytest.mark.skipif(bool(PKI_MISSING), reason=PKI_MISSING or "ok")
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def connection(live_url: str):
    """A PKIConnection to the live portal (plain http, the port as a string, as the client
    requires)."""
    parts = urlsplit(live_url)
    return pki.client.PKIConnection(
        protocol=parts.scheme, hostname=parts.hostname, port=str(parts.port)
    )


def cert_client(live_url: str, *, user: str | None = None, secret: str | None = None):
    conn = connection(live_url)
    if user is not None:
        conn.authenticate(user, secret)
    return pki.cert.CertClient(conn)


def openssl_csr(tmp_path: Path, *, cn: str, email: str | None = None, name: str = "req") -> str:
    """A P-256 CSR made by `openssl req` (PEM)."""
    key, csr = tmp_path / f"{name}.key", tmp_path / f"{name}.csr"
    command = [
        "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}",
    ]  # fmt: skip
    if email is None:
        command += ["-addext", f"subjectAltName=DNS:{cn}"]
    else:
        command += ["-addext", f"subjectAltName=email:{email}"]
    subprocess.run(command, check=True, capture_output=True, timeout=30)
    return csr.read_text()


def openssl_verify(tmp_path: Path, ca_pem: str, cert_pem: str) -> subprocess.CompletedProcess:
    ca_file, cert_file = tmp_path / "ca.pem", tmp_path / "leaf.pem"
    ca_file.write_text(ca_pem)
    cert_file.write_text(cert_pem)
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca_file), str(cert_file)],
        capture_output=True,
        text=True,
        timeout=30,
    )


AGENT_PASSWORD = "agent-pass-123"  # conftest's agent fixture


def agent_secret(device, password: str = AGENT_PASSWORD) -> str:
    """The basic-auth password of an agent with MFA: the password and the current code."""
    from tests.helpers.mfa import next_totp_code

    return password + next_totp_code(device)


def basic(user: str, secret: str) -> str:
    """An Authorization header value."""
    import base64

    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()
