"""Keys the portal makes for requesters without tools: kept sealed under the requester's
passphrase, handed over once as a PKCS#12, then erased."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import pki, profiles, signals
from ..models import CertificateRequest
from .agent_certificates import AGENT_PROFILE
from .audit_log import audit
from .errors import (
    InvalidRequest,
    InvalidTransition,
    KeyNotAvailable,
    ServiceError,
    WrongPassphrase,
)
from .records import lock_request
from .submission import agent_requester, submit_request

Status = CertificateRequest.Status
User = AbstractBaseUser

logger = logging.getLogger(__name__)

PKCS12_FORMATS = pki.PKCS12_FORMATS


def offers_server_key(profile: str) -> bool:
    """True when requesters of this profile may let the portal make their key."""
    return profile in settings.SERVER_KEY_PROFILES


@dataclass(frozen=True)
class ServerKeyState:
    """What the requester is told about a key the portal made for them."""

    stored: bool  # still here and downloadable now
    deadline: dt.datetime | None  # erased at this time unless downloaded first
    erased_at: dt.datetime | None
    erased_because: str  # "", "downloaded", "expired", "request_rejected", "request_canceled"


def server_key_state(req: CertificateRequest) -> ServerKeyState | None:
    """The state of the request's server-made key; None if the requester made their own."""
    if not req.encrypted_private_key and req.key_erased_at is None:
        return None
    deadline = None
    if req.certificate_id is not None:
        deadline = req.certificate.created + dt.timedelta(days=settings.SERVER_KEY_RETENTION_DAYS)
    if req.encrypted_private_key:
        # Past its deadline the key is as good as gone, even before erase_expired_keys runs.
        expired = deadline is not None and deadline <= timezone.now()
        return ServerKeyState(
            stored=not expired,
            deadline=deadline,
            erased_at=None,
            erased_because="expired" if expired else "",
        )
    erased = req.audit_events.filter(action="private_key_erased").order_by("-time", "-pk").first()
    return ServerKeyState(
        stored=False,
        deadline=deadline,
        erased_at=req.key_erased_at,
        erased_because=erased.details.get("reason", "") if erased else "",
    )


@sensitive_variables()  # every frame below, e.g. atomic's **kwds, holds the passphrase
@transaction.atomic
def submit_request_with_server_key(
    *,
    profile: str,
    passphrase: str,
    requester_email: str,
    requester_name: str,
    note: str = "",
    ip: str | None = None,
    actor: User | None = None,
) -> CertificateRequest:
    """Make the key pair here, keep the private key sealed under the passphrase, and submit
    a CSR for it (CN = the requester's name)."""
    if not offers_server_key(profile):
        raise InvalidRequest(
            f"the {profile} profile does not offer keys made by the portal; submit a CSR",
            field="profile",
        )
    return _submit_with_server_key(
        profile=profile,
        passphrase=passphrase,
        requester_email=requester_email,
        requester_name=requester_name,
        note=note,
        ip=ip,
        actor=actor,
        channel="web",
        agent_for=None,
    )


@sensitive_variables()
@transaction.atomic
def request_agent_certificate_with_server_key(
    *, user: User, passphrase: str, note: str = "", ip: str | None = None
) -> CertificateRequest:
    """An agent asks for their own agent certificate with a key made here (whatever
    SERVER_KEY_PROFILES says: agents are logged in), handed over once as a PKCS#12 on the
    certificate's page; approved by another agent, then linked to them."""
    email, name = agent_requester(user)
    return _submit_with_server_key(
        profile=AGENT_PROFILE,
        passphrase=passphrase,
        requester_email=email,
        requester_name=name,
        note=note,
        ip=ip,
        actor=user,
        channel="agent",
        agent_for=user,
    )


