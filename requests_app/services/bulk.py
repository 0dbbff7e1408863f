"""The bulk path: approve every pending request, a chunk of rows per transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from .. import signals
from ..models import AuditEvent, Certificate, CertificateRequest
from .agent_certificates import approval_refusal, link_on_approval
from .approval_writes import store_bulk_approvals
from .errors import LintFailed, ServiceError
from .issuance import (
    approval_audit,
    check_approval,
    complete,
    lint_refusal_audit,
    sign,
    signing_ca,
    supersede,
)

Status = CertificateRequest.Status
User = AbstractBaseUser

logger = logging.getLogger(__name__)


@dataclass
class BulkResult:
    approved: list[Certificate]
    refused: list[tuple[str, str]]  # (request ID, why)


def approve_all_pending(
    *,
    agent: User | None,
    validity_days: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk_size: int = 250,
) -> BulkResult:
    """Approve every pending request, oldest first, a chunk per transaction.

    The bulk path: each chunk's rows are locked together (skipping rows another agent
    holds), signed, and written with fixed statements (one INSERT per table, one UPDATE
    ... FROM (VALUES ...) of the requests); every certificate still gets its audit row and
    its certificate_issued signal, as with approve_request."""
    ids = list(
        CertificateRequest.objects.filter(status=Status.PENDING)
        .order_by("submitted_at", "pk")
        .values_list("pk", flat=True)
    )
    result = BulkResult(approved=[], refused=[])
    ca = signing_ca()
    for start in range(0, len(ids), chunk_size):
        chunk = ids[start : start + chunk_size]
        result.approved += _approve_chunk(chunk, ca, agent, validity_days, result.refused)
        if progress:
            progress(min(start + chunk_size, len(ids)), len(ids))
    return result


@transaction.atomic
def _approve_chunk(ids, ca, agent, validity_days, refused) -> list[Certificate]:
    reqs = list(
        CertificateRequest.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(pk__in=ids, status=Status.PENDING)
        .select_related("renewal_of")
        .order_by("submitted_at", "pk")
    )
    issued: list[tuple[CertificateRequest, Certificate, int]] = []
    lint_refusals: list[AuditEvent] = []
    for req in reqs:
        refusal = approval_refusal(req, agent=agent, ip=None)  # its audit row is in this chunk
        if refusal is not None:
            refused.append((req.public_id, refusal.message))
            continue
        try:
            prof, days, names = check_approval(req, validity_days=validity_days, sans=None)
            issued.append((req, sign(req, prof, ca, validity_days=days, sans=names), days))
        except ServiceError as exc:
            # The request stays pending; the others in the chunk go on.
            refused.append((req.public_id, exc.message))
            if isinstance(exc, LintFailed):
                lint_refusals.append(lint_refusal_audit(exc, req=req, agent=agent, ip=None))
        except Exception:  # one request that cannot be signed must not stop the queue
            logger.exception("bulk approval: request %s could not be signed", req.public_id)
            refused.append((req.public_id, "it could not be signed (an internal error, logged)"))
    if not issued:
        AuditEvent.objects.bulk_create(lint_refusals)
        return []
    for req, cert, _ in issued:
        complete(req, cert, agent=agent, note="")
    store_bulk_approvals(
        [(req, cert) for req, cert, _ in issued],
        lambda: [
            approval_audit(req, cert, agent=agent, ip=None, days=days, edited_sans=False)
            for req, cert, days in issued
        ],
    )
    # After the counters: the audit chain's head is the last lock a decision takes.
    AuditEvent.objects.bulk_create(lint_refusals)
    certs = [cert for _, cert, _ in issued]
    for req, cert, _ in issued:
        link_on_approval(req, cert, agent=agent, ip=None)
        supersede(req, cert, agent=agent, ip=None)
    for req, cert, _ in issued:
        signals.certificate_issued.send(
            sender=Certificate, certificate=cert, request=req, actor=agent
        )
    return certs
