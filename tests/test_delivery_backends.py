"""Delivery backends: the plugin contract, the handler, and each shipped backend for real."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import io
import json
import re
import subprocess
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.utils import timezone

from delivery import services as delivery_services
from delivery.backends import (
    BaseDeliveryBackend,
    DeliveryError,
    SendResult,
    get_backend,
    load_backend,
)
from delivery.backends import test as test_backend
from delivery.backends.webhook import SIGNATURE_HEADER, signature
from delivery.models import Delivery
from requests_app import services
from tests.helpers.csrs import make_csr
from tests.helpers.mailbox import submit_confirmed
from tests.helpers.servers import free_port

Status = Delivery.Status


@pytest.fixture(autouse=True)
def _empty_test_outbox():
    test_backend.outbox.clear()
    yield
    test_backend.outbox.clear()


@pytest.fixture
def issued(ca, agent):
    """An approved user request and its certificate (nothing sent yet)."""
    req = submit_confirmed(
        profile="user",
        csr=make_csr(cn="Ann Example"),
        requester_email="ann@example.test",
        requester_name="Ann",
    )
    cert = services.approve_request(req.public_id, agent=agent)
    req.refresh_from_db()
    return req, cert


class HookServer:
    """A local HTTP server that checks the signature and answers with a chosen status."""

    def __init__(self, secret: str):
        self.secret = secret
        self.status = 204
        self.received: list[tuple[dict, bool]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = (
                    "sha256=" + hmac.new(server.secret.encode(), body, hashlib.sha256).hexdigest()
                )
                valid = hmac.compare_digest(expected, self.headers.get(SIGNATURE_HEADER, ""))
                server.received.append((json.loads(body), valid))
                self.send_response(server.status if valid else 401)
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


@pytest.fixture
def hook_server(settings):
    server = HookServer("webhook-secret-0123456789")
    settings.DELIVERY_BACKENDS = settings.DELIVERY_BACKENDS | {
        "webhook": {
            "BACKEND": "delivery.backends.webhook.Webhook",
            "OPTIONS": {"url": server.url, "secret": server.secret, "timeout": 5},
        }
    }
    yield server
    server.close()


def _delivery(req, cert, *, backend, kind, recipient=None):
    plugin = get_backend(backend)
    return Delivery.objects.create(
        request=req,
        certificate=cert,
        backend=backend,
        kind=kind,
        recipient=recipient or plugin.default_recipient(req, cert),
    )


# --- the contract every shipped backend passes ---------------------------------------

SHIPPED = [
    ("email_certificate", "certificate"),
    ("email_link", "link"),
    ("notify", "request_received"),
    ("notify", "request_waiting"),
    ("notify", "request_rejected"),
    ("notify", "request_canceled"),
    ("notify", "expiry_reminder"),
    ("webhook", "certificate"),
    ("test", "certificate"),
    ("test", "link"),
]


@pytest.mark.usefixtures("hook_server")
class TestBackendContract:
    """Every shipped backend: a subclass of the base, sends its kinds, refuses others."""

    @pytest.mark.parametrize(("alias", "kind"), SHIPPED)
    def test_sends_its_kinds(self, issued, alias, kind):
        """send() returns a SendResult for each kind the backend declares."""
        req, cert = issued
        backend = get_backend(alias)
        assert isinstance(backend, BaseDeliveryBackend)
        assert kind in backend.kinds
        result = backend.send(_delivery(req, cert, backend=alias, kind=kind))
        assert isinstance(result, SendResult)

    @pytest.mark.parametrize("alias", sorted({alias for alias, _ in SHIPPED}))
    def test_refuses_a_kind_it_does_not_send(self, issued, alias):
        """A kind outside the backend's list is a permanent DeliveryError."""
        req, cert = issued
        delivery = _delivery(
            req, cert, backend=alias, kind="no-such-kind", recipient="x@example.test"
        )
        with pytest.raises(DeliveryError) as info:
            get_backend(alias).send(delivery)
        assert info.value.permanent

    @pytest.mark.parametrize("alias", sorted({alias for alias, _ in SHIPPED}))
    def test_refuses_unknown_options(self, settings, alias):
        """An unknown OPTIONS key is refused naming the alias."""
        config = dict(settings.DELIVERY_BACKENDS[alias])
        config["OPTIONS"] = {**config.get("OPTIONS", {}), "colour": "blue"}
        settings.DELIVERY_BACKENDS = settings.DELIVERY_BACKENDS | {alias: config}
        with pytest.raises(ImproperlyConfigured, match=f"DELIVERY_BACKENDS\\['{alias}'\\].*colour"):
            load_backend(alias)


