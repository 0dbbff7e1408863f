"""What the portal hands out works in real TLS: a server certificate and a .p12 client identity."""

from __future__ import annotations

import os
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from django.core.cache import cache
from django.urls import reverse

from requests_app import pki, services
from requests_app.models import CertificateRequest
from tests.helpers.csrs import make_csr, openssl_csr
from tests.helpers.mailbox import confirmed
from tests.helpers.tls import (
    client_context,
    handshake,
    p12_to_pem_files,
    server_context,
)

PASSPHRASE = "tls handshake passphrase"


@pytest.fixture(autouse=True)
def _empty_cache():
    """Throttle counters live in the cache, which outlives each test's database."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _localhost_is_a_server_name(settings):
    """These tests serve TLS on localhost: a single-label name, which the server profile
    takes only when allow_single_label_names is set (issue 12)."""
    settings.CA_PROFILES = {"server": {"allow_single_label_names": True}}


def _ca_file(client, ca, directory: Path) -> Path:
    path = directory / "ca.pem"
    path.write_bytes(client.get(reverse("ca_certificate", args=[ca.pk, "pem"])).content)
    return path


def _server_identity(ca, agent, directory: Path) -> tuple[Path, Path]:
    """A server certificate for tls.example.test, issued directly, with its key: fullchain, key."""
    key = pki.generate_private_key("p256")
    req = services.submit_request(
        profile="server",
        csr=make_csr(cn="tls.example.test", key=key),
        requester_email="ops@example.test",
    )
    cert = services.approve_request(req, agent=agent)
    chain, key_path = directory / "server-fullchain.pem", directory / "server.key"
    chain.write_text(pki.to_fullchain_pem(cert.chain))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return chain, key_path


def test_server_certificate_from_the_pages_serves_tls(client, ca, agent, tmp_path):
    """An openssl CSR enrolled on the page gives a full chain that openssl verifies and that a
    client trusting only the CA accepts by hostname."""
    csr = openssl_csr(tmp_path, subject="/CN=tls.example.test", sans="DNS:tls.example.test")
    response = client.post(
        reverse("enroll", args=["server"]),
        {"csr": csr.read_text(), "requester_email": "ops@example.test", "requester_name": "Ops"},
    )
    assert response.status_code == 302
    cert = services.approve_request(CertificateRequest.objects.get(), agent=agent)
    fullchain = tmp_path / "fullchain.pem"
    url = reverse("certificate_download", args=[cert.serial, "chain"])
    fullchain.write_bytes(client.get(url).content)
    ca_file = _ca_file(client, ca, tmp_path)

    verify = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(ca_file),
            "-verify_hostname",
            "tls.example.test",
            fullchain,
        ],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    server = server_context(fullchain, tmp_path / "req.key")
    assert handshake(server, client_context(ca_file), "tls.example.test").ok
    wrong_name = handshake(server, client_context(ca_file), "other.example.test")
    assert isinstance(wrong_name.client_error, ssl.SSLCertVerificationError)


def test_p12_from_the_pages_is_a_tls_client_identity(client, ca, agent, tmp_path, settings):
    """A key made by the portal, downloaded as .p12 with the passphrase, opens with openssl and
    logs in to a TLS server that requires client certificates from this CA."""
    settings.SERVER_KEY_TYPE = "p256"
    enroll = client.post(
        reverse("enroll_server_key", args=["user"]),
        {
            "requester_name": "Ada Lovelace",
            "requester_email": "ada@example.test",
            "passphrase": PASSPHRASE,
            "passphrase_confirm": PASSPHRASE,
        },
    )
    assert enroll.status_code == 302
    cert = services.approve_request(confirmed(CertificateRequest.objects.get()), agent=agent)
    response = client.post(
        reverse("certificate_pkcs12", args=[cert.serial]),
        {"passphrase": PASSPHRASE, "pkcs12_format": "modern"},
    )
    p12 = tmp_path / "ada.p12"
    p12.write_bytes(response.content)

    info = subprocess.run(
        ["openssl", "pkcs12", "-in", str(p12), "-info", "-noout", "-passin", "env:P12PASS"],
        capture_output=True,
        text=True,
        env={**os.environ, "P12PASS": PASSPHRASE},
    )
    assert info.returncode == 0, info.stderr
    assert "MAC: sha256" in info.stderr
    assert "AES-256-CBC" in info.stderr

    ca_file = _ca_file(client, ca, tmp_path)
    fullchain, server_key = _server_identity(ca, agent, tmp_path)
    server = server_context(fullchain, server_key, client_ca=ca_file)
    client_cert, client_key = p12_to_pem_files(response.content, PASSPHRASE, tmp_path)
    accepted = handshake(
        server, client_context(ca_file, cert=client_cert, key=client_key), "tls.example.test"
    )
    assert accepted.ok, accepted
    assert accepted.client_cert["subject"] == ((("commonName", "Ada Lovelace"),),)
    assert accepted.client_cert["subjectAltName"] == (("email", "ada@example.test"),)

    refused = handshake(server, client_context(ca_file), "tls.example.test")
    assert not refused.ok
    assert refused.server_error is not None
