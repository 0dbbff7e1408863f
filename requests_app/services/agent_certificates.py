"""Agent certificates, as in Dogtag: a certificate of the agent profile, linked to an agent
account, logs that agent in (and counts as both factors). Linking and unlinking, the rule
that no one approves their own agent certificate, and the check of a presented certificate."""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography import x509
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from .. import pki, signals
from ..models import (
    APPROVE_PERMISSION,
    AgentCertificate,
    Certificate,
    CertificateAuthority,
    CertificateRequest,
)
from .audit_log import audit
from .errors import CertificateRefused, InvalidRequest, InvalidTransition, NotAllowed
from .records import lock_certificate

User = AbstractBaseUser

#: The profile whose certificates log agents in.
AGENT_PROFILE = "agent"
#: A PEM certificate longer than this is not one this portal issued (ours are ~1 KiB).
MAX_PRESENTED_CERTIFICATE = 16 * 1024


def is_active_agent(user: User | None) -> bool:
    """An active account holding the agents' permission."""
    return user is not None and user.is_active and user.has_perm(APPROVE_PERMISSION)


# --- linking -------------------------------------------------------------------------


def _check_linkable(cert: Certificate, user: User) -> None:
    if cert.profile != AGENT_PROFILE:
        raise InvalidRequest(
            f"certificate {cert.serial_colons} is of the {cert.profile} profile; "
            f"only {AGENT_PROFILE} "
            "certificates log agents in",
            field="serial",
        )
    if cert.status != Certificate.Status.VALID:
        raise InvalidTransition(f"certificate {cert.serial_colons} is revoked; it cannot be linked")
    if cert.not_after <= pki.utcnow():
        raise InvalidTransition(
            f"certificate {cert.serial_colons} has expired; it cannot be linked"
        )
    if not is_active_agent(user):
        raise InvalidRequest(
            f"{user.get_username()!r} is not an active agent (group and permission "
            f"{APPROVE_PERMISSION}); only agents log in with certificates",
            field="user",
        )
    existing = AgentCertificate.objects.filter(certificate=cert).select_related("user").first()
    if existing is not None:
        raise InvalidTransition(
            f"certificate {cert.serial_colons} is already linked to "
            f"{existing.user.get_username()!r}"
        )
    req = cert.issued_request
    if req is not None and req.agent_for_id is not None and req.agent_for_id != user.pk:
        raise InvalidRequest(
            f"certificate {cert.serial_colons} was requested by agent "
            f"{req.agent_for.get_username()!r} "
            "for themself; it cannot be linked to anyone else",
            field="user",
        )


def _link(cert: Certificate, user: User, *, actor: User | None, ip: str | None, via: str):
    _check_linkable(cert, user)
    link = AgentCertificate.objects.create(user=user, certificate=cert, linked_by=actor)
    audit(
        "agent_certificate_linked",
        actor=actor,
        request=cert.issued_request,
        certificate=cert,
        ca=cert.ca,
        ip=ip,
        serial=cert.serial,
        user=user.get_username(),
        via=via,
    )
    signals.agent_certificate_changed.send(
        sender=AgentCertificate, link=link, event="linked", actor=actor
    )
    return link


def _find_user(user: User | str) -> User:
    if not isinstance(user, str):
        return user
    found = get_user_model().objects.filter(username=user).first()
    if found is None:
        raise InvalidRequest(f"no user named {user!r}", field="user")
    return found


@transaction.atomic
def link_agent_certificate(
    certificate: str | Certificate,
    *,
    user: User | str,
    actor: User | None,
    ip: str | None = None,
) -> AgentCertificate:
    """Link an agent-profile certificate (valid, not yet linked) to an active agent, so that
    it logs them in; for certificates issued outside the agent's own request."""
    cert = lock_certificate(certificate)
    return _link(cert, _find_user(user), actor=actor, ip=ip, via="link")