def test_unimplemented_hooks_name_the_subclass(issued):
    """A backend that forgets a hook is told which one, by its class name."""

    class Half(BaseDeliveryBackend):
        kinds = ("link",)

    req, cert = issued
    with pytest.raises(NotImplementedError, match="Half must implement build_message"):
        Half("half").send(_delivery(req, cert, backend="test", kind="link"))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"BACKEND": "delivery.backends.nowhere.Backend"}, "cannot import BACKEND"),
        ({"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}, "not a subclass"),
        ({"BACKEND": "delivery.backends.test.TestBackend", "OPTONS": {}}, "unknown keys"),
        (
            {"BACKEND": "delivery.backends.webhook.Webhook", "OPTIONS": {"url": "ftp://x"}},
            "http\\(s\\) URL",
        ),
        (
            {
                "BACKEND": "delivery.backends.webhook.Webhook",
                "OPTIONS": {"url": "http://x", "secret": "short"},
            },
            "at least 16",
        ),
        (
            {"BACKEND": "delivery.backends.email.LinkEmail", "OPTIONS": {"mailer": "nope"}},
            "not in MAILERS",
        ),
    ],
)
def test_the_system_check_catches_bad_settings(settings, config, message):
    """A bad DELIVERY_BACKENDS entry is a start-up error naming the alias and the problem."""
    settings.DELIVERY_BACKENDS = settings.DELIVERY_BACKENDS | {"broken": config}
    errors = checks.run_checks()
    assert any(
        e.id == "delivery.E001" and "'broken'" in e.msg and re.search(message, e.msg)
        for e in errors
    )


def test_the_system_check_catches_a_bad_policy(settings):
    """DELIVERY_POLICY naming an unconfigured backend is a start-up error."""
    settings.DELIVERY_POLICY = {"user": ["carrier_pigeon"]}
    assert any(e.id == "delivery.E003" for e in checks.run_checks())


def test_a_third_party_backend_by_dotted_path(settings, issued, django_capture_on_commit_callbacks):
    """A backend outside our code, named by dotted path in settings, is used on approval."""
    settings.DELIVERY_BACKENDS = settings.DELIVERY_BACKENDS | {
        "vault": {
            "BACKEND": "tests.helpers.plugin_example.VaultBackend",
            "OPTIONS": {"path": "pki/"},
        }
    }
    settings.DELIVERY_POLICY = {"server": ["vault"]}
    from tests.helpers import plugin_example

    plugin_example.stored.clear()
    req = services.submit_request(
        profile="server", csr=make_csr(cn="db.example.test"), requester_email="o@example.test"
    )
    with django_capture_on_commit_callbacks(execute=True):
        cert = services.approve_request(req.public_id, agent=None)
    assert plugin_example.stored == {f"pki/{cert.serial}": cert.pem}


# --- SMTP, for real --------------------------------------------------------------------


def test_link_mail_over_smtp_leads_to_the_certificate(
    smtp_server, ca, agent, client, django_capture_on_commit_callbacks, settings
):
    """Approving a user request mails one link through SMTP; following it shows the certificate."""
    settings.DELIVERY_NOTIFICATIONS = False
    req = submit_confirmed(
        profile="user", csr=make_csr(cn="Ann Example"), requester_email="ann@example.test"
    )
    with django_capture_on_commit_callbacks(execute=True):
        cert = services.approve_request(req.public_id, agent=agent)
    assert len(smtp_server.messages) == 1
    message = smtp_server.messages[0]
    assert message["To"] == "ann@example.test"
    text = message.get_body(("plain",)).get_content()
    assert cert.serial_colons in text and req.display_id in text
    link = re.search(r"http://testserver(/retrieve/\S+/)", text).group(1)
    page = client.get(link, follow=True)
    assert page.status_code == 200
    assert cert.serial_colons in page.content.decode()
    assert Delivery.objects.get(certificate=cert).status == Status.SENT


