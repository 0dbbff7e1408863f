"""Who may act as an agent on the REST API, and the attacks on it: a password alone when
the second factor is required, a reused TOTP code, password guessing until lockout, a web
session cookie in a cross-site POST, a nonce from another request; agent certificates
passed by the trusted proxy."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest

from requests_app import pki, services
from requests_app.models import AuditEvent, Certificate, CertificateRequest
from requests_app.rest import auth, ids, nonces
from requests_app.rest.errors import RestError
from tests.helpers.agent_certs import issue_agent_certificate, make_agent
from tests.helpers.mfa import add_totp_device, login_verified, totp_code
from tests.helpers.rest import AGENT_PASSWORD, agent_secret, basic

pytestmark = pytest.mark.usefixtures("empty_cache")

Status = CertificateRequest.Status
QUEUE = "/ca/rest/agent/certrequests"
CERTS = "/ca/rest/certs/search"
UNAUTHORIZED = "com.netscape.certsrv.base.UnauthorizedException"
FORBIDDEN = "com.netscape.certsrv.base.ForbiddenException"
BAD_REQUEST = "com.netscape.certsrv.base.BadRequestException"
PROXY = "10.9.8.7"


@pytest.fixture
def client_factory():
    """Fresh test clients: each one a program without the others' cookies."""
    from django.test import Client

    return Client


@pytest.fixture
def device(agent):
    return add_totp_device(agent)


def _json(response) -> dict:
    assert response["Content-Type"] == "application/json", response.content[:200]
    return response.json()


def _error(response, status: int, class_name: str) -> dict:
    body = _json(response)
    assert response.status_code == status, body
    assert body["ClassName"] == class_name
    assert isinstance(body["Attributes"]["Attribute"], list) and body["Code"] == status
    return body


def _last_audit_pk() -> int:
    return AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def _review(client, req, **headers) -> dict:
    response = client.get(f"{QUEUE}/{ids.request_decimal(req)}", **headers)
    assert response.status_code == 200, response.content
    return response.json()


def _act(client, req, action, body, **headers):
    return client.post(
        f"{QUEUE}/{ids.request_decimal(req)}/{action}",
        json.dumps(body),
        content_type="application/json",
        **headers,
    )


def test_no_credentials_is_401_json(client, ca):
    """No credentials: 401 with Dogtag's UnauthorizedException and a Basic challenge."""
    response = client.get(QUEUE)
    _error(response, 401, UNAUTHORIZED)
    assert response["WWW-Authenticate"].startswith("Basic ")


@pytest.mark.parametrize("user, secret", [("agent1\x00", "x"), ("a", "pw\x00"), ("\x00", "")])
def test_a_nul_in_basic_credentials_is_401_and_looks_nothing_up(client, agent, user, secret):
    """A NUL in the user name or password is refused before any lookup: PostgreSQL refuses
    NUL in text, which schemathesis turned into a 500 in the CI's PostgreSQL pass."""
    before = _last_audit_pk()
    response = client.get(QUEUE, HTTP_AUTHORIZATION=basic(user, secret))
    assert "NUL" in _error(response, 401, UNAUTHORIZED)["Message"]
    assert _last_audit_pk() == before


def test_password_alone_is_refused_when_the_second_factor_is_required(client, agent, device):
    """The right password without a code is not an agent; the failure is counted and audited."""
    response = client.get(QUEUE, HTTP_AUTHORIZATION=basic("agent1", AGENT_PASSWORD))
    assert "second factor" in _error(response, 401, UNAUTHORIZED)["Message"]
    failure = AuditEvent.objects.get(action="agent_login_failed")
    assert failure.details["reason"] == "second_factor_missing"
    assert auth.SESSION_KEY not in client.session


def test_password_alone_works_only_with_mfa_off(client, agent, settings):
    """AGENT_REQUIRE_MFA off (development): the password alone is enough."""
    settings.AGENT_REQUIRE_MFA = False
    response = client.get(QUEUE, HTTP_AUTHORIZATION=basic("agent1", AGENT_PASSWORD))
    assert response.status_code == 200 and _json(response)["entries"] == []


def test_password_and_code_once_then_the_session_cookie(client, agent, device):
    """Password + TOTP passes once; the session the client keeps carries it (the same code
    is not checked again), and the login is audited."""
    header = basic("agent1", agent_secret(device))
    first = client.get(QUEUE, HTTP_AUTHORIZATION=header)
    assert first.status_code == 200 and first["Cache-Control"] == "no-store"
    assert client.get(QUEUE, HTTP_AUTHORIZATION=header).status_code == 200
    assert AuditEvent.objects.filter(action="agent_second_factor_passed").count() == 1
    login = AuditEvent.objects.get(action="agent_login")
    assert login.details["method"] == "rest-basic+totp"
    # The REST session names the user it proved; another username is checked afresh.
    other = client.get(QUEUE, HTTP_AUTHORIZATION=basic("someone", "x" * 8 + "123456"))
    _error(other, 401, UNAUTHORIZED)


