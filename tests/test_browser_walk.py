"""The walk: every page requesters and agents see, in Chromium at a phone's width (360x740)
and a desktop's (1280x800). No page may scroll sideways, and each one is photographed whole
into SCREENSHOT_DIR (default test-artifacts/screenshots/walk/, which git ignores) for a
person to look at."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography import x509

from requests_app import services
from requests_app.acme import services as acme_services
from tests import test_browser
from tests.helpers.csrs import make_csr
from tests.helpers.mailbox import confirmed
from tests.test_browser import (  # noqa: F401 - browser and site are fixtures
    AGENT_PASSWORD,
    CHROMIUM,
    PASSPHRASE,
    Watched,
    _login,
    browser,
    site,
)

SHOTS = Path(
    os.environ.get("SCREENSHOT_DIR")
    or Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots" / "walk"
)
SIZES = {"phone": (360, 740), "desktop": (1280, 800)}
#: Long unbroken text, as people type it, to find what does not wrap.
LONG_NAME = "a-very-long-host-name-that-goes-on-and-on-without-a-break.department.example.test"
LONG_CN = "a-very-long-host-name-without-any-break-at-all.example.test"  # a CN has 64 at most

pytestmark = test_browser.pytestmark  # browser-marked; skipped without Chromium


@pytest.fixture
def walk_data(ca, agent, settings):
    """A server certificate with long names, a personal one with a portal-made key, a
    pending request, a rejected one and an ACME account binding."""
    settings.SERVER_KEY_TYPE = "p256"
    server = services.submit_request(
        profile="server",
        csr=make_csr(cn=LONG_CN, sans=[x509.DNSName(LONG_CN), x509.DNSName(LONG_NAME)]),
        requester_email="web-operations-team-with-a-long-address@department.example.test",
        requester_name="Web Operations",
        note="Please issue this before the maintenance window on Friday night.",
    )
    server_cert = services.approve_request(server, agent=agent)
    personal = services.submit_request_with_server_key(
        profile="user",
        passphrase=PASSPHRASE,
        requester_email="ada@example.test",
        requester_name="Ada Lovelace",
    )
    personal_cert = services.approve_request(confirmed(personal), agent=agent)
    own_key = services.submit_request(
        profile="user", csr=make_csr(cn="Grace Hopper"), requester_email="grace@example.test"
    )
    own_key_cert = services.approve_request(confirmed(own_key), agent=agent)
    pending = services.submit_request(
        profile="server",
        csr=make_csr(cn="pending.example.test", sans=[x509.DNSName(LONG_NAME)]),
        requester_email="ops@example.test",
        requester_name="Ops",
    )
    to_approve = services.submit_request(
        profile="server", csr=make_csr(cn=LONG_CN), requester_email="ops@example.test"
    )
    rejected = services.submit_request(
        profile="server", csr=make_csr(cn="old.example.test"), requester_email="o@example.test"
    )
    services.reject_request(rejected, agent=agent, reason="old.example.test is not ours.")
    acme_services.create_binding(email="acme-client@example.test", names=[LONG_NAME], actor=agent)
    return {
        "server": server,
        "server_cert": server_cert,
        "personal": personal,
        "personal_cert": personal_cert,
        "own_key_cert": own_key_cert,
        "pending": pending,
        "to_approve": to_approve,
        "rejected": rejected,
    }


def _requester_pages(d) -> dict[str, str]:
    return {
        "home": "/",
        "enroll-server": "/enroll/server/",
        "enroll-user": "/enroll/user/",
        "enroll-server-key": "/enroll/user/server-key/",
        "request-lookup": "/requests/",
        "status-pending": d["pending"].get_absolute_url(),
        "status-complete": d["server"].get_absolute_url(),
        "status-rejected": d["rejected"].get_absolute_url(),
        "certificate-lookup": "/certificates/",
        "certificate-server": f"/certificates/{d['server_cert'].serial}/",
        "certificate-personal": f"/certificates/{d['personal_cert'].serial}/",
        "certificate-personal-own-key": f"/certificates/{d['own_key_cert'].serial}/",
        "ca": "/ca/",
        "not-found": "/no-such-page/",
        "agent-login": "/accounts/login/",
    }


def _agent_pages(d) -> dict[str, str]:
    pending, server = d["pending"], d["server"]
    return {
        "agent-queue": "/agent/",
        "agent-queue-all": "/agent/?status=complete",
        "agent-request-pending": f"/agent/requests/{pending.public_id}/",
        "agent-request-complete": f"/agent/requests/{server.public_id}/",
        "agent-issued": f"/agent/requests/{server.public_id}/issued/",
        "agent-certificate": f"/agent/certificates/{d['server_cert'].serial}/",
        "agent-expiring": "/agent/expiring/",
        "agent-acme-accounts": "/agent/acme/",
        "agent-my-certificates": "/agent/me/certificates/",
        "admin-changelist": "/admin/requests_app/certificaterequest/",
        "admin-changelist-all": "/admin/requests_app/certificaterequest/?status__exact=all",
        "admin-changelist-certificates": "/admin/requests_app/certificate/",
        "admin-change-pending": f"/admin/requests_app/certificaterequest/{pending.pk}/change/",
        "admin-change-complete": f"/admin/requests_app/certificaterequest/{server.pk}/change/",
        "admin-certificate-change": (
            f"/admin/requests_app/certificate/{d['server_cert'].pk}/change/"
        ),
    }


#: The innermost elements that reach past the screen's right edge, to name in a failure.
WIDEST = """(width) => [...document.querySelectorAll("body *")]
  .filter((e) => e.getBoundingClientRect().right > width + 1)
  .filter((e) => ![...e.children].some((c) => c.getBoundingClientRect().right > width + 1))
  .slice(0, 6)
  .map((e) => `${e.tagName.toLowerCase()}.${e.className}`
    + ` ${Math.round(e.getBoundingClientRect().right)}px "${e.textContent.trim().slice(0, 40)}"`)
  .join("; ")"""


def _visit(user: Watched, base: str, size: str, name: str, path: str) -> str | None:
    """Open the page, photograph it, and say how far it scrolls sideways (None: not at all).

    A phone's browser zooms out to show a page wider than the screen, which widens
    innerWidth too: the page fits only if innerWidth is still the screen's width."""
    response = user.page.goto(f"{base}{path}")
    assert response is not None
    expected = 404 if name == "not-found" else 200
    assert response.status == expected, f"{path}: {response.status}"
    return _measure(user, size, name, path)


