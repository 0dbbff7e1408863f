"""Dogtag's own Python client, authenticated by a client certificate
(`PKIConnection.set_authentication_cert`), through a real nginx that terminates TLS, asks for
the certificate and passes it to the portal: an agent's linked certificate reviews and
approves a request made with `openssl req`, lists the queue, and revokes; a certificate that
is no agent's, and a forged header sent around nginx, change nothing."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from requests_app import pki as portal_pki
from requests_app import services
from requests_app.models import AuditEvent, CertificateRequest
from requests_app.rest import ids
from tests.helpers import certs
from tests.helpers.agent_certs import (
    escaped,
    issue_agent_certificate,
    make_agent,
    stranger_certificate,
    write_identity,
)
from tests.helpers.csrs import make_csr, openssl_csr
from tests.helpers.nginx import Nginx, nginx_binary
from tests.helpers.rest_live import call, server_identity

pki_client = pytest.importorskip(
    "pki.cert",
    reason="dogtag-pki is not installed (it needs python-ldap: apt-get install libldap2-dev "
    "libsasl2-dev, then pip install -r requirements-clients.txt; .ci/run does)",
)
from pki.client import PKIConnection  # noqa: E402

pytestmark = [
    pytest.mark.usefixtures("empty_cache"),
    pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (.ci/run does)"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
]


@pytest.fixture
def tls_portal(live_server, settings, tmp_path, ca, agent):
    """nginx with the portal's TLS certificate for 127.0.0.1, asking for client
    certificates from the portal's CA and from a stranger CA (so that the stranger's reaches
    the portal's own check), in front of a live portal that trusts it (TRUSTED_PROXIES)."""
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    bob = make_agent("bob")
    fullchain, server_key = server_identity(bob, tmp_path)
    ca_file = certs.write_pem(tmp_path / "portal-ca.pem", ca.certificate)
    bundle = certs.write_pem(tmp_path / "client-cas.pem", ca.certificate, certs.root("p256")[1])
    good, good_key = issue_agent_certificate(agent, bob)
    user_key = portal_pki.generate_private_key("p256")
    user_cert = services.issue_certificate(
        profile="user", csr=make_csr(cn="Ada", key=user_key), requester_email="ada@example.test"
    )
    stranger, stranger_key = stranger_certificate()
    identities = {
        "agent": write_identity(tmp_path, "agent", good, good_key),
        "user": write_identity(tmp_path, "user", user_cert, user_key),
        "stranger": write_identity(tmp_path, "stranger", stranger, stranger_key),
    }
    with Nginx(
        upstream=live_server.url, tmp=tmp_path, tls=(fullchain, server_key), client_ca=bundle
    ) as proxy:

        def client(identity: str | None) -> pki_client.CertClient:
            conn = PKIConnection(
                protocol="https",
                hostname="127.0.0.1",
                port=str(proxy.port),
                cert_paths=str(ca_file),
            )
            if identity:
                conn.set_authentication_cert(*map(str, identities[identity]))
            return pki_client.CertClient(conn)

        yield {
            "client": client,
            "ca_file": ca_file,
            "live": live_server.url,
            "agent_cert": good,
            "bob": bob,
        }


def _submit(client, tmp_path, cn: str) -> str:
    """A server request made with `openssl req`, submitted through the client; its ID."""
    csr = openssl_csr(tmp_path, subject=f"/CN={cn}", key_spec="ec:" + _p256(tmp_path))
    request = client.create_enrollment_request(
        "caServerCert",
        {
            "cert_request_type": "pkcs10",
            "cert_request": csr.read_text(),
            "requestor_name": "Ops",
            "requestor_email": "ops@example.test",
        },
    )
    infos = client.submit_enrollment_request(request)
    (info,) = infos.cert_request_info_list
    assert info.request_status == "pending"
    return info.request_id


def _p256(tmp_path) -> str:
    params = tmp_path / "p256.pem"
    if not params.exists():
        subprocess.run(
            ["openssl", "ecparam", "-name", "prime256v1", "-out", str(params)],
            check=True,
            capture_output=True,
        )
    return str(params)


