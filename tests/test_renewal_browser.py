"""Renewal in a real browser (Chromium through Playwright) against a live server, with real
SMTP: from the reminder's link to the new certificate, and the old one superseded."""

from __future__ import annotations

import re
import subprocess
import time

from requests_app import links
from requests_app.models import Certificate, CertificateRequest
from tests import test_browser
from tests.helpers.csrs import openssl_csr
from tests.helpers.renewal import fresh, issued_user
from tests.test_browser import AGENT_PASSWORD, Watched, _login, _mailed_confirmation

#: test_browser's fixtures: one headless Chromium per module, the live server's URL.
browser = test_browser.browser
site = test_browser.site

pytestmark = test_browser.pytestmark  # browser-marked; skipped without Chromium


def _retrieval_links(smtp_server, to: str, base: str) -> list[str]:
    found = []
    for message in smtp_server.messages:
        if to in message["To"]:
            text = message.get_body(preferencelist=("plain",)).get_content()
            found += re.findall(rf"{re.escape(base)}/retrieve/\S+/", text)
    return found


def _new_retrieval_link(smtp_server, to: str, base: str, *, known: list[str]) -> str:
    """The first retrieval link mailed to `to` that is not among `known`."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        fresh_links = [u for u in _retrieval_links(smtp_server, to, base) if u not in known]
        if fresh_links:
            return fresh_links[0]
        time.sleep(0.05)  # the mailer runs in the live server's thread
    raise AssertionError(f"no new retrieval link mailed to {to}: {smtp_server.messages}")


def _public_key(path, *, certificate: bool = False) -> str:
    args = ["x509", "-pubkey", "-noout"] if certificate else ["pkey", "-pubout"]
    return subprocess.run(
        ["openssl", *args, "-in", str(path)], capture_output=True, text=True, check=True
    ).stdout


def test_renewal_from_the_reminder_link_to_the_new_certificate(
    browser, site, ca, agent, smtp_server, tmp_path
):
    """The requester follows the certificate's signed link, renews with a new CSR and
    confirms the mailed code; the agent sees the renewal with its differences and approves;
    the new certificate's link arrives by mail (the profile's delivery); the old one shows
    superseded, and the agent revokes it as superseded in one click."""
    old, _ = issued_user(agent, email="ada@example.test", cn="Ada Lovelace")
    known = _retrieval_links(smtp_server, "ada@example.test", site)
    csr = openssl_csr(tmp_path, subject="/CN=Ada Lovelace")

    requester = Watched(browser)
    page = requester.page
    page.goto(links.retrieval_url(old))  # what a reminder links to
    assert old.serial_filename in page.url
    requester.shot("renewal-01-certificate-page")
    page.click("section.renewal a.button")
    assert "Renew a certificate" in page.inner_text("h1")
    assert "a***@example.test" in page.inner_text("main")
    requester.shot("renewal-02-renew-form")
    page.fill("#id_csr", csr.read_text())
    page.click("button:has-text('Submit renewal')")
    request_id = page.inner_text(".request-id").strip()
    assert "Your renewal was saved" in page.inner_text(".messages")
    requester.shot("renewal-03-awaiting-confirmation")

    page.goto(_mailed_confirmation(smtp_server, "ada@example.test", site))
    page.click("form.confirm-form button")
    assert "your email address is confirmed" in page.inner_text(".messages")

    clerk = Watched(browser)
    _login(clerk, site, agent.username, AGENT_PASSWORD, next_url="/agent/")
    clerk.page.wait_for_selector("h1:has-text('Requests')")
    clerk.page.fill("#find-q", request_id)
    clerk.page.press("#find-q", "Enter")
    clerk.page.wait_for_selector(f"h1:has-text('{request_id}')")
    changes = clerk.page.inner_text("#renewal-changes")
    assert old.serial_colons in changes
    assert "different key" in clerk.page.inner_text("#renewal-key")
    assert clerk.page.inner_text("#renewal-added").strip() == "none"
    assert clerk.page.inner_text("#renewal-removed").strip() == "none"
    clerk.shot("renewal-04-agent-sees-the-changes")
    clerk.page.click("text=Approve and issue")
    clerk.page.wait_for_selector("h1:has-text('Certificate issued')")
    assert "now marked superseded" in clerk.page.inner_text("#superseded")
    clerk.shot("renewal-05-issued-with-revoke-old")

    new_link = _new_retrieval_link(smtp_server, "ada@example.test", site, known=known)
    page.goto(new_link)
    req = CertificateRequest.objects.get(public_id=request_id.replace("-", ""))
    new = req.certificate
    assert new.serial_filename in page.url and new.serial != old.serial
    requester.shot("renewal-06-new-certificate")
    cert_file = tmp_path / "new.pem"
    cert_file.write_text(new.pem)
    assert _public_key(cert_file, certificate=True) == _public_key(
        tmp_path / "req.key"
    )  # the new key

    page.goto(f"{site}/certificates/{old.serial}/")
    notice = page.inner_text(".alert.superseded")
    assert "superseded" in notice and new.serial_colons in notice
    assert page.locator("section.renewal").count() == 0
    requester.shot("renewal-07-old-superseded")

    clerk.page.click("button:has-text('Revoke the old certificate (superseded)')")
    assert f"Certificate {old.serial_colons} revoked (superseded" in clerk.page.inner_text(
        ".messages"
    )
    clerk.shot("renewal-08-old-revoked")
    old = fresh(old)
    assert (old.status, old.revocation_reason) == (Certificate.Status.REVOKED, "superseded")
    assert fresh(new).status == Certificate.Status.VALID
    assert requester.violations == clerk.violations == []


def test_the_renewal_pages_fit_a_phone(browser, site, ca, agent):
    """On a phone-sized screen the renewal forms do not scroll sideways."""
    old, _ = issued_user(agent)
    phone = Watched(browser, width=390, height=844, is_mobile=True, has_touch=True)
    for name, path in {
        "phone-renew": f"/certificates/{old.serial}/renew/",
        "phone-renew-server-key": f"/certificates/{old.serial}/renew/server-key/",
    }.items():
        phone.page.goto(f"{site}{path}")
        phone.shot(name)
        overflow = phone.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{path} is {overflow}px too wide"
    assert phone.violations == []
