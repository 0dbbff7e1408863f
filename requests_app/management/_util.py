"""Shared parts of the management commands: input, lookups, error mapping and output."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, OutputWrapper
from django.core.serializers.json import DjangoJSONEncoder

from requests_app import pki, profiles, services
from requests_app.models import (
    APPROVE_PERMISSION,
    Certificate,
    CertificateRequest,
)


def printable(value) -> str:
    """Requester-controlled text for a terminal: control and formatting characters are
    written as escapes (\\n, \\x00, \\u202e), never obeyed."""
    return pki.escape_text(str(value))


@contextmanager
def service_errors() -> Iterator[None]:
    """Turn a refused service call into a CommandError carrying its message."""
    try:
        yield
    except services.ServiceError as exc:
        raise CommandError(exc.message) from None


def read_input(path: str) -> bytes:
    """The bytes of a file named on the command line ("-" for stdin)."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None


def write_output(path: str, data: bytes) -> None:
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_binary(stdout: OutputWrapper, data: bytes) -> None:
    """Write bytes to the command's stdout (its binary buffer when it has one)."""
    stdout.flush()
    buffer = getattr(stdout._out, "buffer", None)
    if buffer is not None:
        buffer.write(data)
        buffer.flush()
    else:  # a text stream (e.g. StringIO in call_command): only text fits
        try:
            stdout._out.write(data.decode("ascii"))
        except UnicodeDecodeError:
            raise CommandError("binary output needs --output PATH here") from None


def agent_user(username: str | None):
    """The user named by --agent, who must hold the approve permission; None without it."""
    if username is None:
        return None
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"no user named {username!r}")
    if not user.has_perm(APPROVE_PERMISSION):
        raise CommandError(
            f"user {username!r} may not act on requests: not an active user with the "
            f"{APPROVE_PERMISSION} permission (group {services.AGENTS_GROUP!r})"
        )
    return user


def administrator_label(command: str) -> str:
    """Who vouches for a requester's address when an administrator submits with a command:
    the operating-system account that ran manage.py (commands have no portal login)."""
    try:
        account = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        account = f"uid {os.getuid()}"
    return f"administrator {account} (manage.py {command})"


def positive_int(text: str) -> int:
    """argparse type for --limit and --validity-days."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    """argparse type for counts that may be 0 (--path-length)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def find_request(text: str) -> CertificateRequest:
    """The request with that ID, or CommandError."""
    req = CertificateRequest.objects.select_related("certificate", "acted_by").by_public_id(text)
    if req is None:
        raise CommandError(f"no request has the ID {text}")
    return req


def find_certificate(text: str) -> Certificate:
    """The certificate a serial names (Certificate.objects.by_serial's rule), or CommandError."""
    try:
        pki.parse_serial(text)
        cert = Certificate.objects.select_related("ca").by_serial(text)
    except pki.SerialError as exc:  # not a serial, or digits that name two certificates
        raise CommandError(f"{text!r}: {exc}") from None
    if cert is None:
        raise CommandError(f"no certificate has the serial number {text}")
    return cert


def request_data(req: CertificateRequest, *, history: bool = False) -> dict:
    data = {
        "request_id": req.display_id,
        "status": req.status,
        "profile": req.profile,
        "subject": req.subject,
        "key_type": req.key_type,
        "key_size": req.key_size,
        "public_key_sha256": req.public_key_sha256,
        "requested_sans": req.requested_sans,
        "requester_name": req.requester_name,
        "requester_email": req.requester_email,
        "requester_note": req.requester_note,
        "submitted_at": req.submitted_at,
        "updated_at": req.updated_at,
        "acted_by": req.acted_by.get_username() if req.acted_by else None,
        "agent_note": req.agent_note,
        "certificate_serial": req.certificate.serial if req.certificate else None,
    }
    if history:
        data["csr_pem"] = req.csr_pem
        data["submitter_ip"] = req.submitter_ip
        data["history"] = [
            {
                "time": event.time,
                "actor": event.actor_label,
                "action": event.action,
                "details": event.details,
                "ip": event.ip,
            }
            for event in req.audit_events.order_by("time", "id")
        ]
    return data


def certificate_data(cert: Certificate) -> dict:
    return {
        "serial": cert.serial,
        "subject": cert.subject,
        "sans": cert.sans,
        "profile": cert.profile,
        "status": cert.status,
        "not_before": cert.not_before,
        "not_after": cert.not_after,
        "fingerprint_sha256": cert.fingerprint_sha256,
        "ca": cert.ca.name,
    }


def write_json(stdout: OutputWrapper, data) -> None:
    stdout.write(json.dumps(data, cls=DjangoJSONEncoder, indent=2))


class ProgressBar:
    """A one-line progress bar for a terminal; silent when output is not a terminal."""

    def __init__(self, stdout: OutputWrapper, *, width: int = 30):
        self.stdout = stdout
        self.width = width
        self.enabled = stdout.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total == 0:
            return
        filled = self.width * done // total
        bar = "#" * filled + "-" * (self.width - filled)
        self.stdout.write(f"\r[{bar}] {done}/{total}", ending="")
        if done == total:
            self.stdout.write("")
        self.stdout.flush()


def add_request_arguments(parser) -> None:
    """What submit_request and issue_certificate both take: a CSR and who asks for it."""
    parser.add_argument("--profile", required=True, choices=profiles.profile_names())
    parser.add_argument("--csr", required=True, metavar="PATH", help='PEM or DER; "-": stdin')
    parser.add_argument("--email", required=True, help="the requester's email address")
    parser.add_argument("--name", default="", help="the requester's name")
    parser.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="NAME",
        help="an extra hostname or IP address (server profile); repeat for more",
    )
