"""The whole flow in a real browser (Chromium through Playwright) against a live server, ending
in real TLS handshakes; screenshots of the main pages go to test-artifacts/screenshots/."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from django.core.cache import cache

from requests_app import links, services
from tests.helpers.csrs import make_csr, openssl_csr
from tests.helpers.mailbox import confirmed
from tests.helpers.mfa import add_totp_device, next_totp_code
from tests.helpers.tls import client_context, handshake, p12_to_pem_files, server_context

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
PASSPHRASE = "violet staircase under the moon"
AGENT_PASSWORD = "agent-pass-123"  # the agent fixture's

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Chromium is missing: apt-get install chromium"
    ),
]


@pytest.fixture(autouse=True)
def _localhost_is_a_server_name(settings):
    """These tests serve TLS on localhost: a single-label name, which the server profile
    takes only when allow_single_label_names is set (issue 12)."""
    settings.CA_PROFILES = {"server": {"allow_single_label_names": True}}


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread, which Django would take for
    # async code and refuse ORM calls in; the tests and the live server are synchronous.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-gpu",
                "--no-first-run",
            ],
        )
        yield chromium
        chromium.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def site(live_server, settings):
    """The live server's base URL, which mailed links now point at."""
    settings.SITE_URL = live_server.url
    cache.clear()
    yield live_server.url
    cache.clear()


class Watched:
    """A page plus the Content-Security-Policy violations its console reported."""

    def __init__(self, browser, *, width: int = 1200, height: int = 900, **options):
        self.context = browser.new_context(viewport={"width": width, "height": height}, **options)
        self.page = self.context.new_page()
        self.page.set_default_timeout(10_000)
        self.violations: list[str] = []
        self.page.on("console", self._console)

    def _console(self, message):
        if "Content Security Policy" in message.text:
            self.violations.append(message.text)

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


def _totp_device_of(username: str):
    """The agent's authenticator app (one is added if they have none): agents pass a second
    factor after the password."""
    from django.contrib.auth import get_user_model
    from django_otp.plugins.otp_totp.models import TOTPDevice

    user = get_user_model().objects.filter(username=username).first()
    if user is None or not services.needs_second_factor(user):
        return None
    return TOTPDevice.objects.filter(user=user, confirmed=True).first() or add_totp_device(user)


def _pass_second_factor(user: Watched, device) -> None:
    """On the second-factor page, type the code the agent's app shows."""
    page = user.page
    page.wait_for_load_state()
    if device is not None and "/accounts/verify/" in page.url:
        page.fill("#id_code", next_totp_code(device))
        page.click("main form[action='/accounts/verify/'] button[type=submit]")
        page.wait_for_load_state()