@sensitive_variables()
def _submit_with_server_key(
    *,
    profile: str,
    passphrase: str,
    requester_email: str,
    requester_name: str,
    note: str,
    ip: str | None,
    actor: User | None,
    channel: str,
    agent_for: User | None,
) -> CertificateRequest:
    try:
        pki.check_passphrase(passphrase)
    except pki.PKIError as exc:
        raise InvalidRequest(str(exc), field="passphrase") from None
    name = (requester_name or "").strip()
    if not name:
        raise InvalidRequest(
            "your name is required: the certificate names you by it", field="requester_name"
        )
    if any(ch in name for ch in "\r\n"):
        raise InvalidRequest("the name must be on one line", field="requester_name")
    try:
        # The name becomes the CN: checked like a CSR's before a key is made for it.
        name = profiles.typed_common_name(profiles.get_profile(profile), name)
    except profiles.ProfileError as exc:
        raise InvalidRequest(str(exc), field=exc.field or "profile") from None
    key = pki.generate_private_key(settings.SERVER_KEY_TYPE)
    req = submit_request(
        profile=profile,
        csr=pki.build_csr(key, name),
        requester_email=requester_email,
        requester_name=name,
        note=note,
        ip=ip,
        actor=actor,
        channel=channel,
        agent_for=agent_for,
    )
    req.encrypted_private_key = pki.seal(key, passphrase)
    req.save(update_fields=["encrypted_private_key", "updated_at"])
    audit(
        "server_key_generated",
        actor=actor,
        actor_label="requester",
        request=req,
        ip=ip,
        key_type=pki.key_type_of(key),
    )
    signals.server_key_changed.send(
        sender=CertificateRequest, request=req, event="generated", actor=actor
    )
    return req


def _erase_server_key(
    req: CertificateRequest, *, reason: str, actor: User | None, ip: str | None
) -> None:
    req.encrypted_private_key = ""
    req.key_erased_at = timezone.now()
    req.save(update_fields=["encrypted_private_key", "key_erased_at", "updated_at"])
    transaction.on_commit(_scrub_erased_pages)
    audit(
        "private_key_erased",
        actor=actor,
        actor_label="requester" if reason == "downloaded" else "system",
        request=req,
        certificate=req.certificate,
        ip=ip,
        reason=reason,
    )
    signals.server_key_changed.send(
        sender=CertificateRequest, request=req, event="erased", actor=actor
    )


def _scrub_erased_pages() -> None:
    """After an erasure commits: on SQLite the old page still holding the sealed key sits in
    the write-ahead log until a checkpoint, so checkpoint and truncate the log now (the main
    file's freed bytes are zeroed by PRAGMA secure_delete, set per connection in settings).
    PostgreSQL keeps the old row version until VACUUM and in WAL segments until they are
    recycled; nothing here reaches those (its disk is protected by the database's own
    encryption at rest, if any)."""
    if connection.vendor != "sqlite":
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            busy, _, _ = cursor.fetchone()
        if busy:
            logger.warning("the WAL checkpoint after erasing a key was blocked by a reader")
    except DatabaseError:
        logger.exception("the WAL checkpoint after erasing a key failed")


_GONE = {
    "downloaded": "Your private key was downloaded once already and then erased from this "
    "server, as promised. If you lost the .p12 file, submit a new request.",
    "expired": "Your private key was erased because nobody downloaded it within "
    "{days} days of issue. Submit a new request.",
}


def _not_available(req: CertificateRequest) -> KeyNotAvailable:
    state = server_key_state(req)
    if state is None:
        return KeyNotAvailable(
            "This certificate's private key was never stored here: it stays on the computer "
            "where the certificate signing request was made."
        )
    message = _GONE.get(state.erased_because, "Your private key has been erased from this server.")
    return KeyNotAvailable(message.format(days=settings.SERVER_KEY_RETENTION_DAYS))