def _measure(user: Watched, size: str, name: str, path: str) -> str | None:
    """Photograph the page as it is, and say how far it scrolls sideways (None: not at all)."""
    # Folded sections too: the install steps' commands are in them.
    user.page.evaluate("document.querySelectorAll('details').forEach((d) => { d.open = true; })")
    SHOTS.mkdir(parents=True, exist_ok=True)
    user.page.screenshot(path=SHOTS / f"{size}-{name}.png", full_page=True)
    scroll_width, inner_width = user.page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )
    if scroll_width > inner_width or inner_width != SIZES[size][0]:
        culprits = user.page.evaluate(WIDEST, SIZES[size][0])
        return f"{size} {path}: {scroll_width}px wide in {inner_width}px; {culprits}"
    if size == "desktop" and name.startswith("admin-changelist"):
        # The admin's list scrolls inside its own box: on a desktop every column must show.
        inner, box = user.page.evaluate(
            "(() => { const r = document.querySelector('.results');"
            " return [r.scrollWidth, r.clientWidth]; })()"
        )
        if inner > box:
            return f"{size} {path}: the list is {inner}px wide in a {box}px box"
    return None


@pytest.mark.parametrize("size", SIZES)
def test_no_page_scrolls_sideways(browser, site, walk_data, agent, size):  # noqa: F811
    """Every page of the walk, as requester and as agent, fits the screen's width."""
    width, height = SIZES[size]
    options = {"is_mobile": True, "has_touch": True} if size == "phone" else {}
    requester = Watched(browser, width=width, height=height, **options)
    too_wide = [
        _visit(requester, site, size, name, path)
        for name, path in _requester_pages(walk_data).items()
    ]
    clerk = Watched(browser, width=width, height=height, **options)
    _login(clerk, site, agent.username, AGENT_PASSWORD, next_url="/agent/")
    clerk.page.wait_for_selector("h1:has-text('Requests')")
    too_wide += [
        _visit(clerk, site, size, name, path) for name, path in _agent_pages(walk_data).items()
    ]
    # Approving shows the issued page with a message naming the serial.
    clerk.page.goto(f"{site}/agent/requests/{walk_data['to_approve'].public_id}/")
    clerk.page.click("button:has-text('Approve and issue')")
    clerk.page.wait_for_selector("h1:has-text('Certificate issued')")
    assert "approved" in clerk.page.inner_text(".messages")
    too_wide.append(_measure(clerk, size, "agent-issued-after-approval", clerk.page.url))
    assert [problem for problem in too_wide if problem] == [], "\n".join(filter(None, too_wide))
    assert requester.violations == clerk.violations == []
