"""Safe by default in production (issue 13): DEBUG off unless asked for, a clean
`check --deploy`, no development CA passphrase, https only (proxies believed only when
trusted), no accepted email address refused later, no anonymous 500, and approvals that
fail clearly instead of hanging on a row lock."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse

from delivery.models import Delivery
from delivery.services import DeliveryRefused, clean_recipient
from requests_app import services
from requests_app.forms import EnrollmentForm, ServerKeyEnrollmentForm
from requests_app.models import AuditEvent, CertificateRequest
from requests_app.profiles import get_profile
from tests.helpers.csrs import make_csr
from tests.helpers.mfa import login_verified

ROOT = Path(__file__).resolve().parent.parent


def _manage(*args: str, **env_vars: str) -> subprocess.CompletedProcess:
    """manage.py in a fresh process with only the given portal variables."""
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "CA_KEY_PASSPHRASE")}
    env |= {"DJANGO_SETTINGS_MODULE": "ca_portal.settings", "ENV_FILE": "/nonexistent/.env"}
    env |= env_vars
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


def production_env(tmp_path: Path) -> dict[str, str]:
    """The production block of the README, with generated secrets."""
    return {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "CA_KEY_PASSPHRASE": secrets.token_urlsafe(32),
        "ALLOWED_HOSTS": "ca.example.com",
        "SITE_URL": "https://ca.example.com",
        "TRUSTED_PROXIES": "10.0.0.1",
        "CACHE_URL": "redis://127.0.0.1:6379/0",
        "EMAIL_URL": "smtp+tls://mail.example.com:587",
        "SECURE_HSTS_PRELOAD": "True",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }


# --- settings -----------------------------------------------------------------------


def test_check_deploy_is_clean_in_production(tmp_path):
    """`manage.py check --deploy` with the documented production variables reports nothing."""
    result = _manage("check", "--deploy", "--fail-level", "WARNING", **production_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_debug_is_off_unless_asked_for(tmp_path):
    """Without DEBUG in the environment the settings are production's."""
    script = (
        "from django.conf import settings as s; "
        "print(s.DEBUG, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE,"
        " s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_AGE)"
    )
    result = _manage("shell", "-v", "0", "-c", script, **production_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "True", "True", "31536000", "28800"]


@pytest.mark.parametrize(
    ("passphrase", "error"),
    [
        ("development-only-ca-passphrase", "ca.E020"),
        ("short-passphrase-19", "ca.E021"),
    ],
)
def test_a_weak_ca_passphrase_stops_production(tmp_path, passphrase, error):
    """The development passphrase, or one under 20 characters, is a system check error:
    init_ca (and every other command) refuses to run with it."""
    keys = tmp_path / "keys"
    env = production_env(tmp_path) | {"CA_KEY_PASSPHRASE": passphrase, "CA_KEY_DIR": str(keys)}
    result = _manage("init_ca", "--subject", "CN=Prod CA", **env)
    assert result.returncode != 0
    assert error in result.stderr
    assert not keys.exists() or not list(keys.iterdir())
    # Development (DEBUG=True, what make run writes) may use it.
    assert _manage("check", **env, DEBUG="True").returncode == 0


def test_a_forgotten_debug_shows_no_debug_pages(client, db, settings):
    """With the settings' DEBUG (off) a 404 lists no URL patterns."""
    assert not settings.DEBUG
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    assert b"URLconf" not in response.content and b"admin/" not in response.content


# --- https --------------------------------------------------------------------------