@transaction.atomic
def unlink_agent_certificate(
    certificate: str | Certificate,
    *,
    actor: User | None,
    ip: str | None = None,
    user: User | str | None = None,
) -> AgentCertificate:
    """Remove a certificate's link to its agent (who must be `user`, when given): it logs
    nobody in from now on."""
    cert = lock_certificate(certificate)
    link = AgentCertificate.objects.filter(certificate=cert).select_related("user").first()
    if link is None:
        raise InvalidTransition(f"certificate {cert.serial_colons} is not linked to an agent")
    expected = user if isinstance(user, str) or user is None else user.get_username()
    if expected is not None and link.user.get_username() != expected:
        raise InvalidRequest(
            f"certificate {cert.serial_colons} is linked to {link.user.get_username()!r}, "
            f"not {expected!r}",
            field="user",
        )
    user = link.user
    link.delete()
    audit(
        "agent_certificate_unlinked",
        actor=actor,
        certificate=cert,
        ca=cert.ca,
        ip=ip,
        serial=cert.serial,
        user=user.get_username(),
    )
    signals.agent_certificate_changed.send(
        sender=AgentCertificate, link=link, event="unlinked", actor=actor
    )
    return link


# --- approval of an agent's own request -----------------------------------------------


def approval_refusal(
    req: CertificateRequest, *, agent: User | None, ip: str | None
) -> NotAllowed | None:
    """Why `agent` may not approve `req`, with its audit row written; None if they may.

    An agent certificate logs its owner in as both factors, so it takes a second person:
    another agent, named (not the anonymous "system" of a command without --agent)."""
    if req.agent_for_id is None:
        return None
    owner = req.agent_for
    if agent is None:
        why, message = (
            "no_agent",
            f"request {req.display_id} is an agent certificate for "
            f"{owner.get_username()!r}: another agent must approve it (name one with --agent)",
        )
    elif agent.pk == owner.pk:
        why, message = (
            "own_agent_certificate",
            f"request {req.display_id} is your own agent certificate: no one approves their "
            "own; another agent must approve it",
        )
    elif not is_active_agent(owner):
        why, message = (
            "owner_not_an_agent",
            f"request {req.display_id} is an agent certificate for {owner.get_username()!r}, "
            "who is no longer an active agent; reject it",
        )
    else:
        return None
    audit(
        "approval_refused",
        actor=agent,
        request=req,
        ip=ip,
        reason=why,
        agent_for=owner.get_username(),
    )
    return NotAllowed(message)


def link_on_approval(
    req: CertificateRequest, cert: Certificate, *, agent: User | None, ip: str | None
) -> AgentCertificate | None:
    """Link the certificate of an agent's own request to that agent (in the approval's
    transaction, after approval_refusal has let it through)."""
    if req.agent_for_id is None:
        return None
    return _link(cert, req.agent_for, actor=agent, ip=ip, via="approval")


# --- logging in with a certificate ----------------------------------------------------


@dataclass
class _Refusal(Exception):
    reason: str
    message: str
    certificate: Certificate | None = None
    details: dict = field(default_factory=dict)


def _parse(presented: str | bytes | None) -> x509.Certificate:
    if not presented or not presented.strip():
        raise _Refusal("no_certificate", "Your browser presented no client certificate.")
    if len(presented) > MAX_PRESENTED_CERTIFICATE:
        raise _Refusal("unreadable", "The client certificate is too large to be one of ours.")
    try:
        return pki.load_pem(presented)
    except ValueError:
        raise _Refusal("unreadable", "The client certificate could not be read.") from None


def _issuing_ca(cert: x509.Certificate) -> CertificateAuthority | None:
    """This portal's CA whose key signed cert (few rows: every CA is tried)."""
    for ca in CertificateAuthority.objects.all():
        if ca.certificate.subject == cert.issuer and pki.verify_signed_by(cert, ca.certificate):
            return ca
    return None