def test_a_used_totp_code_is_refused_in_another_session(client, client_factory, agent, device):
    """A TOTP code works once: a second client with the same password+code is refused."""
    secret = agent_secret(device)
    assert client.get(QUEUE, HTTP_AUTHORIZATION=basic("agent1", secret)).status_code == 200
    replay = client_factory().get(QUEUE, HTTP_AUTHORIZATION=basic("agent1", secret))
    assert "already used" in _error(replay, 401, UNAUTHORIZED)["Message"]
    assert AuditEvent.objects.filter(action="agent_second_factor_failed").count() == 1


def test_wrong_passwords_lock_the_account_out(client_factory, agent, device, settings):
    """Wrong passwords count as on the login page; after the limit even the right password
    and code are refused (JSON, not axes' HTML page), and the lockout is audited."""
    for attempt in range(settings.AGENT_LOGIN_FAILURE_LIMIT):
        wrong = client_factory().get(QUEUE, HTTP_AUTHORIZATION=basic("agent1", f"guess{attempt}"))
        assert wrong.status_code in (401, 403)
    right = client_factory().get(QUEUE, HTTP_AUTHORIZATION=basic("agent1", agent_secret(device)))
    assert "locked out" in _error(right, 403, FORBIDDEN)["Message"]
    assert right["Retry-After"]
    assert AuditEvent.objects.filter(action="agent_locked_out").exists()
    assert AuditEvent.objects.filter(action="agent_login_failed").count() >= 5


def test_wrong_codes_lock_out_too(client_factory, agent, device, settings):
    """Guessing codes with the right password locks out like guessing passwords."""
    good = totp_code(device)
    bad = f"{(int(good) + 1) % 1_000_000:06d}"
    for _ in range(settings.AGENT_LOGIN_FAILURE_LIMIT):
        client_factory().get(QUEUE, HTTP_AUTHORIZATION=basic("agent1", AGENT_PASSWORD + bad))
    right = client_factory().get(QUEUE, HTTP_AUTHORIZATION=basic("agent1", agent_secret(device)))
    _error(right, 403, FORBIDDEN)


def test_a_non_agent_is_forbidden(client, django_user_model, ca):
    """A valid account without the agents' permission gets ForbiddenException."""
    django_user_model.objects.create_user("clerk", "clerk@example.test", "clerk-pass-123")
    response = client.get(QUEUE, HTTP_AUTHORIZATION=basic("clerk", "clerk-pass-123"))
    assert "not a Certificate Manager agent" in _error(response, 403, FORBIDDEN)["Message"]


def test_a_non_agent_with_the_right_password_leaves_no_login_row(
    client_factory, django_user_model, ca
):
    """A non-agent's right password is refused before anything is recorded: no
    `agent_login` row (nor any other) on any call, and no REST session to carry it, for a
    program that keeps no cookie as for one that does."""
    django_user_model.objects.create_user("clerk", "clerk@example.test", "clerk-pass-123")
    header = basic("clerk", "clerk-pass-123")
    before = _last_audit_pk()
    keeper = client_factory()
    for client in (client_factory(), client_factory(), keeper, keeper):
        _error(client.get(QUEUE, HTTP_AUTHORIZATION=header), 403, FORBIDDEN)
        assert auth.SESSION_KEY not in client.session
    # A public resource that shows agents more takes the non-agent as anonymous, silently.
    assert client_factory().get(CERTS, HTTP_AUTHORIZATION=header).status_code == 200
    rows = AuditEvent.objects.filter(pk__gt=before)
    assert not rows.exists(), list(rows.values_list("action", flat=True))


def test_a_staff_non_agent_with_password_and_code_is_refused_before_the_code(
    client, django_user_model, ca
):
    """Staff owe a second factor but are no agents: password + a valid TOTP code is refused
    without checking (and using up) the code, without a second-factor or login row."""
    staff = django_user_model.objects.create_user(
        "sam", "sam@example.test", AGENT_PASSWORD, is_staff=True
    )
    assert services.needs_second_factor(staff) and not services.is_active_agent(staff)
    device = add_totp_device(staff)
    before = _last_audit_pk()
    response = client.get(QUEUE, HTTP_AUTHORIZATION=basic("sam", agent_secret(device)))
    assert "not a Certificate Manager agent" in _error(response, 403, FORBIDDEN)["Message"]
    device.refresh_from_db()
    assert device.last_t == -1  # the code was not spent
    rows = AuditEvent.objects.filter(pk__gt=before)
    assert not rows.exists(), list(rows.values_list("action", flat=True))