def _login(user: Watched, site: str, username: str, password: str, *, next_url: str) -> None:
    device = _totp_device_of(username)
    page = user.page
    page.goto(f"{site}/accounts/login/?next={next_url}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("main button[type=submit]")
    _pass_second_factor(user, device)


def _mailed_link(smtp_server, to: str, site: str) -> str:
    """The retrieval link in the newest message to this address."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for message in reversed(smtp_server.messages):
            if to in message["To"]:
                text = message.get_body(preferencelist=("plain",)).get_content()
                found = re.search(rf"{re.escape(site)}/retrieve/\S+/", text)
                if found:
                    return found.group(0)
        time.sleep(0.05)  # the mailer runs in the live server's thread
    raise AssertionError(f"no retrieval link mailed to {to}: {smtp_server.messages}")


def _mailed_confirmation(smtp_server, to: str, site: str) -> str:
    """The email confirmation link in the newest message to this address."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for message in reversed(smtp_server.messages):
            if to in message["To"]:
                text = message.get_body(preferencelist=("plain",)).get_content()
                found = re.search(rf"{re.escape(site)}/requests/\S+/confirm/\S+/", text)
                if found:
                    return found.group(0)
        time.sleep(0.05)  # the mailer runs in the live server's thread
    raise AssertionError(f"no confirmation link mailed to {to}: {smtp_server.messages}")


def _verify(ca_pem: Path, chain: Path, *, hostname: str) -> None:
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", ca_pem, "-verify_hostname", hostname, chain],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_flow_1_server_certificate_with_manual_delivery(
    browser, site, ca, agent, smtp_server, tmp_path
):
    """A requester enrolls an openssl CSR; an agent finds, approves and mails the link; the
    requester downloads the full chain, which openssl verifies and a TLS server uses."""
    csr = openssl_csr(tmp_path, subject="/CN=tls.example.test", sans="DNS:tls.example.test")
    requester = Watched(browser)
    page = requester.page
    page.goto(f"{site}/")
    requester.shot("01-home")
    page.click("text=TLS server certificate")
    page.fill("#id_csr", csr.read_text())
    page.fill("#id_requester_name", "Web Operations")
    page.fill("#id_requester_email", "ops@example.test")
    requester.shot("02-enroll-server")
    page.click("text=Submit request")
    request_id = page.inner_text(".request-id").strip()
    assert "Your request was submitted" in page.inner_text(".messages")
    requester.shot("03-status-pending")

    clerk = Watched(browser)
    _login(clerk, site, agent.username, AGENT_PASSWORD, next_url="/agent/")
    clerk.page.wait_for_selector("h1:has-text('Requests')")
    clerk.shot("04-agent-queue")
    clerk.page.fill("#find-q", request_id)
    clerk.page.press("#find-q", "Enter")
    clerk.page.wait_for_selector(f"h1:has-text('{request_id}')")
    clerk.shot("05-request-details")
    clerk.page.click("text=Approve and issue")
    clerk.page.wait_for_selector("h1:has-text('Certificate issued')")
    clerk.shot("06-certificate-issued")
    clerk.page.click("button:has-text('Email retrieval link')")
    assert "Sent a retrieval link to" in clerk.page.inner_text("#delivery .messages")

    page.goto(_mailed_link(smtp_server, "ops@example.test", site))
    assert "Certificate" in page.inner_text("h1")
    requester.shot("07-certificate-server")
    with page.expect_download() as download:
        page.click("text=Download full chain (PEM)")
    fullchain = tmp_path / download.value.suggested_filename
    download.value.save_as(fullchain)
    assert fullchain.name.endswith("-fullchain.pem")

    page.goto(f"{site}/ca/")
    requester.shot("08-ca-page")
    with page.expect_download() as download:
        page.click("text=CA certificate (PEM)")
    ca_pem = tmp_path / "ca.pem"
    download.value.save_as(ca_pem)

    _verify(ca_pem, fullchain, hostname="tls.example.test")
    server = server_context(fullchain, tmp_path / "req.key")
    assert handshake(server, client_context(ca_pem), "tls.example.test").ok
    assert requester.violations == clerk.violations == []


