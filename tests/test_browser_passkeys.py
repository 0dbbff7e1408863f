"""Passkeys in a real browser: Chromium with a CDP virtual authenticator registers a passkey
for an agent, logs out, logs in with password and passkey, and approves a request; a session
with the password alone sees only the second-factor page and cannot approve by a direct POST.

WebAuthn needs a secure context and a domain as RP ID: the live server is reached as
http://localhost:PORT (loopback http counts as secure)."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from requests_app import services
from requests_app.models import AuditEvent, CertificateRequest
from tests import test_browser
from tests.helpers.csrs import make_csr
from tests.test_browser import AGENT_PASSWORD, CHROMIUM, Watched, browser  # noqa: F401

pytestmark = test_browser.pytestmark  # browser-marked; skipped without Chromium


@pytest.fixture
def localhost_site(live_server, settings):
    """The live server as http://localhost:PORT, the relying party the passkeys are for."""
    url = live_server.url.replace("127.0.0.1", "localhost")
    assert url.startswith("http://localhost:")
    settings.SITE_URL = url
    settings.OTP_WEBAUTHN_RP_ID = "localhost"
    settings.OTP_WEBAUTHN_ALLOWED_ORIGINS = [url]
    cache.clear()
    yield url
    cache.clear()


def _virtual_authenticator(user: Watched) -> None:
    """A platform authenticator that says yes at once (user present and verified)."""
    cdp = user.context.new_cdp_session(user.page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )


def _password(user: Watched, site: str, username: str, password: str, next_url: str) -> None:
    page = user.page
    page.goto(f"{site}/accounts/login/?next={next_url}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("main button[type=submit]")
    page.wait_for_load_state()


def test_passkey_register_logout_login_approve(browser, localhost_site, ca, agent):  # noqa: F811
    """Register a passkey after the password, log out, log in with password + passkey,
    approve a request; no page broke the CSP."""
    site = localhost_site
    req = services.submit_request(
        profile="server", csr=make_csr(cn="passkey.example.test"), requester_email="p@example.test"
    )
    clerk = Watched(browser)
    _virtual_authenticator(clerk)
    page = clerk.page

    # First login: the password, then straight to enrolment (no device yet).
    _password(clerk, site, agent.username, AGENT_PASSWORD, "/agent/")
    assert "/accounts/security/" in page.url
    assert "no second factor yet" in page.inner_text("main")
    page.click("#passkey-register-button")
    page.wait_for_selector("td:has-text('Passkey')")  # passkeys.js reloaded the list
    clerk.shot("mfa-01-passkey-registered")
    assert "passed the second factor by webauthn" in page.inner_text("main")
    assert AuditEvent.objects.filter(action="agent_device_enrolled").get().details["kind"] == (
        "webauthn"
    )

    page.click("header button:has-text('Log out')")
    page.goto(f"{site}/agent/")
    assert "/accounts/login/" in page.url

    # Second login: password, then the passkey.
    _password(clerk, site, agent.username, AGENT_PASSWORD, "/agent/")
    assert "/accounts/verify/" in page.url
    clerk.shot("mfa-02-second-factor")
    page.click("#passkey-verification-button")
    page.wait_for_selector("h1:has-text('Requests')")
    passed = AuditEvent.objects.filter(action="agent_second_factor_passed").last()
    assert passed.details["method"] == "webauthn"

    page.goto(f"{site}{req.get_agent_url()}")
    page.click("text=Approve and issue")
    page.wait_for_selector("h1:has-text('Certificate issued')")
    req.refresh_from_db()
    assert req.status == CertificateRequest.Status.COMPLETE
    assert clerk.violations == []


def test_password_alone_reaches_nothing(browser, localhost_site, ca, agent):  # noqa: F811
    """With a device but only the password: agent and admin pages show the second-factor
    page, and a direct POST to approve (with a valid CSRF token) is refused and changes
    nothing."""
    from tests.helpers.mfa import add_totp_device

    site = localhost_site
    add_totp_device(agent)
    req = services.submit_request(
        profile="server", csr=make_csr(cn="direct.example.test"), requester_email="d@example.test"
    )
    mallory = Watched(browser)
    _password(mallory, site, agent.username, AGENT_PASSWORD, "/agent/")
    page = mallory.page
    for path in ("/agent/", req.get_agent_url(), "/admin/", "/admin/requests_app/certificate/"):
        page.goto(f"{site}{path}")
        assert "/accounts/verify/" in page.url, path
        assert "Second factor" in page.inner_text("h1")
    token = next(c["value"] for c in mallory.context.cookies() if c["name"] == "csrftoken")
    approve = f"{site}/agent/requests/{req.public_id}/approve/"
    response = page.request.post(
        approve,
        form={"csrfmiddlewaretoken": token, "validity_days": "", "note": ""},
        headers={"Referer": approve},
        max_redirects=0,
    )
    assert response.status == 403
    req.refresh_from_db()
    assert req.status == CertificateRequest.Status.PENDING
    assert not AuditEvent.objects.filter(action="request_approved").exists()
