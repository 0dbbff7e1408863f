"""What an agent reads in "Last error": one humane sentence per failure class, read from real
servers (aiosmtpd, a plain socket, an HTTP server) that fail in each way; the raw cause is
in the audit row only."""

from __future__ import annotations

import http.server
import re
import socket
import threading
import time

import pytest
from aiosmtpd.smtp import AuthResult
from django.utils import timezone

from ca_portal.settings import build_mailers
from delivery import errors
from delivery import services as delivery_services
from delivery.backends import BaseDeliveryBackend, get_backend
from delivery.models import Delivery
from requests_app import services
from requests_app.models import AuditEvent
from tests.helpers.csrs import make_csr
from tests.helpers.mailbox import submit_confirmed
from tests.helpers.servers import SMTPServer, free_port

Status = Delivery.Status
#: What must never reach an agent: a dict or tuple repr, a bytes literal, a class name.
PYTHON_LOOKS = re.compile(r"\{'|\(\d{3}, b'|b'|b\"|Error\(|Exception|Traceback|<\w+ ")


@pytest.fixture
def issued(ca, agent, settings):
    """An approved user request and its certificate, nothing sent yet."""
    settings.DELIVERY_AUTOMATIC = False
    req = submit_confirmed(
        profile="user",
        csr=make_csr(cn="Ann Example"),
        requester_email="x@example.test",
        requester_name="Ann",
    )
    cert = services.approve_request(req.public_id, agent=agent)
    req.refresh_from_db()
    return req, cert


def _deliver(req, cert, *, backend="email_link", kind="link") -> Delivery:
    """One delivery sent now; the row as it stands afterwards."""
    delivery = Delivery.objects.create(
        request=req,
        certificate=cert,
        backend=backend,
        kind=kind,
        recipient=get_backend(backend).default_recipient(req, cert),
        next_attempt_at=timezone.now(),
    )
    delivery_services.deliver(delivery.pk)
    delivery.refresh_from_db()
    return delivery


def _humane(delivery: Delivery) -> str:
    text = delivery.last_error
    assert text, "no error recorded"
    assert not PYTHON_LOOKS.search(text), text
    assert text[0].isupper() and text.endswith("."), text
    return text


def _audited_detail(delivery: Delivery) -> str:
    event = AuditEvent.objects.filter(details__delivery=delivery.pk).latest("pk")
    assert event.details["error"] == delivery.last_error[:500]
    return event.details.get("detail", "")


def _use(settings, url: str) -> None:
    settings.MAILERS = build_mailers(url, "")


# --- SMTP ---------------------------------------------------------------------------------


class Refusing(SMTPServer):
    """Answers RCPT, MAIL or DATA with the chosen reply."""

    rcpt = mail = data = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt:
            return self.rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mail:
            return self.mail
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data:
            return self.data
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def refusing(settings):
    server = Refusing().start()
    _use(settings, server.email_url)
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("where", "reply", "status", "expected"),
    [
        (
            "rcpt",
            "550 5.1.1 mailbox unavailable (test)",
            Status.FAILED,
            "The mail server refused the address x@example.test: mailbox unavailable (550 5.1.1).",
        ),
        (
            "rcpt",
            "552 5.2.2 mailbox full",
            Status.FAILED,
            "The mail server refused the address x@example.test: the mailbox is full (552 5.2.2).",
        ),
        (
            "rcpt",
            "451 4.7.1 greylisted, try again in 5 minutes",
            Status.PENDING,
            "The mail server did not accept the address x@example.test for now: try again "
            "later (greylisting) (451 4.7.1). The portal tries again later.",
        ),
        (
            "mail",
            "553 5.1.8 sender address rejected",
            Status.FAILED,
            "The mail server refused the sender address ca-portal@localhost: the address is "
            "not allowed (553 5.1.8). Check DEFAULT_FROM_EMAIL.",
        ),
        (
            "data",
            "554 5.7.1 message refused as spam",
            Status.FAILED,
            "The mail server refused the message to x@example.test: delivery not authorized "
            "(a policy or spam filter refused it) (554 5.7.1).",
        ),
        (
            "data",
            "452 4.3.1 insufficient system storage",
            Status.PENDING,
            "The mail server did not accept for now the message to x@example.test: the "
            "server is out of storage for now (452 4.3.1).",
        ),
    ],
)
def test_smtp_refusals_read_as_sentences(refusing, issued, where, reply, status, expected):
    """Each refusal of a real SMTP server becomes its sentence, permanent or retried."""
    setattr(refusing, where, reply)
    delivery = _deliver(*issued)
    assert delivery.status == status
    assert _humane(delivery) == expected
    detail = _audited_detail(delivery)
    assert reply.split(" ", 1)[0] in detail  # the raw reply, for experts


