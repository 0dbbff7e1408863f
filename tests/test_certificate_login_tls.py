"""Certificate login end to end: a real nginx on loopback terminates TLS, asks for a client
certificate and passes it to the portal; the portal logs in the agent of a linked agent
certificate and refuses every other one. A forged header straight to the portal logs nobody
in. And gunicorn's own TLS hands the portal the certificate it verified."""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import json
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode, urlparse

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.contrib.sessions.models import Session

from requests_app import agent_auth, pki, services
from requests_app.models import AuditEvent
from tests.helpers import certs
from tests.helpers.agent_certs import (
    backdated_agent_certificate,
    escaped,
    issue_agent_certificate,
    make_agent,
    stranger_certificate,
    write_identity,
)
from tests.helpers.csrs import make_csr
from tests.helpers.nginx import Nginx, nginx_binary
from tests.helpers.servers import free_port

pytestmark = [
    pytest.mark.usefixtures("empty_cache"),
    pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (.ci/run does)"),
]

LOGIN = "/accounts/login/certificate/"


class Browser:
    """A client that keeps cookies, presents a client certificate if given, and connects
    from a chosen local address; it does not follow redirects."""

    def __init__(self, base: str, *, context: ssl.SSLContext | None = None, source: str = ""):
        parsed = urlparse(base)
        self.host, self.port, self.tls = parsed.hostname, parsed.port, parsed.scheme == "https"
        self.context, self.source = context, source
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, data: dict | None = None, headers=None):
        source = (self.source, 0) if self.source else None
        if self.tls:
            conn = http.client.HTTPSConnection(
                self.host, self.port, context=self.context, timeout=10, source_address=source
            )
        else:
            conn = http.client.HTTPConnection(
                self.host, self.port, timeout=10, source_address=source
            )
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if data is not None:
            body = urlencode(data)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        for cookie in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = cookie.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        content = response.read().decode(errors="replace")
        conn.close()
        return response.status, response.headers, content

    def certificate_login(self, headers=None):
        """GET the page (for the CSRF cookie), then POST the login form with its token."""
        status, _, page = self.request("GET", LOGIN, headers=headers)
        if status != 200:
            return status, {}, page
        token = self.cookies["csrftoken"]
        return self.request("POST", LOGIN, {"csrfmiddlewaretoken": token}, headers=headers)


