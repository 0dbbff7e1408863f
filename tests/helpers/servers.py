"""Real servers and processes for end-to-end tests: an SMTP server on a free port, and the
environment and command line of portal processes (db_worker) sharing a test's database."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import os
import socket
import sys
import threading

from django.db import connection


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
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


class HoldingSMTPServer(SMTPServer):
    """Records each message, then holds back its "250" until `release` is set: the message
    is with the mail server while the sender has not yet been told so."""

    def __init__(self, port: int | None = None):
        super().__init__(port)
        self.arrived = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        answer = await super().handle_DATA(server, session, envelope)
        self.arrived.set()
        while not self.release.is_set():
            await asyncio.sleep(0.02)
        return answer


#: The background worker as deployments run it, `manage.py run_worker` (db_worker that
#: outlives database errors and writes the heartbeat /healthz asks for); add "--batch" to
#: stop when the queue is empty.
DB_WORKER = [
    sys.executable,
    "manage.py",
    "run_worker",
    "--no-startup-delay",
    "--no-reload",
    "--interval",
    "0.1",
    "-v",
    "0",
]


def portal_env(settings, **extra: str) -> dict[str, str]:
    """The environment of a portal process that uses this (transactional) test's PostgreSQL
    database, its CA key files and the durable task queue: production settings (DEBUG off),
    except that it serves plain http on loopback, so no https redirect or secure cookies."""
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return env | {
        "DJANGO_SETTINGS_MODULE": "ca_portal.settings",
        "ENV_FILE": "/nonexistent/.env",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "TASKS_BACKEND": "database",
        "CA_KEY_DIR": str(settings.CA_KEY_DIR),
        "CA_KEY_PASSPHRASE": settings.CA_KEY_PASSPHRASE,
        "SECRET_KEY": settings.SECRET_KEY,
        "SECURE_SSL_REDIRECT": "False",
        "SESSION_COOKIE_SECURE": "False",
        "CSRF_COOKIE_SECURE": "False",
        **extra,
    }