def test_the_issue_example_is_no_longer_a_python_repr(refusing, issued):
    """The 550 of the issue reads as the issue asked, with nothing of Python in it."""
    refusing.rcpt = "550 5.1.1 mailbox unavailable (test)"
    delivery = _deliver(*issued)
    assert delivery.last_error == (
        "The mail server refused the address x@example.test: mailbox unavailable (550 5.1.1)."
    )
    assert "b'" not in delivery.last_error and "{" not in delivery.last_error


def test_a_wrong_smtp_password_reads_as_a_login_failure(settings, issued):
    """A 535 to the portal's login names EMAIL_URL's credentials and is retried."""
    from aiosmtpd.controller import Controller

    server = SMTPServer()
    controller = Controller(
        server,
        hostname="127.0.0.1",
        port=server.port,
        authenticator=lambda *args: AuthResult(success=False, handled=False),
        auth_require_tls=False,
    )
    controller.start()
    try:
        _use(settings, f"smtp://portal:wrong@127.0.0.1:{server.port}?timeout=5")
        delivery = _deliver(*issued)
    finally:
        controller.stop()
    assert delivery.status == Status.PENDING
    text = _humane(delivery)
    assert text.startswith(f"The mail server 127.0.0.1:{server.port} refused the portal's login")
    assert "(535 5.7.8)" in text and "Check the user name and password in EMAIL_URL" in text


def test_a_closed_port_reads_as_refused(settings, issued):
    """Nothing listening: the server refused the connection, and it is retried."""
    port = free_port()
    _use(settings, f"smtp://127.0.0.1:{port}?timeout=5")
    delivery = _deliver(*issued)
    assert delivery.status == Status.PENDING
    assert _humane(delivery) == (
        f"The mail server 127.0.0.1:{port} refused the connection: nothing listens there, "
        "or it is down. The portal tries again later."
    )
    assert "ConnectionRefusedError" in _audited_detail(delivery)


def test_implicit_tls_to_a_plain_server_reads_as_a_tls_mismatch(smtp_server, settings, issued):
    """smtp+ssl:// to a server that speaks plain SMTP: no TLS, and what to check."""
    _use(settings, f"smtp+ssl://127.0.0.1:{smtp_server.port}?timeout=5")
    delivery = _deliver(*issued)
    text = _humane(delivery)
    assert text.startswith(
        f"No TLS connection could be set up with the mail server 127.0.0.1:{smtp_server.port} ("
    )
    assert "uses the scheme and port the server expects (implicit TLS or STARTTLS)" in text


def test_starttls_to_a_server_without_it_reads_as_a_tls_mismatch(smtp_server, settings, issued):
    """smtp+tls:// to a server that offers no STARTTLS names the setting to check."""
    _use(settings, f"smtp+tls://127.0.0.1:{smtp_server.port}?timeout=5")
    delivery = _deliver(*issued)
    text = _humane(delivery)
    assert "does not support what EMAIL_URL asks for (STARTTLS or login)" in text
    assert "STARTTLS extension not supported by server" in text


class _Socket:
    """A TCP server that, per connection, closes at once or says nothing for a while."""

    def __init__(self, *, silent: bool):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.silent = silent
        self.open = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.silent:
                self.open.append(conn)  # keep it open and quiet
            else:
                conn.close()

    def close(self):
        self.sock.close()
        for conn in self.open:
            conn.close()