def test_an_altered_or_expired_link_reveals_nothing(smtp_server, issued, client, settings):
    """A changed or expired link shows a clear page with no certificate details."""
    req, cert = issued
    from requests_app import links

    token = links.retrieval_token(cert)
    altered = client.get(f"/retrieve/{token[:-2]}xx/")
    assert altered.status_code == 404
    assert cert.serial not in altered.content.decode()
    assert "serial number" in altered.content.decode()
    settings.RETRIEVAL_LINK_MAX_AGE_DAYS = -1
    expired = client.get(f"/retrieve/{token}/")
    assert expired.status_code == 404
    assert cert.serial not in expired.content.decode()


def test_certificate_mail_over_smtp_carries_a_verifiable_certificate(
    smtp_server, issued, agent, tmp_path, django_capture_on_commit_callbacks
):
    """email_certificate attaches certificate and chain; both parse and verify against the CA."""
    req, cert = issued
    with django_capture_on_commit_callbacks(execute=True):
        delivery_services.send_certificate(cert, method="certificate", actor=agent)
    message = smtp_server.messages[-1]
    attachments = {part.get_filename(): part.get_content() for part in message.iter_attachments()}
    assert set(attachments) == {f"{cert.serial_filename}.pem", f"{cert.serial_filename}-chain.p7b"}
    leaf = x509.load_pem_x509_certificate(attachments[f"{cert.serial_filename}.pem"])
    assert leaf.serial_number == int(cert.serial, 16)
    chain = pkcs7.load_der_pkcs7_certificates(attachments[f"{cert.serial_filename}-chain.p7b"])
    assert {c.serial_number for c in chain} == {
        leaf.serial_number,
        cert.ca.certificate.serial_number,
    }
    assert "-----BEGIN CERTIFICATE-----" in message.get_body(("plain",)).get_content()
    (tmp_path / "leaf.pem").write_bytes(attachments[f"{cert.serial_filename}.pem"])
    (tmp_path / "ca.pem").write_text(cert.ca.certificate_pem)
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", tmp_path / "ca.pem", tmp_path / "leaf.pem"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_smtp_down_then_up_delivers_each_message_exactly_once(
    settings, ca, agent, django_capture_on_commit_callbacks
):
    """With the mail server down 20 approvals succeed and wait; once it is up each arrives once."""
    from ca_portal.settings import build_mailers
    from tests.helpers.servers import SMTPServer

    settings.DELIVERY_NOTIFICATIONS = False
    down = SMTPServer(port=free_port())  # nothing listens on this port yet
    settings.MAILERS = build_mailers(down.email_url, "")
    requests = [
        submit_confirmed(
            profile="user", csr=make_csr(cn=f"User {i}"), requester_email=f"u{i}@example.test"
        )
        for i in range(20)
    ]
    with django_capture_on_commit_callbacks(execute=True):
        certs = [services.approve_request(r.public_id, agent=agent) for r in requests]
    deliveries = Delivery.objects.filter(certificate__in=certs)
    assert deliveries.count() == 20
    for delivery in deliveries:
        assert delivery.status == Status.PENDING
        assert "refused the connection: nothing listens there" in delivery.last_error
        assert delivery.next_attempt_at is not None
    server = down.start()
    try:
        call_command("retry_deliveries", "--now", stdout=io.StringIO())
        call_command("retry_deliveries", "--now", stdout=io.StringIO())  # idempotent
    finally:
        server.stop()
    recipients = sorted(m["To"] for m in server.messages)
    assert recipients == sorted(f"u{i}@example.test" for i in range(20))
    assert set(deliveries.values_list("status", flat=True)) == {Status.SENT}