def _find_link(presented: str | bytes | None) -> AgentCertificate:
    """The link of a presented certificate that may log its agent in, or _Refusal."""
    x = _parse(presented)
    facts = {
        "serial": pki.serial_hex(x.serial_number),
        "subject": x.subject.rfc4514_string(),
        "issuer": x.issuer.rfc4514_string(),
        "fingerprint_sha256": pki.sha256_hex(x),
    }
    ca = _issuing_ca(x)
    if ca is None:
        raise _Refusal(
            "other_ca", "This certificate was not issued by this portal's CA.", details=facts
        )
    cert = (
        Certificate.objects.select_related("ca")
        .filter(ca=ca, serial=facts["serial"], fingerprint_sha256=facts["fingerprint_sha256"])
        .first()
    )
    if cert is None:
        raise _Refusal(
            "unknown_certificate",
            "This portal has no record of issuing this certificate.",
            details=facts,
        )

    def refuse(reason: str, message: str, **more):
        return _Refusal(reason, message, certificate=cert, details={**facts, **more})

    now = pki.utcnow()
    if now < x.not_valid_before_utc:
        raise refuse("not_yet_valid", "This certificate is not valid yet.")
    if x.not_valid_after_utc < now:
        raise refuse(
            "expired", f"This certificate expired on {x.not_valid_after_utc:%Y-%m-%d %H:%M} UTC."
        )
    if cert.status == Certificate.Status.REVOKED:
        if cert.revocation_reason == pki.HOLD:
            raise refuse("on_hold", "This certificate is on hold.")
        raise refuse("revoked", "This certificate has been revoked.")
    if cert.profile != AGENT_PROFILE:
        raise refuse(
            "wrong_profile",
            f"This is a {cert.profile} certificate; agents log in with an agent certificate.",
        )
    link = AgentCertificate.objects.select_related("user").filter(certificate=cert).first()
    if link is None:
        raise refuse("not_linked", "This agent certificate is not linked to an agent account.")
    if not link.user.is_active:
        raise refuse("inactive", "The account of this certificate is disabled.", user=_name(link))
    if not is_active_agent(link.user):
        raise refuse(
            "not_an_agent", "The account of this certificate is not an agent.", user=_name(link)
        )
    return link


def _name(link: AgentCertificate) -> str:
    return link.user.get_username()


def verify_agent_certificate(
    presented: str | bytes | None, *, ip: str | None, source: str
) -> AgentCertificate:
    """The agent link of a client certificate that may log in, with its audit row; otherwise
    CertificateRefused naming why, with the refusal's audit row.

    `source` says where the certificate came from: "proxy" (a trusted proxy's header),
    "tls" (this server's own handshake), or "untrusted" (the header from a peer that is not a
    trusted proxy: refused unread). The transaction is _judge's: a refusal's audit row is
    committed before the refusal is raised here, outside it."""
    outcome = _judge(presented, ip=ip, source=source)
    if isinstance(outcome, CertificateRefused):
        raise outcome
    return outcome


@transaction.atomic
def _judge(
    presented: str | bytes | None, *, ip: str | None, source: str
) -> AgentCertificate | CertificateRefused:
    try:
        if source == "untrusted":
            raise _Refusal(
                "untrusted_proxy",
                "A client certificate header came from an address that is not a trusted "
                "proxy; it was ignored.",
            )
        link = _find_link(presented)
    except _Refusal as refusal:
        cert = refusal.certificate
        audit(
            "agent_certificate_login_refused",
            actor=None,
            actor_label="anonymous",
            request=cert.issued_request if cert else None,
            certificate=cert,
            ca=cert.ca if cert else None,
            ip=ip,
            reason=refusal.reason,
            source=source,
            **refusal.details,
        )
        return CertificateRefused(refusal.message, reason=refusal.reason)
    cert = link.certificate
    audit(
        "agent_certificate_login",
        actor=link.user,
        certificate=cert,
        ca=cert.ca,
        ip=ip,
        serial=cert.serial,
        source=source,
    )
    return link
