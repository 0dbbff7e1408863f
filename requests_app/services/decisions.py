"""An agent's decisions on a pending request: approve (the CA signs), reject, cancel."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from .. import signals
from ..models import Certificate, CertificateRequest
from .agent_certificates import approval_refusal, link_on_approval
from .approval_writes import store_approval
from .audit_log import audit
from .errors import InvalidRequest, LintFailed, NotAllowed, RequestNotFound
from .issuance import (
    approval_audit,
    check_approval,
    complete,
    lint_refusal_audit,
    sign,
    signing_ca,
    supersede,
)
from .records import lock_request, move_count, read_request, require_pending

Status = CertificateRequest.Status
User = AbstractBaseUser


def approve_request(
    request_id: str | CertificateRequest,
    *,
    agent: User | None,
    validity_days: int | None = None,
    sans: list[str] | None = None,
    note: str = "",
    ip: str | None = None,
) -> Certificate:
    """Issue the certificate for a pending request, optionally with the agent's edits.

    An agent's request for their own agent certificate is refused to that agent (and to
    no agent at all), and linked to them when another agent approves it.

    The transaction is _approve's: a refusal's audit row is committed before the refusal is
    raised here. When pre-issuance linting refuses the certificate (LintFailed), _approve's
    transaction is rolled back (nothing signed or stored, the request stays pending) and the
    refusal's audit row is written in a second one, so that the refusal is on record."""
    try:
        outcome = _approve(
            request_id, agent=agent, validity_days=validity_days, sans=sans, note=note, ip=ip
        )
    except LintFailed as exc:
        _record_lint_refusal(request_id, exc, agent=agent, ip=ip)
        raise
    if isinstance(outcome, NotAllowed):
        raise outcome
    return outcome


@transaction.atomic
def _record_lint_refusal(
    request_id: str | CertificateRequest, exc: LintFailed, *, agent: User | None, ip: str | None
) -> None:
    try:
        req = lock_request(request_id)
    except RequestNotFound:  # rolled back with an enclosing transaction
        req = None
    lint_refusal_audit(exc, req=req, agent=agent, ip=ip).save(force_insert=True)


@transaction.atomic
def _approve(
    request_id: str | CertificateRequest,
    *,
    agent: User | None,
    validity_days: int | None,
    sans: list[str] | None,
    note: str,
    ip: str | None,
) -> Certificate | NotAllowed:
    # Read without a lock, signed, then written by compare-and-swap (store_approval): a
    # concurrent decision makes the swap find nothing, and this transaction rolls back.
    req = read_request(request_id)
    require_pending(req, "approved")
    if req.agent_for_id is not None:  # rare: its refusal (an audit row) is decided locked
        req = lock_request(req)
        require_pending(req, "approved")
    refusal = approval_refusal(req, agent=agent, ip=ip)
    if refusal is not None:
        return refusal
    prof, days, names = check_approval(req, validity_days=validity_days, sans=sans)
    ca = signing_ca()
    cert = sign(req, prof, ca, validity_days=days, sans=names)
    complete(req, cert, agent=agent, note=note)
    edited = sans is not None and list(sans) != req.requested_sans
    store_approval(
        req,
        cert,
        lambda: approval_audit(req, cert, agent=agent, ip=ip, days=days, edited_sans=edited),
    )
    link_on_approval(req, cert, agent=agent, ip=ip)
    supersede(req, cert, agent=agent, ip=ip)
    signals.certificate_issued.send(sender=Certificate, certificate=cert, request=req, actor=agent)
    return cert


@transaction.atomic
def reject_request(
    request_id: str | CertificateRequest, *, agent: User | None, reason: str, ip: str | None = None
) -> CertificateRequest:
    """Refuse a pending request; the reason is shown to the requester."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidRequest("a reason is required to reject a request", field="reason")
    req = lock_request(request_id)
    require_pending(req, "rejected")
    before = req.status
    req.status = Status.REJECTED
    req.acted_by = agent
    req.agent_note = reason
    req.save(update_fields=["status", "acted_by", "agent_note", "updated_at"])
    move_count(before, req.status)
    audit("request_rejected", actor=agent, request=req, ip=ip, reason=reason)
    signals.request_rejected.send(
        sender=CertificateRequest, request=req, reason=reason, actor=agent
    )
    return req


@transaction.atomic
def cancel_request(
    request_id: str | CertificateRequest,
    *,
    agent: User | None,
    note: str = "",
    ip: str | None = None,
) -> CertificateRequest:
    """Withdraw a pending request without a decision on its merits."""
    req = lock_request(request_id)
    require_pending(req, "canceled")
    before = req.status
    req.status = Status.CANCELED
    req.acted_by = agent
    req.agent_note = note.strip()
    req.save(update_fields=["status", "acted_by", "agent_note", "updated_at"])
    move_count(before, req.status)
    audit("request_canceled", actor=agent, request=req, ip=ip, note=req.agent_note)
    signals.request_canceled.send(sender=CertificateRequest, request=req, actor=agent)
    return req