def test_a_web_session_cookie_is_no_rest_credential(client, agent, pending_request):
    """An agent's verified web session (what a browser sends along cross-site) neither reads
    the review nor approves, with or without a form-encoded body."""
    login_verified(client, agent)
    _error(client.get(f"{QUEUE}/{ids.request_decimal(pending_request)}"), 401, UNAUTHORIZED)
    url = f"{QUEUE}/{ids.request_decimal(pending_request)}/approve"
    _error(_act(client, pending_request, "approve", {"nonce": "1"}), 401, UNAUTHORIZED)
    form = client.post(url, {"nonce": "1"}, HTTP_ORIGIN="https://evil.example")
    _error(form, 403, FORBIDDEN)
    pending_request.refresh_from_db()
    assert pending_request.status == Status.PENDING


def test_a_cross_site_post_with_the_rest_session_is_refused(client, agent, device, pending_request):
    """Even a REST session's cookie, sent by a browser from another site (Origin,
    Sec-Fetch-Site, or a form's content type), approves nothing."""
    header = {"HTTP_AUTHORIZATION": basic("agent1", agent_secret(device))}
    nonce = _review(client, pending_request, **header)["nonce"]
    crossing = [
        {"HTTP_ORIGIN": "https://evil.example"},
        {"HTTP_SEC_FETCH_SITE": "cross-site"},
    ]
    for extra in crossing:
        response = _act(client, pending_request, "approve", {"nonce": nonce}, **header, **extra)
        _error(response, 403, FORBIDDEN)
    url = f"{QUEUE}/{ids.request_decimal(pending_request)}/approve"
    plain = client.post(url, json.dumps({"nonce": nonce}), content_type="text/plain", **header)
    _error(plain, 400, BAD_REQUEST)
    pending_request.refresh_from_db()
    assert pending_request.status == Status.PENDING
    assert _act(client, pending_request, "approve", {"nonce": nonce}, **header).status_code == 204


def test_a_nonce_from_another_request_is_refused(client, agent, device, ca, csr_factory):
    """A's nonce does not approve B; a missing nonce approves nothing; A's own works once."""
    a = services.submit_request(
        profile="server", csr=csr_factory(cn="a.example.test"), requester_email="a@example.test"
    )
    b = services.submit_request(
        profile="server", csr=csr_factory(cn="b.example.test"), requester_email="b@example.test"
    )
    header = {"HTTP_AUTHORIZATION": basic("agent1", agent_secret(device))}
    nonce_a = _review(client, a, **header)["nonce"]
    _review(client, b, **header)
    _error(_act(client, b, "approve", {"nonce": nonce_a}, **header), 403, FORBIDDEN)
    missing = _act(client, b, "approve", {}, **header)
    assert _error(missing, 400, BAD_REQUEST)["Message"] == "Missing nonce."
    assert _act(client, a, "approve", {"nonce": nonce_a}, **header).status_code == 204
    _error(_act(client, a, "approve", {"nonce": nonce_a}, **header), 400, BAD_REQUEST)
    b.refresh_from_db()
    assert b.status == Status.PENDING and Certificate.objects.count() == 1


def test_another_agents_nonce_is_refused(client, client_factory, agent, device, pending_request):
    """Nonces are bound to the agent who reviewed."""
    bob = make_agent("bob")
    bob_device = add_totp_device(bob)
    bob_client = client_factory()
    bob_header = {"HTTP_AUTHORIZATION": basic("bob", agent_secret(bob_device))}
    nonce = _review(bob_client, pending_request, **bob_header)["nonce"]
    header = {"HTTP_AUTHORIZATION": basic("agent1", agent_secret(device))}
    response = _act(client, pending_request, "approve", {"nonce": nonce}, **header)
    _error(response, 400, BAD_REQUEST)  # this agent has no review of it
    pending_request.refresh_from_db()
    assert pending_request.status == Status.PENDING


@pytest.fixture
def trusted_proxy(settings):
    settings.TRUSTED_PROXIES = [PROXY]


def _cert_header(cert) -> dict:
    return {"HTTP_X_SSL_CLIENT_CERT": quote(cert.pem), "REMOTE_ADDR": PROXY}