def test_smtp_5xx_is_permanent_and_4xx_temporary(settings, issued):
    """A 550 from the server fails the delivery at once; a 451 schedules a retry."""
    from ca_portal.settings import build_mailers
    from tests.helpers.servers import SMTPServer

    class Refusing(SMTPServer):
        code = "550 5.1.1 no such user"

        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            return self.code

    req, cert = issued
    server = Refusing().start()
    settings.MAILERS = build_mailers(server.email_url, "")
    try:
        hard = _delivery(req, cert, backend="email_link", kind="link")
        Delivery.objects.filter(pk=hard.pk).update(next_attempt_at=timezone.now())
        assert delivery_services.deliver(hard.pk) == Status.FAILED
        assert "550" in Delivery.objects.get(pk=hard.pk).last_error
        server.code = "451 4.3.0 try later"
        soft = _delivery(req, cert, backend="email_link", kind="link")
        Delivery.objects.filter(pk=soft.pk).update(next_attempt_at=timezone.now())
        assert delivery_services.deliver(soft.pk) == Status.PENDING
    finally:
        server.stop()


# --- the webhook ----------------------------------------------------------------------


def test_webhook_posts_a_signed_document(hook_server, issued):
    """The receiver verifies the HMAC signature and gets the certificate and its chain."""
    req, cert = issued
    delivery = _delivery(req, cert, backend="webhook", kind="certificate")
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=cert.created)
    assert delivery_services.deliver(delivery.pk) == Status.SENT
    document, valid = hook_server.received[0]
    assert valid
    assert document["serial"] == cert.serial
    assert document["request_id"] == req.display_id
    assert document["profile"] == "user"
    assert document["pem"] == cert.pem
    assert document["chain"] == cert.ca.certificate_pem
    assert (
        signature("k" * 16, b"{}")
        == "sha256=" + hmac.new(b"k" * 16, b"{}", hashlib.sha256).hexdigest()
    )


def test_webhook_500_is_retried_and_400_is_permanent(hook_server, issued):
    """A 500 answer schedules a retry; a 400 fails the delivery for good."""
    req, cert = issued
    hook_server.status = 500
    retried = _delivery(req, cert, backend="webhook", kind="certificate")
    Delivery.objects.filter(pk=retried.pk).update(next_attempt_at=cert.created)
    assert delivery_services.deliver(retried.pk) == Status.PENDING
    assert "HTTP 500" in Delivery.objects.get(pk=retried.pk).last_error
    hook_server.status = 400
    refused = _delivery(req, cert, backend="webhook", kind="certificate")
    Delivery.objects.filter(pk=refused.pk).update(next_attempt_at=cert.created)
    assert delivery_services.deliver(refused.pk) == Status.FAILED


def test_webhook_unreachable_is_temporary(settings, issued):
    """A webhook that nobody answers is retried later."""
    settings.DELIVERY_BACKENDS = settings.DELIVERY_BACKENDS | {
        "webhook": {
            "BACKEND": "delivery.backends.webhook.Webhook",
            "OPTIONS": {
                "url": f"http://127.0.0.1:{free_port()}/",
                "secret": "s" * 16,
                "timeout": 2,
            },
        }
    }
    req, cert = issued
    delivery = _delivery(req, cert, backend="webhook", kind="certificate")
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=cert.created)
    assert delivery_services.deliver(delivery.pk) == Status.PENDING


def test_a_worker_keeps_its_mail_connection(
    smtp_server, issued, agent, django_capture_on_commit_callbacks
):
    """Deliveries sent one after another by one thread share one SMTP connection."""
    _, cert = issued
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            delivery_services.send_certificate(cert, method="link", actor=agent)
    assert len(smtp_server.messages) == 3
    assert len(set(smtp_server.peers)) == 1


def test_a_kept_connection_the_server_dropped_is_replaced(
    settings, issued, agent, django_capture_on_commit_callbacks
):
    """When the server has closed the kept connection, the next mail reconnects and arrives."""
    from ca_portal.settings import build_mailers
    from tests.helpers.servers import SMTPServer

    _, cert = issued
    first = SMTPServer().start()
    settings.MAILERS = build_mailers(first.email_url, "")
    with django_capture_on_commit_callbacks(execute=True):
        delivery_services.send_certificate(cert, method="link", actor=agent)
    first.stop()  # drops the connection the worker kept
    second = SMTPServer(port=first.port).start()
    try:
        with django_capture_on_commit_callbacks(execute=True):
            delivery = delivery_services.send_certificate(cert, method="link", actor=agent)
    finally:
        second.stop()
    delivery.refresh_from_db()
    assert delivery.status == Status.SENT
    assert len(first.messages) == 1 and len(second.messages) == 1
