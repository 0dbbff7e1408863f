"""A live portal for the REST API's end-to-end tests: its TLS identity for nginx (a server
certificate for 127.0.0.1 from the portal's own CA), agents with a TOTP device, and plain
HTTP calls from a chosen local address (to reach the portal around its proxy)."""

from __future__ import annotations

import http.client
import ipaddress
import json
from pathlib import Path
from urllib.parse import urlparse

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from requests_app import pki, services
from tests.helpers.csrs import make_csr


def server_identity(approver, directory: Path) -> tuple[Path, Path]:
    """nginx's certificate for 127.0.0.1 (full chain, key), issued by the portal's CA."""
    key = pki.generate_private_key("p256")
    csr = make_csr(
        cn="portal.example.test", key=key, sans=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    req = services.submit_request(profile="server", csr=csr, requester_email="ops@example.test")
    cert = services.approve_request(req, agent=approver)
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


def call(
    base: str,
    method: str,
    path: str,
    *,
    body: object = None,
    headers: dict | None = None,
    source: str = "",
) -> tuple[int, dict | str]:
    """One JSON call over plain HTTP from `source` (a loopback address): (status, JSON or
    text). The body is sent as JSON with Content-Type application/json, as dogtag-pki does."""
    url = urlparse(base)
    conn = http.client.HTTPConnection(
        url.hostname, url.port, timeout=15, source_address=(source, 0) if source else None
    )
    sent = {"Accept": "application/json", "Content-Type": "application/json", **(headers or {})}
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=sent)
    response = conn.getresponse()
    text = response.read().decode(errors="replace")
    conn.close()
    try:
        return response.status, json.loads(text)
    except ValueError:
        return response.status, text
