"""The agent queue and a request's history in Chromium at 360 and 1280 px: no sideways
scrolling, one search box that finds an address, full serials, history in words.
Screenshots go to test-artifacts/screenshots/queue-*.png."""

from __future__ import annotations

import pytest

from requests_app import services
from tests import test_browser
from tests.helpers.csrs import make_csr
from tests.helpers.mailbox import submit_confirmed
from tests.test_browser import AGENT_PASSWORD, Watched, _login

#: test_browser's fixtures: one headless Chromium per module, the live server's URL.
browser = test_browser.browser
site = test_browser.site

pytestmark = test_browser.pytestmark  # browser-marked; skipped without Chromium

WIDTHS = (360, 1280)
NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"


def _fill_queue(agent):
    """A queue with long names, long addresses and issued certificates (full serials)."""
    made = []
    for n in range(6):
        req = submit_confirmed(
            profile="server",
            csr=make_csr(cn=f"very-long-host-name-number-{n}.operations.example.test"),
            requester_email=f"operations.team.member.{n}@subdomain.example.test",
            ip="127.0.0.1",
        )
        if n % 2 == 0:
            services.approve_request(req, agent=agent, ip="127.0.0.1")
        made.append(req)
    wanted = submit_confirmed(
        profile="server",
        csr=make_csr(cn="needle.example.test"),
        requester_email="Needle.Person@Example.ORG",
        ip="127.0.0.1",
    )
    services.approve_request(wanted, agent=agent, ip="127.0.0.1")
    wanted.refresh_from_db()
    return made, wanted


@pytest.mark.parametrize("width", WIDTHS)
def test_queue_fits_and_one_box_finds_an_email(browser, site, ca, agent, width):
    """At 360 and 1280 px the queue has no sideways scroll, one search box, full serials;
    typing an address in the box lists that request alone."""
    made, wanted = _fill_queue(agent)
    clerk = Watched(browser, width=width, height=900)
    _login(clerk, site, agent.username, AGENT_PASSWORD, next_url="/agent/")
    page = clerk.page
    page.wait_for_selector("h1:has-text('Requests')")
    clerk.shot(f"queue-{width}")
    assert page.evaluate(NO_SIDEWAYS_SCROLL), page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )
    boxes = page.locator("main input[type=search], main input[type=text]")
    assert boxes.count() == 1
    serials = page.locator("table.queue td.serial").all_inner_texts()
    assert wanted.certificate.serial_colons in [s.replace("\n", "") for s in serials]
    # The filter labels sit on one line (same top) beside each other on a desktop.
    if width >= 1000:
        tops = page.eval_on_selector_all(
            "form.queue-filter label",
            "els => els.map(e => Math.round(e.getBoundingClientRect().top))",
        )
        assert len(tops) == 3 and len(set(tops)) == 1, tops

    page.fill("#find-q", "needle.person@example.org")
    page.press("#find-q", "Enter")
    page.wait_for_selector("table.queue")
    rows = page.locator("table.queue tbody tr")
    assert rows.count() == 1
    assert "Needle.Person@Example.ORG" in rows.first.inner_text()
    clerk.shot(f"queue-{width}-email-search")
    assert page.evaluate(NO_SIDEWAYS_SCROLL)

    page.fill("#find-q", "nobody@example.test")
    page.press("#find-q", "Enter")
    page.wait_for_selector(".no-match")
    assert "No request matches “nobody@example.test”" in page.inner_text(".no-match")
    assert (
        "serial" not in page.inner_text(".messages") if page.locator(".messages").count() else True
    )

    page.fill("#find-q", wanted.display_id.lower().replace("-", ""))
    page.press("#find-q", "Enter")
    page.wait_for_selector(f"h1:has-text('{wanted.display_id}')")
    clerk.shot(f"queue-{width}-request-history")
    assert page.evaluate(NO_SIDEWAYS_SCROLL), page.evaluate(
        "[...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect().right"
        " > window.innerWidth + 1).slice(0, 8).map(e => e.tagName + '.' + e.className + ' '"
        " + Math.round(e.getBoundingClientRect().right) + ' ' + e.textContent.slice(0, 40))"
    )
    history = page.locator("table.history").inner_text()
    assert "Request submitted" in history
    assert "Request approved, certificate issued" in history
    assert "request_submitted" not in history and "backend:" not in history
    ip_cell = page.locator("table.history td.mono").first
    assert ip_cell.inner_text() == "127.0.0.1"
    lines = ip_cell.evaluate(
        "e => { const r = document.createRange(); r.selectNodeContents(e);"
        " return new Set([...r.getClientRects()].map(b => Math.round(b.top))).size; }"
    )
    assert lines == 1, "127.0.0.1 wrapped"
    assert clerk.violations == []