@pytest.fixture
def https_only(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.TRUSTED_PROXIES = ["10.0.0.1"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")


def test_plain_http_is_redirected(client, db, https_only):
    """Pages redirect to https; CRLs, OCSP, the CA certificate and /healthz do not."""
    response = client.get("/")
    assert response.status_code == 301
    assert response["Location"].startswith("https://")
    for path in ("/healthz", "/ocsp", "/ca/1/crl.crl", "/ca/1/ca.cer"):
        assert client.get(path).status_code != 301, path


def test_forwarded_proto_is_believed_only_from_a_trusted_proxy(db, https_only):
    """X-Forwarded-Proto: https from the trusted proxy counts; from anyone else it does not."""
    proxied = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_PROTO="https")
    response = proxied.get("/")
    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    forged = Client(REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_PROTO="https")
    assert forged.get("/").status_code == 301


def test_agent_sessions_last_a_working_day(client, agent, settings):
    """Logging in gives a session cookie of SESSION_COOKIE_AGE (8 hours), secure in production."""
    assert settings.SESSION_COOKIE_AGE == 8 * 3600
    client.post(reverse("login"), {"username": "agent1", "password": "agent-pass-123"})
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["max-age"] == 8 * 3600
    assert cookie["secure"] and cookie["httponly"]


# --- every accepted address can be mailed ------------------------------------------

ADDRESSES = [
    '"a,b"@example.com',
    '"a;b"@example.com',
    "a@example.com,b@example.com",
    "a@example.com\nBcc: x@example.com",
    '"a b"@example.com',
    "ada@example.test",
    "ADA+tag@Example.TEST",
    "a@[192.0.2.1]",
]


@pytest.mark.parametrize("address", ADDRESSES)
def test_the_form_accepts_exactly_what_delivery_accepts(address, db):
    """The enrollment forms' email check and delivery's recipient check agree on every address."""
    try:
        clean_recipient(address)
        deliverable = True
    except DeliveryRefused:
        deliverable = False
    form = EnrollmentForm({"csr": "x", "requester_email": address}, profile=get_profile("server"))
    form.is_valid()
    assert ("requester_email" not in form.errors) == deliverable
    key_form = ServerKeyEnrollmentForm({"requester_email": address})
    key_form.is_valid()
    assert ("requester_email" not in key_form.errors) == deliverable


@pytest.mark.parametrize("path", ["/enroll/user/", "/enroll/user/server-key/"])
def test_an_address_delivery_would_refuse_is_a_clear_400(client, ca, path):
    """ "a,b"@example.com gets a 400 naming the problem, and nothing is stored or queued."""
    fields = {
        "csr": make_csr(cn="Ada"),
        "requester_email": '"a,b"@example.com',
        "requester_name": "Ada",
        "passphrase": "correct horse battery staple",
        "passphrase_confirm": "correct horse battery staple",
    }
    audit_rows = AuditEvent.objects.count()  # the CA's creation
    response = client.post(path, fields)
    assert response.status_code == 400
    assert "Enter one email address, without commas" in response.content.decode()
    assert CertificateRequest.objects.count() == 0
    assert AuditEvent.objects.count() == audit_rows
    assert Delivery.objects.count() == 0


def test_submit_refuses_such_an_address_too(ca):
    """The service applies the same check (commands, Dogtag, any caller)."""
    with pytest.raises(services.InvalidRequest, match="not a valid email address"):
        services.submit_request(
            profile="server", csr=make_csr(), requester_email='"a,b"@example.com'
        )


@pytest.mark.parametrize("path", ["/enroll/server/", "/enroll/user/server-key/"])
def test_any_refusal_of_a_submission_is_a_page_not_a_500(client, ca, monkeypatch, path):
    """A ServiceError other than InvalidRequest (here: no CA) answers 503 with its message."""

    def refuse(**kwargs):
        raise services.CAUnavailable("the CA cannot take requests right now")

    monkeypatch.setattr(services, "submit_request", refuse)
    monkeypatch.setattr(services, "submit_request_with_server_key", refuse)
    fields = {
        "csr": make_csr(cn="www.example.test"),
        "requester_email": "ada@example.test",
        "requester_name": "Ada",
        "passphrase": "correct horse battery staple",
        "passphrase_confirm": "correct horse battery staple",
    }
    response = client.post(path, fields)
    assert response.status_code == 503
    assert "the CA cannot take requests right now" in response.content.decode()


# --- a blocked approval fails clearly (PostgreSQL) ---------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks are only real on PostgreSQL"
)
def test_an_approval_blocked_by_a_row_lock_fails_within_the_timeout(ca, agent, settings, client):
    """Another connection holds the request row: the approval is refused with a message an
    agent understands within DATABASE_LOCK_TIMEOUT_SECONDS, and nothing is written."""
    settings.DATABASE_LOCK_TIMEOUT_SECONDS = 1
    req = services.submit_request(
        profile="server", csr=make_csr(cn="held.example.test"), requester_email="o@example.test"
    )
    locked, release = threading.Event(), threading.Event()

    def hold():
        try:
            with transaction.atomic():
                CertificateRequest.objects.select_for_update().get(pk=req.pk)
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        start = time.monotonic()
        with pytest.raises(services.RecordBusy, match="being changed by someone else"):
            services.approve_request(req.public_id, agent=agent)
        assert time.monotonic() - start < 5
        login_verified(client, agent)
        response = client.post(
            reverse("agent:approve", args=[req.public_id]), {"validity_days": ""}, follow=True
        )
        assert "being changed by someone else right now" in response.content.decode()
    finally:
        release.set()
        holder.join()
    req.refresh_from_db()
    assert req.status == CertificateRequest.Status.PENDING
    assert not req.audit_events.filter(action="request_approved").exists()
    # Released, the same approval goes through.
    assert services.approve_request(req.public_id, agent=agent).serial