def _server_identity(agent, directory: Path) -> tuple[Path, Path]:
    """nginx's certificate for 127.0.0.1, from the portal's CA."""
    key = pki.generate_private_key("p256")
    csr = make_csr(
        cn="portal.example.test", key=key, sans=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    req = services.submit_request(profile="server", csr=csr, requester_email="ops@example.test")
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


def _client(ca_file: Path, identity: tuple[Path, Path] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    if identity is not None:
        context.load_cert_chain(*identity)
    return context


def _session_mark(browser: Browser):
    session = Session.objects.get(session_key=browser.cookies["sessionid"]).get_decoded()
    return session.get("_auth_user_id"), session.get(agent_auth.SESSION_KEY)


def _last_refusal() -> str:
    event = AuditEvent.objects.filter(action="agent_certificate_login_refused").last()
    return event.details["reason"] if event else ""


def test_certificate_login_through_nginx(live_server, settings, tmp_path, ca, agent, monkeypatch):
    """Through nginx with client certificates: the portal's agent certificate logs its agent
    in (and reaches the queue); after revocation, expired, from another CA, a user
    certificate, and no certificate at all are refused; a forged header sent straight to
    the portal is ignored."""
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    bob = make_agent("bob")
    fullchain, server_key = _server_identity(bob, tmp_path)
    ca_file = certs.write_pem(tmp_path / "portal-ca.pem", ca.certificate)
    # nginx trusts both CAs, so that the stranger's certificate reaches the portal's own check.
    bundle = certs.write_pem(tmp_path / "client-cas.pem", ca.certificate, certs.root("p256")[1])

    good, good_key = issue_agent_certificate(agent, bob)
    user_key = pki.generate_private_key("p256")
    user_cert = services.issue_certificate(
        profile="user", csr=make_csr(cn="Ada", key=user_key), requester_email="ada@example.test"
    )
    stranger, stranger_key = stranger_certificate()
    expired, expired_key = backdated_agent_certificate(make_agent("carol"))
    identities = {
        "good": write_identity(tmp_path, "good", good, good_key),
        "user": write_identity(tmp_path, "user", user_cert, user_key),
        "stranger": write_identity(tmp_path, "stranger", stranger, stranger_key),
        "expired": write_identity(tmp_path, "expired", expired, expired_key),
    }

    with Nginx(
        upstream=live_server.url, tmp=tmp_path, tls=(fullchain, server_key), client_ca=bundle
    ) as proxy:

        def browser(name: str | None) -> Browser:
            identity = identities[name] if name else None
            return Browser(proxy.url, context=_client(ca_file, identity))

        # The agent certificate logs in, as both factors, and the queue opens.
        agent_browser = browser("good")
        status, headers, _ = agent_browser.certificate_login()
        assert status == 302, _last_refusal()
        assert headers["Location"] == "/agent/"
        assert _session_mark(agent_browser) == (
            str(agent.pk),
            {"user": agent.pk, "method": "certificate"},
        )
        status, _, page = agent_browser.request("GET", "/agent/")
        assert status == 200
        assert "<h1>Requests</h1>" in page
        login = AuditEvent.objects.get(action="agent_certificate_login")
        assert (login.actor, login.certificate, login.details["source"]) == (agent, good, "proxy")

        # No certificate: nginx passes the header empty.
        assert browser(None).certificate_login()[0] == 403
        assert _last_refusal() == "no_certificate"
        # Another CA (nginx accepts it: both CAs are in its bundle).
        assert browser("stranger").certificate_login()[0] == 403
        assert _last_refusal() == "other_ca"
        # A user certificate from this portal.
        assert browser("user").certificate_login()[0] == 403
        assert _last_refusal() == "wrong_profile"
        # Expired in fact: nginx's own verification already refuses the handshake's certificate.
        refusals = AuditEvent.objects.filter(action="agent_certificate_login_refused").count()
        status, _, page = browser("expired").certificate_login()
        assert status == 400 and "certificate" in page.lower()
        assert AuditEvent.objects.filter(action="agent_certificate_login_refused").count() == (
            refusals
        )
        # Expired by the portal's clock (nginx still accepts it): the portal refuses.
        later = good.not_after + dt.timedelta(days=1)
        monkeypatch.setattr(pki, "utcnow", lambda: later)
        assert browser("good").certificate_login()[0] == 403
        assert _last_refusal() == "expired"
        monkeypatch.undo()
        # The same agent certificate after revocation.
        services.revoke_certificate(good, reason="keyCompromise", actor=bob)
        again = browser("good")
        status, _, page = again.certificate_login()
        assert status == 403 and "revoked" in page
        assert _last_refusal() == "revoked"
        assert "sessionid" not in again.cookies

    # Straight to the portal from 127.0.0.5 (not a trusted proxy), with a forged header
    # holding a good certificate: ignored.
    fresh, _ = issue_agent_certificate(agent, bob)
    forger = Browser(live_server.url, source="127.0.0.5")
    status, _, _ = forger.certificate_login(headers={"X-SSL-Client-Cert": escaped(fresh)})
    assert status == 403
    assert _last_refusal() == "untrusted_proxy"
    assert "sessionid" not in forger.cookies
    assert AuditEvent.objects.filter(action="agent_certificate_login").count() == 1


GUNICORN_APP = """
import json, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ca_portal.settings_test")
import django
django.setup()
from django.core.handlers.wsgi import WSGIRequest
from requests_app import pki
from requests_app.client_certificates import presented_certificate

def application(environ, start_response):
    pem, source = presented_certificate(WSGIRequest(environ))
    body = json.dumps(
        {"source": source, "fingerprint": pki.sha256_hex(pki.load_pem(pem)) if pem else None}
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
"""


def test_gunicorn_tls_passes_the_verified_client_certificate(tmp_path, ca, agent):
    """gunicorn with --ca-certs and --cert-reqs 1 (optional) hands the portal the client
    certificate its handshake verified (environ["gunicorn.socket"]), as source "tls"; a client
    without one is "none", and a forged header from this untrusted peer is not believed."""
    bob = make_agent("bob")
    fullchain, server_key = _server_identity(bob, tmp_path)
    ca_file = certs.write_pem(tmp_path / "portal-ca.pem", ca.certificate)
    good, good_key = issue_agent_certificate(agent, bob)
    identity = write_identity(tmp_path, "good", good, good_key)
    (tmp_path / "certapp.py").write_text(GUNICORN_APP)
    port = free_port()
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--certfile",
            str(fullchain),
            "--keyfile",
            str(server_key),
            "--ca-certs",
            str(ca_file),
            "--cert-reqs",
            "1",
            "--pythonpath",
            f"{tmp_path},{root}",
            "certapp:application",
        ],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(port, process)

        def ask(identity_files, headers=None) -> dict:
            browser = Browser(f"https://127.0.0.1:{port}", context=_client(ca_file, identity_files))
            status, _, body = browser.request("GET", "/", headers=headers)
            assert status == 200, body
            return json.loads(body)

        assert ask(identity) == {"source": "tls", "fingerprint": good.fingerprint_sha256}
        assert ask(None) == {"source": "none", "fingerprint": None}
        forged = ask(None, headers={"X-SSL-Client-Cert": escaped(good)})
        assert forged == {"source": "untrusted", "fingerprint": None}
    finally:
        process.terminate()
        process.wait(10)


def _wait_for(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {process.stderr.read().decode()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("gunicorn did not start within 30 s")