@sensitive_variables()
def download_server_key(
    request_id: str | CertificateRequest,
    *,
    passphrase: str,
    pkcs12_format: str = "modern",
    ip: str | None = None,
    actor: User | None = None,
) -> bytes:
    """The PKCS#12 (key, certificate, chain) under the passphrase; the stored key is then
    erased, so this works once.

    The transaction is _take_server_key's: a key found expired is erased and that erasure
    committed before the refusal is raised here, outside it."""
    if pkcs12_format not in PKCS12_FORMATS:
        raise InvalidRequest(f"unknown PKCS#12 format {pkcs12_format!r}", field="pkcs12_format")
    outcome = _take_server_key(
        request_id, passphrase=passphrase, pkcs12_format=pkcs12_format, ip=ip, actor=actor
    )
    if isinstance(outcome, ServiceError):
        raise outcome  # only after the erasure of an expired key has been committed
    return outcome


@sensitive_variables()
@transaction.atomic
def _take_server_key(
    request_id, *, passphrase: str, pkcs12_format: str, ip: str | None, actor: User | None
) -> bytes | ServiceError:
    # Locked, so that two downloads at once cannot both get the key.
    req = lock_request(request_id)
    if not req.encrypted_private_key:
        raise _not_available(req)
    if req.status != Status.COMPLETE or req.certificate is None:
        raise InvalidTransition(
            f"request {req.display_id} is {req.status}: the key can be downloaded once the "
            "certificate is issued"
        )
    state = server_key_state(req)
    if state is not None and state.erased_because == "expired":
        _erase_server_key(req, reason="expired", actor=None, ip=ip)
        return _not_available(req)
    try:
        key = pki.unseal(req.encrypted_private_key, passphrase)
    except pki.WrongPassphrase:
        logger.info("wrong passphrase for the key of request %s from %s", req.display_id, ip)
        raise WrongPassphrase(
            "That passphrase does not open your key. Type the passphrase you chose when you "
            "submitted the request (capitals count).",
            field="passphrase",
        ) from None
    cert = req.certificate
    if not pki.same_public_key(key, cert.x509.public_key()):
        raise KeyNotAvailable("the stored key does not belong to this certificate")
    chain = [cert.ca.certificate, *cert.ca.chain]
    name = pki.common_name(cert.x509.subject) or cert.serial
    data = pki.to_pkcs12(key, cert.x509, chain, passphrase, name=name, fmt=pkcs12_format)
    audit(
        "private_key_downloaded",
        actor=actor,
        actor_label="requester",
        request=req,
        certificate=cert,
        ip=ip,
        serial=cert.serial,
        pkcs12_format=pkcs12_format,
    )
    signals.server_key_changed.send(
        sender=CertificateRequest, request=req, event="downloaded", actor=actor
    )
    _erase_server_key(req, reason="downloaded", actor=actor, ip=ip)
    return data


def erase_expired_server_keys(*, now: dt.datetime | None = None) -> int:
    """Erase stored keys not downloaded within SERVER_KEY_RETENTION_DAYS of issue, and those
    of rejected or canceled requests; return how many were erased.

    One transaction per key, not one for all: each erasure locks one row, so a cron run over
    thousands of keys never holds the others (or a requester's download) waiting."""
    cutoff = (now or timezone.now()) - dt.timedelta(days=settings.SERVER_KEY_RETENTION_DAYS)
    due = (
        CertificateRequest.objects.exclude(encrypted_private_key="")
        .filter(
            Q(status=Status.COMPLETE, certificate__created__lte=cutoff)
            | Q(status__in=[Status.REJECTED, Status.CANCELED])
        )
        .values_list("pk", flat=True)
    )
    return sum(_erase_if_due(pk, cutoff) for pk in list(due))


@transaction.atomic
def _erase_if_due(pk: int, cutoff: dt.datetime) -> bool:
    req = CertificateRequest.objects.select_for_update().filter(pk=pk).first()
    if req is None or not req.encrypted_private_key:
        return False  # downloaded (or erased) since the list was read
    if req.status in (Status.REJECTED, Status.CANCELED):
        reason = f"request_{req.status}"
    elif req.status == Status.COMPLETE and req.certificate.created <= cutoff:
        reason = "expired"
    else:
        return False
    _erase_server_key(req, reason=reason, actor=None, ip=None)
    return True
