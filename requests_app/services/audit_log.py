"""The audit log's one writer: every service appends its rows here, in its transaction.

Each row is chained by hash as it is inserted (requests_app.auditchain, from
AuditEvent.save and bulk_create); verify_audit walks the chain."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from .. import auditchain
from ..models import (
    AuditCheckpoint,
    AuditEvent,
    Certificate,
    CertificateAuthority,
    CertificateRequest,
)

User = AbstractBaseUser


def audit_event(
    action: str,
    *,
    actor: User | None,
    actor_label: str = "system",
    request: CertificateRequest | None = None,
    certificate: Certificate | None = None,
    ca: CertificateAuthority | None = None,
    ip: str | None = None,
    **details,
) -> AuditEvent:
    """One audit row, unsaved (the bulk path inserts many at once)."""
    return AuditEvent(
        actor=actor,
        actor_label=actor.get_username() if actor is not None else actor_label,
        action=action,
        request=request,
        certificate=certificate,
        ca=ca,
        ip=ip,
        details=details,
    )


def audit(action: str, *, actor: User | None, **fields) -> AuditEvent:
    """Append one audit row (fields as for audit_event)."""
    event = audit_event(action, actor=actor, **fields)
    event.save(force_insert=True)
    return event


@transaction.atomic
def write_audit_checkpoint(*, actor: User | None = None) -> AuditCheckpoint:
    """Sign a checkpoint of the audit chain now (a cron job's, beside the automatic ones)."""
    audit("audit_checkpoint", actor=actor)
    return auditchain.checkpoint_now()


def verify_audit() -> auditchain.Report:
    """Check the whole audit chain: every row, the head and the signed checkpoints."""
    return auditchain.verify()
