"""A real TLS handshake on 127.0.0.1 between Python `ssl` contexts, for the end-to-end tests."""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12


@dataclass
class Outcome:
    """What each side saw."""

    client_error: Exception | None = None
    server_error: Exception | None = None
    client_cert: dict | None = None  # the certificate the server received, as ssl shows it
    reply: bytes = b""

    @property
    def ok(self) -> bool:
        return self.client_error is None and self.server_error is None and self.reply == b"pong"


def server_context(fullchain: Path, key: Path, *, client_ca: Path | None = None) -> ssl.SSLContext:
    """A server presenting fullchain+key; with client_ca it demands a client certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(fullchain, key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context


def client_context(ca: Path, *, cert: Path | None = None, key: Path | None = None):
    """A client trusting only ca (hostname checked), presenting cert+key if given."""
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str) -> Outcome:
    """Connect client to server by hostname at 127.0.0.1 and exchange one message."""
    outcome = Outcome()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        try:
            conn, _ = listener.accept()
            with server.wrap_socket(conn, server_side=True) as tls:
                outcome.client_cert = tls.getpeercert()
                if tls.recv(4) == b"ping":
                    tls.sendall(b"pong")
        except (OSError, ssl.SSLError) as exc:
            outcome.server_error = exc

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            client.wrap_socket(raw, server_hostname=hostname) as tls,
        ):
            tls.sendall(b"ping")
            # In TLS 1.3 the server judges the client certificate after the client's
            # handshake is done: only the reply proves it was accepted.
            outcome.reply = tls.recv(4)
    except (OSError, ssl.SSLError) as exc:
        outcome.client_error = exc
    finally:
        thread.join(5)
        listener.close()
    return outcome


def p12_to_pem_files(data: bytes, passphrase: str, directory: Path) -> tuple[Path, Path]:
    """Open a PKCS#12 and write its certificate and (unencrypted) key as PEM files."""
    key, cert, _ = pkcs12.load_key_and_certificates(data, passphrase.encode())
    cert_path, key_path = directory / "client.pem", directory / "client.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