def test_flow_2_user_certificate_with_server_key(browser, site, ca, agent, smtp_server, tmp_path):
    """A requester enrolls with a passphrase; an agent approves in the admin; the mailed link
    leads to the .p12, which openssl opens and a TLS server accepts as a client identity."""
    requester = Watched(browser)
    page = requester.page
    page.goto(f"{site}/enroll/user/")
    requester.shot("09-enroll-user")
    page.click("text=Enroll without a CSR")
    page.fill("#id_requester_name", "Ada Lovelace")
    page.fill("#id_requester_email", "ada@example.test")
    page.fill("#id_passphrase", PASSPHRASE)
    page.fill("#id_passphrase_confirm", PASSPHRASE)
    requester.shot("10-enroll-server-key")
    page.click("text=Make my key and submit the request")
    request_id = page.inner_text(".request-id").strip()
    assert "We sent a message to ada@example.test" in page.inner_text(".messages")

    clerk = Watched(browser)
    changelist = "/admin/requests_app/certificaterequest/"
    device = _totp_device_of(agent.username)
    clerk.page.goto(f"{site}/admin/login/?next={changelist}")
    clerk.page.fill("#id_username", agent.username)
    clerk.page.fill("#id_password", AGENT_PASSWORD)
    clerk.page.click("input[type=submit], button[type=submit]")
    _pass_second_factor(clerk, device)
    clerk.page.wait_for_selector("#changelist")
    assert request_id not in clerk.page.inner_text("#changelist")  # not until confirmed

    page.goto(_mailed_confirmation(smtp_server, "ada@example.test", site))
    page.click("form.confirm-form button")
    assert "your email address is confirmed" in page.inner_text(".messages")
    clerk.page.reload()
    clerk.page.wait_for_selector("#result_list")
    assert "by the requester (mailed link)" in clerk.page.inner_text("#result_list")
    clerk.page.check("input[name=_selected_action]")
    clerk.page.select_option("select[name=action]", "approve_selected")
    clerk.page.click("#changelist-form button[name=index]")
    # One approval lands on its "certificate issued" page, with the delivery buttons.
    clerk.page.wait_for_selector("h1:has-text('Certificate issued')")
    assert f"Approved request {request_id}" in clerk.page.inner_text(".messages")
    clerk.shot("11-admin-approved")
    clerk.page.goto(f"{site}{changelist}?status__exact=all")
    clerk.page.click(f"#result_list a:has-text('{request_id}')")
    clerk.page.wait_for_selector("#content-main")  # the change page works under the CSP too

    page.goto(_mailed_link(smtp_server, "ada@example.test", site))
    requester.shot("12-certificate-with-key")
    downloads = []
    page.on("download", lambda d: downloads.append(d))
    page.fill("#id_passphrase", "not the passphrase at all")
    page.click("text=Download certificate and key (.p12)")
    assert "That passphrase does not open your key" in page.inner_text("#key")
    requester.shot("13-wrong-passphrase")
    assert downloads == []

    page.fill("#id_passphrase", PASSPHRASE)
    page.check("input[value=modern]")
    with page.expect_download() as download:
        page.click("text=Download certificate and key (.p12)")
    p12 = tmp_path / download.value.suggested_filename
    download.value.save_as(p12)
    assert p12.suffix == ".p12"
    page.goto(page.url.split("pkcs12/")[0])
    assert "the key was then erased from this server" in page.inner_text("#key")
    requester.shot("14-key-downloaded")

    info = subprocess.run(
        ["openssl", "pkcs12", "-in", p12, "-info", "-noout", "-passin", "env:P12PASS"],
        capture_output=True,
        text=True,
        env={**os.environ, "P12PASS": PASSPHRASE},
    )
    assert info.returncode == 0, info.stderr

    ca_pem = tmp_path / "ca.pem"
    ca_pem.write_text(ca.certificate_pem)
    server_key = tmp_path / "server.key"
    subprocess.run(
        [
            *("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
            *(
                "-nodes",
                "-keyout",
                server_key,
                "-out",
                tmp_path / "s.csr",
                "-subj",
                "/CN=tls.example.test",
            ),
        ],
        check=True,
        capture_output=True,
    )
    server_cert = services.issue_certificate(
        profile="server", csr=(tmp_path / "s.csr").read_text(), requester_email="ops@example.test"
    )
    fullchain = tmp_path / "server-fullchain.pem"
    fullchain.write_text(server_cert.pem + ca.certificate_pem)
    server = server_context(fullchain, server_key, client_ca=ca_pem)
    cert_file, key_file = p12_to_pem_files(p12.read_bytes(), PASSPHRASE, tmp_path)
    outcome = handshake(
        server, client_context(ca_pem, cert=cert_file, key=key_file), "tls.example.test"
    )
    assert outcome.ok, outcome
    assert outcome.client_cert["subjectAltName"] == (("email", "ada@example.test"),)
    assert requester.violations == clerk.violations == []


def test_flow_4_user_request_waits_for_the_mailed_confirmation(
    browser, site, ca, agent, smtp_server, tmp_path
):
    """A personal request is invisible to the agents until its requester opens the mailed
    link and confirms; then it is in the queue, marked confirmed."""
    csr = openssl_csr(tmp_path, subject="/CN=Grace Hopper")
    requester = Watched(browser)
    page = requester.page
    page.goto(f"{site}/enroll/user/")
    page.fill("#id_csr", csr.read_text())
    page.fill("#id_requester_email", "grace@example.test")
    page.click("text=Submit request")
    request_id = page.inner_text(".request-id").strip()
    assert "We sent a message to grace@example.test" in page.inner_text(".messages")
    assert "Confirm your email address" in page.inner_text("main")
    requester.shot("18-status-awaiting-email")

    clerk = Watched(browser)
    _login(clerk, site, agent.username, AGENT_PASSWORD, next_url="/agent/")
    clerk.page.wait_for_selector("h1:has-text('Requests')")
    assert request_id not in clerk.page.inner_text("main")
    clerk.page.goto(f"{site}/agent/?status=pending")
    assert request_id not in clerk.page.inner_text("main")

    link = _mailed_confirmation(smtp_server, "grace@example.test", site)
    page.goto(link)
    assert "Confirm your email address" in page.inner_text("h1")
    requester.shot("19-confirm-email")
    page.click("form.confirm-form button")
    assert "your email address is confirmed" in page.inner_text(".messages")
    assert "Pending" in page.inner_text(".fields")
    requester.shot("20-status-confirmed")

    page.goto(link)  # the link works once: now it only says so
    assert "This address was confirmed on" in page.inner_text("main")
    assert page.locator("form.confirm-form").count() == 0

    clerk.page.goto(f"{site}/agent/")
    row = clerk.page.locator("tr", has_text=request_id)
    assert row.count() == 1
    assert "confirmed" in row.locator(".email-confirmed").inner_text()
    clerk.shot("21-agent-queue-confirmed")
    assert requester.violations == clerk.violations == []


def test_flow_3_refusals(browser, site, ca, agent, django_user_model):
    """A non-agent cannot reach the agent pages, a tampered link shows the clear page, and a
    rejected request's status page shows the reason."""
    django_user_model.objects.create_user("mallory", "m@example.test", "mallory-pass-123")
    outsider = Watched(browser)
    _login(outsider, site, "mallory", "mallory-pass-123", next_url="/agent/")
    assert "Not allowed" in outsider.page.inner_text("h1")
    assert "not a Certificate Manager agent" in outsider.page.inner_text("main")
    outsider.shot("15-not-an-agent")
    anonymous = Watched(browser)
    anonymous.page.goto(f"{site}/agent/")
    assert "/accounts/login/" in anonymous.page.url

    req = services.submit_request(
        profile="server", csr=make_csr(cn="shop.example.test"), requester_email="s@example.test"
    )
    cert = services.approve_request(req, agent=agent)
    token = links.retrieval_token(cert)
    anonymous.page.goto(f"{site}/retrieve/{token[:-4]}AAAA/")
    assert "This link does not work" in anonymous.page.inner_text("h1")
    assert cert.serial not in anonymous.page.content()
    anonymous.shot("16-link-invalid")

    rejected = services.submit_request(
        profile="server", csr=make_csr(cn="old.example.test"), requester_email="o@example.test"
    )
    services.reject_request(rejected, agent=agent, reason="old.example.test is not ours.")
    anonymous.page.goto(f"{site}{rejected.get_absolute_url()}")
    assert "old.example.test is not ours." in anonymous.page.inner_text("blockquote")
    anonymous.shot("17-status-rejected")
    assert outsider.violations == anonymous.violations == []


def test_pages_fit_a_phone(browser, site, ca, agent):
    """On a phone-sized screen no page scrolls sideways; screenshots show how they look."""
    req = services.submit_request_with_server_key(
        profile="user",
        passphrase=PASSPHRASE,
        requester_email="ada@example.test",
        requester_name="Ada Lovelace",
    )
    awaiting = services.submit_request(
        profile="user", csr=make_csr(cn="Ada"), requester_email="ada@example.test"
    )
    cert = services.approve_request(confirmed(req), agent=agent)
    phone = Watched(browser, width=390, height=844, is_mobile=True, has_touch=True)
    pages = {
        "phone-home": "/",
        "phone-enroll-server-key": "/enroll/user/server-key/",
        "phone-status": req.get_absolute_url(),
        "phone-status-awaiting-email": awaiting.get_absolute_url(),
        "phone-confirm-email": f"/requests/{awaiting.public_id}/confirm/",
        "phone-certificate": f"/certificates/{cert.serial}/",
        "phone-ca": "/ca/",
    }
    for name, path in pages.items():
        phone.page.goto(f"{site}{path}")
        phone.shot(name)
        overflow = phone.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{path} is {overflow}px too wide"
    _login(phone, site, agent.username, AGENT_PASSWORD, next_url="/agent/")
    phone.page.wait_for_selector("h1:has-text('Requests')")
    phone.shot("phone-agent-queue")
    assert phone.violations == []
