"""The delivery panel in a real browser (Chromium through Playwright) with real SMTP: a send
that fails while the mail server is down, "Send now" once it is up, and the row turning
"sent" by itself; the page opens at the panel and fits 360 px and 1280 px."""

from __future__ import annotations

import pytest

from ca_portal.settings import build_mailers
from delivery import services as delivery_services
from delivery.models import Delivery
from requests_app import services
from tests import test_browser
from tests.helpers.csrs import make_csr
from tests.helpers.servers import SMTPServer, free_port
from tests.test_browser import AGENT_PASSWORD, Watched, _login

#: test_browser's fixtures: one headless Chromium per module, the live server's URL.
browser = test_browser.browser
site = test_browser.site

pytestmark = test_browser.pytestmark  # browser-marked; skipped without Chromium

ADDRESS = "operations.team@example.test"
WIDTHS = "[document.documentElement.scrollWidth, window.innerWidth]"
PANEL_TOP = "Math.round(document.getElementById('delivery').getBoundingClientRect().top)"


@pytest.fixture
def issued(ca, agent):
    req = services.submit_request(
        profile="server",
        csr=make_csr(cn="panel.example.test"),
        requester_email=ADDRESS,
        requester_name="Operations",
    )
    return req, services.approve_request(req.public_id, agent=agent)


def _fits(watched: Watched, label: str) -> None:
    """No sideways scroll; the Status cells and the recipient box inside the viewport."""
    page = watched.page
    width = page.viewport_size["width"]
    # Against the viewport itself: a phone browser zooms out to fit a page that is too wide,
    # and then innerWidth grows with the page.
    assert page.evaluate(WIDTHS) == [width, width], f"{label}: the page scrolls sideways"
    right_edges = page.evaluate(
        "[...document.querySelectorAll('#delivery td.delivery-status, #delivery-to')]"
        ".map(e => e.getBoundingClientRect().right)"
    )
    assert right_edges and max(right_edges) <= width, label
    # The recipient box shows a whole address.
    assert page.evaluate(
        "(e => e.scrollWidth <= e.clientWidth)(document.getElementById('delivery-to'))"
    ), label


def _worker_sends_what_is_due() -> list[str]:
    """What a db_worker does with the deliveries that are due."""
    return [delivery_services.deliver(pk) for pk in delivery_services.due_delivery_ids()]


def test_send_now_turns_a_pending_row_sent_without_a_reload(browser, site, agent, issued, settings):
    """Mail server down: Email certificate leaves a pending row; server up: Send now, and the
    row turns sent while the page stays; every landing is at the panel."""
    req, cert = issued
    port = free_port()  # nothing listens here yet: the mail server is down
    settings.MAILERS = build_mailers(f"smtp://127.0.0.1:{port}?timeout=2", "")
    clerk = Watched(browser, width=1280, height=800)
    page = clerk.page
    issued_url = f"/agent/requests/{req.public_id}/issued/"
    _login(clerk, site, agent.username, AGENT_PASSWORD, next_url=issued_url)
    page.wait_for_selector("h1:has-text('Certificate issued')")
    _fits(clerk, "issued page, 1280 px")
    assert page.evaluate(PANEL_TOP) < 600  # near the top, not under the certificate

    page.click("button:has-text('Email certificate')")
    page.wait_for_selector("#delivery .messages li")
    assert page.url.endswith(f"{issued_url}#delivery")
    assert abs(page.evaluate(PANEL_TOP)) <= 2 and page.evaluate("window.scrollY") > 0
    said = page.inner_text("#delivery .messages")
    assert f"Not sent yet: the certificate to {ADDRESS} failed" in said, said
    mine = Delivery.objects.get(certificate=cert, kind="certificate")
    row = page.locator(f"#delivery tr[data-delivery='{mine.public_id}']")
    status = f"#delivery tr[data-delivery='{mine.public_id}'] td.delivery-status"
    assert "pending" in page.inner_text(status)
    clerk.shot("panel-01-pending-mail-server-down")

    # The mail server comes up; from now on a worker sends (the live server only queues).
    server = SMTPServer(port=port).start()
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}
    try:
        row.locator("button:has-text('Send now')").click()
        page.wait_for_selector("#delivery .messages li")
        assert page.url.endswith(f"{issued_url}#delivery")
        assert abs(page.evaluate(PANEL_TOP)) <= 2
        said = page.inner_text("#delivery .messages")
        assert f"Sending the certificate to {ADDRESS} now" in said, said
        assert "pending" in page.inner_text(status)
        assert page.is_visible("#delivery .live-note")  # the script took over from Refresh
        page.evaluate("window.stillThisPage = true")

        assert _worker_sends_what_is_due() == [Delivery.Status.SENT]
        page.wait_for_selector(f"{status}:has-text('sent')", timeout=8000)
        assert page.evaluate("window.stillThisPage") is True  # no reload
        assert page.locator("#delivery .delivery-refresh").count() == 0  # polling stopped
        assert page.locator("#delivery button:has-text('Send now')").count() == 0
        clerk.shot("panel-02-sent-without-reload")
    finally:
        server.stop()
    assert [m["To"] for m in server.messages] == [ADDRESS]
    _fits(clerk, "issued page after sending, 1280 px")
    assert clerk.violations == []

    phone = Watched(browser, width=360, height=740, is_mobile=True, has_touch=True)
    phone.context.add_cookies(clerk.context.cookies())
    phone.page.goto(f"{site}{issued_url}#delivery")
    phone.page.wait_for_selector("#delivery td.delivery-status")
    _fits(phone, "issued page, 360 px")
    assert phone.page.is_visible(f"{status}:has-text('sent')")
    phone.shot("panel-03-phone-360")
    assert phone.violations == []


def test_without_javascript_the_panel_offers_refresh(browser, site, agent, issued, settings):
    """With scripts off a pending row shows the Refresh link, which opens the panel."""
    req, cert = issued
    settings.MAILERS = build_mailers(f"smtp://127.0.0.1:{free_port()}?timeout=2", "")
    delivery_services.send_certificate(cert, method="link", actor=agent)
    clerk = Watched(browser, width=1280, height=800)
    issued_url = f"/agent/requests/{req.public_id}/issued/"
    _login(clerk, site, agent.username, AGENT_PASSWORD, next_url=issued_url)
    nojs = Watched(browser, width=1280, height=800, java_script_enabled=False)
    nojs.context.add_cookies(clerk.context.cookies())
    nojs.page.goto(f"{site}{issued_url}")
    link = nojs.page.locator("#delivery .manual-note a:has-text('Refresh')")
    assert link.is_visible()
    link.click()
    nojs.page.wait_for_load_state()
    assert nojs.page.url.endswith(f"{issued_url}#delivery")