def test_a_server_that_hangs_up_reads_as_disconnected(settings, issued):
    """A server that closes the connection at once: disconnected, retried."""
    server = _Socket(silent=False)
    try:
        _use(settings, f"smtp://127.0.0.1:{server.port}?timeout=5")
        delivery = _deliver(*issued)
    finally:
        server.close()
    assert delivery.status == Status.PENDING
    assert _humane(delivery) == (
        f"The mail server 127.0.0.1:{server.port} closed the connection unexpectedly. "
        "The portal tries again later."
    )


def test_a_silent_server_reads_as_a_timeout(settings, issued):
    """A server that never greets: it did not answer in time, retried."""
    server = _Socket(silent=True)
    try:
        _use(settings, f"smtp://127.0.0.1:{server.port}?timeout=1")
        delivery = _deliver(*issued)
    finally:
        server.close()
    assert delivery.status == Status.PENDING
    assert _humane(delivery) == (
        f"The mail server 127.0.0.1:{server.port} did not answer in time. "
        "The portal tries again later."
    )


def test_an_unknown_host_reads_as_a_dns_failure(settings, issued):
    """A host name that does not resolve (.invalid never does) names DNS and EMAIL_URL."""
    _use(settings, "smtp://no-such-host.invalid:25?timeout=5")
    delivery = _deliver(*issued)
    assert delivery.status == Status.PENDING
    assert _humane(delivery) == (
        "The name of the mail server no-such-host.invalid:25 could not be found in DNS. "
        "Check the host name in EMAIL_URL; the portal tries again later."
    )


# --- webhooks -----------------------------------------------------------------------------


class Hook:
    """An HTTP server answering POSTs with a chosen status, a redirect or a long silence."""

    def __init__(self):
        self.status = 204
        self.location = ""
        self.delay = 0.0
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(hook.delay)
                self.send_response(hook.status)
                if hook.location:
                    self.send_header("Location", hook.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):  # where urllib would send a redirected POST, without its body
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _webhook(settings, url: str, timeout: int = 5) -> None:
    settings.DELIVERY_BACKENDS = settings.DELIVERY_BACKENDS | {
        "webhook": {
            "BACKEND": "delivery.backends.webhook.Webhook",
            "OPTIONS": {"url": url, "secret": "s" * 16, "timeout": timeout},
        }
    }


@pytest.fixture
def hook(settings):
    server = Hook()
    _webhook(settings, server.url)
    yield server
    server.close()


@pytest.mark.parametrize(
    ("status", "row", "expected"),
    [
        (500, Status.PENDING, "answered HTTP 500 Internal Server Error: its server failed; the portal tries again later."),  # noqa: E501
        (503, Status.PENDING, "answered HTTP 503 Service Unavailable: its server failed; the portal tries again later."),  # noqa: E501
        (404, Status.FAILED, "answered HTTP 404 Not Found: there is no such address: check the webhook's URL."),  # noqa: E501
        (401, Status.FAILED, "answered HTTP 401 Unauthorized: it refused the request: check that both sides use the same webhook secret."),  # noqa: E501
        (422, Status.FAILED, "answered HTTP 422 Unprocessable Content: it refused the document."),
    ],
)  # fmt: skip
def test_webhook_answers_read_as_sentences(hook, issued, status, row, expected):
    """Each HTTP error of a real webhook becomes its sentence, retried or final."""
    hook.status = status
    delivery = _deliver(*issued, backend="webhook", kind="certificate")
    assert delivery.status == row
    assert _humane(delivery) == f"The webhook {hook.url} {expected}"


def test_a_webhook_redirect_is_reported_not_followed(hook, issued):
    """A 302 is not followed (urllib would re-send the POST as a bodyless GET and call it
    delivered): the row fails and says where it pointed."""
    hook.status = 302
    hook.location = "http://127.0.0.1:1/elsewhere"
    delivery = _deliver(*issued, backend="webhook", kind="certificate")
    assert delivery.status == Status.FAILED
    assert _humane(delivery) == (
        f"The webhook {hook.url} answered with a redirect (HTTP 302) to "
        "http://127.0.0.1:1/elsewhere. The portal does not follow redirects with the "
        "certificate; set the webhook's URL to the final address."
    )