def _pending(request_id: str) -> CertificateRequest:
    """The request a Dogtag request ID (decimal) names: its public ID read as a number."""
    return CertificateRequest.objects.get(public_id=ids.public_id_of(int(request_id)))


def test_agent_certificate_reviews_and_approves_through_nginx(tls_portal, tmp_path, agent):
    """The agent's linked certificate, presented to nginx by dogtag-pki, lists the queue,
    reviews and approves (the certificate verifies with openssl against the portal's CA),
    and revokes then releases a hold; the audit rows name the agent."""
    anonymous = tls_portal["client"](None)
    request_id = _submit(anonymous, tmp_path, "api.example.test")

    as_agent = tls_portal["client"]("agent")
    queued = as_agent.list_requests(request_status="pending")
    assert request_id in [info.request_id for info in queued.cert_request_info_list]
    review = as_agent.review_request(request_id)
    assert review.nonce
    as_agent.approve_request(request_id, review)

    info = as_agent.get_request(request_id)
    assert info.request_status == "complete"
    data = as_agent.get_cert(info.cert_id)
    leaf = tmp_path / "leaf.pem"
    leaf.write_text(data.encoded)
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tls_portal["ca_file"]), str(leaf)],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr

    req = _pending(request_id)
    assert req.status == CertificateRequest.Status.COMPLETE
    approval = AuditEvent.objects.filter(request=req, action="request_approved").get()
    assert approval.actor == agent

    held = as_agent.hold_cert(info.cert_id, comments="key may be lost")
    assert held.request_status == "complete"
    assert as_agent.get_cert(info.cert_id).status == "REVOKED"
    as_agent.unrevoke_cert(info.cert_id)
    assert as_agent.get_cert(info.cert_id).status == "VALID"


@pytest.mark.parametrize(
    ("identity", "reason"),
    [("user", "wrong_profile"), ("stranger", "other_ca"), (None, None)],
)
def test_certificates_of_no_agent_are_refused(tls_portal, tmp_path, identity, reason):
    """A user certificate from this portal, a certificate from another CA, and no
    certificate at all: the agent resources answer 401 UnauthorizedException (which
    dogtag-pki turns into None), the refusal is audited with its reason, and the request
    stays pending."""
    request_id = _submit(tls_portal["client"](None), tmp_path, "refused.example.test")
    client = tls_portal["client"](identity)
    assert client.review_request(request_id) is None
    assert client.approve_request(request_id) is None  # its own review first, then the POST
    assert client.list_requests() is None
    assert _pending(request_id).status == CertificateRequest.Status.PENDING
    refusals = AuditEvent.objects.filter(action="agent_certificate_login_refused")
    assert [e.details["reason"] for e in refusals] == [reason] * (4 if reason else 0)


def test_forged_certificate_header_around_nginx_is_not_believed(tls_portal, tmp_path):
    """Straight to the portal from an address that is not a trusted proxy, a header holding
    the agent's certificate authorises nothing: the queue, the review and the approval are
    refused with Dogtag's error JSON, and the request stays pending."""
    request_id = _submit(tls_portal["client"](None), tmp_path, "bypass.example.test")
    forged = {"X-SSL-Client-Cert": escaped(tls_portal["agent_cert"])}
    base, path = tls_portal["live"], f"/ca/rest/agent/certrequests/{request_id}"
    for method, url, body in [
        ("GET", "/ca/rest/agent/certrequests", None),
        ("GET", path, None),
        ("POST", path + "/approve", {"nonce": "1", "requestId": request_id}),
    ]:
        status, answer = call(base, method, url, body=body, headers=forged, source="127.0.0.5")
        assert status in (401, 403), (method, url, status, answer)
        assert answer["ClassName"].startswith("com.netscape.certsrv."), answer
    assert _pending(request_id).status == CertificateRequest.Status.PENDING
