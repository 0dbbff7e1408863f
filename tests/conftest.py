"""Shared fixtures: a CA, agents, CSRs made with cryptography or openssl, pending requests."""

from __future__ import annotations

import email
import email.policy
import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from django.db import connection, connections

from requests_app import ca as ca_store
from requests_app import pki, services

AGENTS_GROUP = "Certificate Manager Agents"


@pytest.fixture(autouse=True)
def _fresh_key_cache(settings, tmp_path):
    """Each test gets its own key directory and an empty key cache."""
    settings.CA_KEY_DIR = tmp_path / "ca-keys"
    ca_store.forget_keys()
    yield
    ca_store.forget_keys()


@pytest.fixture
def ca(db):
    """The default CA: a P-256 root."""
    return services.create_ca("CN=Test Root CA,O=ca-portal tests,C=US", key_type="p256")


def make_csr(
    *,
    cn: str | None = "host1.example.test",
    sans: list[x509.GeneralName] | None = None,
    key: pki.PrivateKey | None = None,
    key_type: str = "p256",
) -> str:
    """A PEM CSR signed by a fresh key (or the given one)."""
    key = key or pki.generate_private_key(key_type)
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, pki.signature_hash(key) or None)
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def csr_factory():
    return make_csr


def openssl_csr(
    directory: Path, *, subject: str, key_spec: str = "rsa:2048", sans: str = ""
) -> Path:
    """Make a key and CSR with `openssl req`, as a requester would; return the CSR path."""
    key, csr = directory / "req.key", directory / "req.csr"
    args = ["openssl", "req", "-new", "-newkey", key_spec, "-nodes", "-keyout", str(key)]
    args += ["-out", str(csr), "-subj", subject]
    if sans:
        args += ["-addext", f"subjectAltName={sans}"]
    subprocess.run(args, check=True, capture_output=True)
    return csr


@pytest.fixture
def agent(db, django_user_model):
    user = django_user_model.objects.create_user(
        "agent1", "agent1@example.test", "agent-pass-123", is_staff=True
    )
    user.groups.add(services.agents_group())
    return user


@pytest.fixture
def pending_request(ca):
    return services.submit_request(
        profile="server",
        csr=make_csr(cn="www.example.test"),
        requester_email="admin@example.test",
        requester_name="Server Admin",
    )


# --- a real SMTP server ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SMTPServer:
    """aiosmtpd on 127.0.0.1, recording every message it accepts."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes = []
        self.peers: list[tuple] = []
        self._controller = None

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        self.peers.append(session.peer)  # (host, port): one per connection
        self.messages.append(
            email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        )
        return "250 Message accepted for delivery"

    def start(self):
        from aiosmtpd.controller import Controller

        # aiosmtpd logs every SMTP command at INFO; that costs more than the mail itself.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self):
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def email_url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?timeout=5"


@pytest.fixture
def smtp_server(settings):
    """A running SMTP server that the default mailer sends to (through EMAIL_URL's parser)."""
    from ca_portal.settings import build_mailers

    server = SMTPServer().start()
    settings.MAILERS = build_mailers(server.email_url, "")
    yield server
    server.stop()


# --- concurrency (PostgreSQL tests) ---------------------------------------------------


def race(action, count: int):
    """Run action in `count` threads released at the same instant; return results and errors."""
    barrier = threading.Barrier(count)
    results, errors = [], []
    lock = threading.Lock()

    def run():
        try:
            barrier.wait()
            outcome = action()
            with lock:
                results.append(outcome)
        except Exception as exc:  # every outcome is collected and asserted
            with lock:
                errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results, errors


# --- portal processes (gunicorn, db_worker) sharing a test's database --------------------

#: A background worker as `manage.py db_worker`; add "--batch" to stop when the queue is empty.
DB_WORKER = [
    sys.executable,
    "manage.py",
    "db_worker",
    "--no-startup-delay",
    "--no-reload",
    "--interval",
    "0.1",
    "-v",
    "0",
]


def portal_env(settings, **extra: str) -> dict[str, str]:
    """The environment of a portal process that uses this (transactional) test's PostgreSQL
    database, its CA key files and the durable task queue."""
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return env | {
        "DJANGO_SETTINGS_MODULE": "ca_portal.settings",
        "ENV_FILE": "/nonexistent/.env",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "TASKS_BACKEND": "database",
        "CA_KEY_DIR": str(settings.CA_KEY_DIR),
        "CA_KEY_PASSPHRASE": settings.CA_KEY_PASSPHRASE,
        **extra,
    }