def test_a_slow_webhook_reads_as_a_timeout(hook, settings, issued):
    """A webhook slower than its timeout did not answer in time, and is retried."""
    _webhook(settings, hook.url, timeout=1)
    hook.delay = 2
    delivery = _deliver(*issued, backend="webhook", kind="certificate")
    assert delivery.status == Status.PENDING
    assert _humane(delivery) == (
        f"The webhook {hook.url} did not answer in time. The portal tries again later."
    )


def test_a_webhook_nobody_listens_on_reads_as_refused(settings, issued):
    """A closed port: refused, retried."""
    url = f"http://127.0.0.1:{free_port()}/hook"
    _webhook(settings, url)
    delivery = _deliver(*issued, backend="webhook", kind="certificate")
    assert delivery.status == Status.PENDING
    assert _humane(delivery) == (
        f"The webhook {url} refused the connection: nothing listens there, or it is down. "
        "The portal tries again later."
    )


def test_https_to_a_plain_http_webhook_reads_as_a_tls_failure(hook, settings, issued):
    """https:// to a server that speaks plain HTTP: no TLS connection, and what to check."""
    url = hook.url.replace("http://", "https://")
    _webhook(settings, url)
    delivery = _deliver(*issued, backend="webhook", kind="certificate")
    assert delivery.status == Status.PENDING
    text = _humane(delivery)
    assert text.startswith(f"No TLS connection could be set up with the webhook {url} (")


# --- ESPs and the portal's own faults ------------------------------------------------------


def test_esp_errors_read_as_sentences():
    """django-anymail's errors: a refused recipient, bad credentials, a provider outage."""
    from anymail.exceptions import (
        AnymailAPIError,
        AnymailRecipientsRefused,
        AnymailRequestsAPIError,
    )

    refused = errors.esp_error(AnymailRecipientsRefused("x"), recipient="x@example.test")
    assert refused.permanent
    assert refused.message == (
        "The mail provider refused the address x@example.test: it is invalid, has bounced "
        "before, or asked for no more mail."
    )
    creds = AnymailAPIError("Postmark API response 401: Bad API key", status_code=401)
    creds.esp_name = "Postmark"
    error = errors.esp_error(creds, recipient="x@example.test")
    assert error.message == (
        "The mail provider (Postmark) refused the portal's credentials (HTTP 401). "
        "Check the ANYMAIL_ settings (API key, server token)."
    )
    outage = AnymailAPIError("Postmark API response 503", status_code=503)
    outage.esp_name = "Postmark"
    error = errors.esp_error(outage, recipient="x@example.test")
    assert not error.permanent
    assert error.message == (
        "The mail provider (Postmark) had an error (HTTP 503 Service Unavailable). "
        "The portal tries again later."
    )
    # Anymail's HTTP errors are OSErrors too: still read as the provider's, not as SMTP's.
    http = AnymailRequestsAPIError("Postmark API response 502", status_code=502)
    http.esp_name = "Postmark"
    assert isinstance(http, OSError)
    error = errors.mail_error(http, recipient="x@example.test", host="localhost", port=25)
    assert error.message == (
        "The mail provider (Postmark) had an error (HTTP 502 Bad Gateway). "
        "The portal tries again later."
    )
    other = ValueError("not anymail's")
    assert errors.esp_error(other, recipient="x@example.test") is other
    assert errors.mail_error(other, recipient="x@example.test") is other


def test_a_fault_in_the_portal_reads_as_one_and_keeps_its_detail(settings, issued):
    """An unexpected exception in a backend names no Python to the agent; the audit has it."""
    settings.DELIVERY_BACKENDS = settings.DELIVERY_BACKENDS | {
        "exploding": {"BACKEND": "tests.test_delivery_errors.Exploding"}
    }
    delivery = _deliver(*issued, backend="exploding", kind="link")
    assert delivery.status == Status.PENDING
    assert delivery.last_error == (
        "An unexpected error in the portal stopped this delivery (KeyError); the details "
        "are in the server log. The portal tries again later."
    )
    assert "KeyError: 'boom'" in _audited_detail(delivery)


class Exploding(BaseDeliveryBackend):
    kinds = ("link",)

    def build_message(self, delivery):
        raise KeyError("boom")
