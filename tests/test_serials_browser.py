"""Serial numbers in Chromium (issue 19): the Copy button puts the colon serial on the
clipboard, the lookup box takes what openssl prints, and long serials wrap on a 360 px phone
instead of scrolling sideways. Screenshots go to test-artifacts/screenshots/serials-*.png."""

from __future__ import annotations

import subprocess

from requests_app import services
from tests import test_browser
from tests.helpers.csrs import make_csr
from tests.test_browser import AGENT_PASSWORD, Watched, _login

#: test_browser's fixtures: one headless Chromium per module, the live server's URL.
browser = test_browser.browser
site = test_browser.site

pytestmark = test_browser.pytestmark  # browser-marked; skipped without Chromium


#: Serials, messages, headings and monospace cells that stick out past the right edge (the
#: agent pages' deliveries and history tables are other parts of issue 19's work).
WIDE = """() => [...document.querySelectorAll(
    '.serial, .copy-serial, .messages, h1, td.mono, td.mono a')]
  .filter(e => !e.closest('table')
    || e.closest('table').previousElementSibling?.textContent !== 'History')
  .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
  .map(e => e.tagName + '.' + e.className + ': ' + e.textContent.trim().slice(0, 40))"""


def _overflow(user: Watched) -> int:
    return user.page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )


def test_copy_button_copies_the_serial(browser, site, ca, agent):
    """Clicking Copy next to the serial puts 05:35:F2:... on the clipboard, with no CSP
    violation (static copy.js)."""
    req = services.submit_request(
        profile="server",
        csr=make_csr(cn="copy.example.test"),
        requester_email="ops@example.test",
    )
    cert = services.approve_request(req, agent=agent)
    visitor = Watched(browser)
    visitor.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site)
    page = visitor.page
    page.goto(f"{site}/certificates/{cert.serial}/")
    button = page.locator(f"button[data-copy-text='{cert.serial_colons}']").first
    button.click()
    page.wait_for_function("() => document.activeElement !== null")
    assert page.evaluate("() => navigator.clipboard.readText()") == cert.serial_colons
    assert "Copied" in button.inner_text()
    # The status page's button copies the same text.
    page.goto(f"{site}{req.get_absolute_url()}")
    page.evaluate("() => navigator.clipboard.writeText('')")
    page.locator("button.copy-serial").first.click()
    page.wait_for_function("async () => (await navigator.clipboard.readText()) !== ''")
    assert page.evaluate("() => navigator.clipboard.readText()") == cert.serial_colons
    assert visitor.violations == []


def test_lookup_takes_openssl_output_in_the_browser(browser, site, ca, agent, tmp_path):
    """Pasting `openssl x509 -serial -noout` output into the serial box opens the page."""
    req = services.submit_request(
        profile="server", csr=make_csr(cn="paste.example.test"), requester_email="o@example.test"
    )
    cert = services.approve_request(req, agent=agent)
    (tmp_path / "cert.pem").write_text(cert.pem)
    printed = subprocess.run(
        ["openssl", "x509", "-in", str(tmp_path / "cert.pem"), "-serial", "-noout"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    visitor = Watched(browser)
    page = visitor.page
    page.goto(f"{site}/certificates/")
    page.fill("#id_serial", printed)
    page.locator("main form button[type=submit]").first.click()
    page.wait_for_url(f"{site}/certificates/{cert.serial_filename}/")
    assert cert.serial_colons in page.inner_text("main")
    assert visitor.violations == []


def test_serials_wrap_on_a_phone(browser, site, ca, agent):
    """At 360 px the issued page (with its flash message), the certificate pages, the
    status page and the queue show whole colon serials without sideways scrolling."""
    req = services.submit_request(
        profile="server",
        csr=make_csr(cn="phone.example.test"),
        requester_email="ops@example.test",
    )
    phone = Watched(browser, width=360, height=780, is_mobile=True, has_touch=True)
    _login(phone, site, agent.username, AGENT_PASSWORD, next_url=req.get_agent_url())
    phone.page.wait_for_selector("text=Approve and issue")
    phone.page.click("text=Approve and issue")
    phone.page.wait_for_selector("h1:has-text('Certificate issued')")
    req.refresh_from_db()
    cert = req.certificate
    assert cert.serial_colons in phone.page.inner_text(".messages")
    pages = {
        "serials-phone-issued": None,  # where the approval landed, message included
        "serials-phone-agent-certificate": f"/agent/certificates/{cert.serial}/",
        "serials-phone-queue": "/agent/?status=complete",
        "serials-phone-certificate": f"/certificates/{cert.serial_colons}/",
        "serials-phone-status": req.get_absolute_url(),
    }
    for name, path in pages.items():
        if name == "serials-phone-status":
            phone.context.clear_cookies()  # the requester, not the agent
        if path:
            phone.page.goto(f"{site}{path}")
        phone.shot(name)
        if name != "serials-phone-queue":  # the queue table's columns are the queue work's
            assert phone.page.evaluate(WIDE) == [], name
        if path and not path.startswith("/agent/"):  # the public pages fit whole
            assert _overflow(phone) <= 0, f"{name} is {_overflow(phone)}px too wide"
        spans = phone.page.locator("span.serial")
        assert spans.count() >= 1, name
        text = spans.first.inner_text()
        assert text.replace("\n", "") == cert.serial_colons, (name, text)
        box = spans.first.bounding_box()
        if name != "serials-phone-queue":
            assert box["x"] + box["width"] <= 360, name
    assert phone.violations == []