def test_an_agent_certificate_from_the_trusted_proxy_acts(
    client, agent, trusted_proxy, pending_request
):
    """A linked agent certificate passed by the trusted proxy is both factors: review and
    approve with no password; the approval names the agent."""
    bob = make_agent("bob")
    cert, _key = issue_agent_certificate(bob, agent)
    header = _cert_header(cert)
    nonce = _review(client, pending_request, **header)["nonce"]
    assert _act(client, pending_request, "approve", {"nonce": nonce}, **header).status_code == 204
    pending_request.refresh_from_db()
    assert pending_request.acted_by == bob
    assert AuditEvent.objects.filter(action="agent_certificate_login", actor=bob).count() == 1


def test_a_certificate_header_from_an_untrusted_peer_is_ignored(client, agent, ca):
    """The header from a peer that is not a trusted proxy logs nobody in (and is audited)."""
    bob = make_agent("bob")
    cert, _key = issue_agent_certificate(bob, agent)
    response = client.get(QUEUE, HTTP_X_SSL_CLIENT_CERT=quote(cert.pem))
    _error(response, 401, UNAUTHORIZED)
    refused = AuditEvent.objects.get(action="agent_certificate_login_refused")
    assert refused.details["reason"] == "untrusted_proxy"


def test_a_revoked_agent_certificate_is_refused(client, ca, agent, trusted_proxy):
    """A revoked agent certificate stops working, even in the session it opened."""
    bob = make_agent("bob")
    cert, _key = issue_agent_certificate(bob, agent)
    assert client.get(QUEUE, **_cert_header(cert)).status_code == 200
    services.revoke_certificate(cert, reason="keyCompromise", actor=agent)
    _error(client.get(QUEUE, **_cert_header(cert)), 401, UNAUTHORIZED)


def test_the_agent_certificate_session_needs_the_same_certificate(client, ca, agent, trusted_proxy):
    """A session opened by a certificate is not carried by the cookie alone."""
    bob = make_agent("bob")
    cert, _key = issue_agent_certificate(bob, agent)
    assert client.get(QUEUE, **_cert_header(cert)).status_code == 200
    _error(client.get(QUEUE, REMOTE_ADDR=PROXY), 401, UNAUTHORIZED)
    assert pki.sha256_hex(cert.x509) == client.session[auth.SESSION_KEY]["fingerprint"]


def test_an_agent_certificate_of_a_former_agent_is_refused_without_a_login_row(
    client_factory, ca, agent, trusted_proxy
):
    """A certificate linked while its owner was an agent stops working when the owner
    stops being one: the refusal is audited as the web certificate login audits it
    (not_an_agent), with no login row, on a fresh connection and in the session it opened."""
    bob = make_agent("bob")
    cert, _key = issue_agent_certificate(bob, agent)
    keeper = client_factory()
    assert keeper.get(QUEUE, **_cert_header(cert)).status_code == 200
    logins = AuditEvent.objects.filter(action__in=("agent_login", "agent_certificate_login"))
    assert logins.count() == 1
    bob.groups.clear()
    for client in (keeper, client_factory()):
        assert client.get(QUEUE, **_cert_header(cert)).status_code in (401, 403)
    assert logins.count() == 1
    refused = AuditEvent.objects.filter(action="agent_certificate_login_refused")
    assert {row.details["reason"] for row in refused} == {"not_an_agent"}


def _redis_cache():
    """Django's Redis cache on this branch's database (3), or None when no Redis runs."""
    from django.core.cache.backends.redis import RedisCache

    shared = RedisCache("redis://127.0.0.1:6379/3", {"KEY_PREFIX": f"rest-{os.getpid()}"})
    try:
        shared.get("ping")
    except Exception:
        return None
    return shared


@pytest.mark.parametrize("backend", ["locmem", "redis"])
def test_one_nonce_passes_once_among_simultaneous_actions(backend, monkeypatch, agent):
    """20 threads echo the same nonce at the same instant: exactly one is accepted, in
    process memory and in the cache that several processes share."""
    if backend == "redis":
        shared = _redis_cache()
        if shared is None:
            pytest.skip("no Redis on 127.0.0.1:6379")
        monkeypatch.setattr(nonces, "cache", shared)
    target = f"race-{backend}-{threading.get_ident()}"
    nonce = nonces.issue(agent, "cert-request", target)
    barrier = threading.Barrier(20)

    def act(_):
        barrier.wait()
        try:
            nonces.consume(agent, "cert-request", target, str(nonce), shown=target)
        except RestError:
            return False
        return True

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(act, range(20)))
    assert outcomes.count(True) == 1
    if backend == "redis":  # only this test's keys: the database outlives the test
        used = hashlib.sha256(f"{agent.pk}:{nonce}".encode()).hexdigest()
        shared.delete_many([nonces._key(agent, "cert-request", target), f"rest-nonce-used:{used}"])
