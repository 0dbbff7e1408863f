"""CRLs: each CA's next CRL signed and stored after every revocation or release (a task,
on commit), from `manage.py generate_crl` (cron) when one ages, and when a fetch finds the
newest expired or missing a revocation (a lost task must not leave a revoked certificate
trusted)."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from .. import keys, pki, signals
from ..models import AuditEvent, Certificate, CertificateAuthority, CertificateRevocationList
from .audit_log import audit
from .errors import CAUnavailable

#: The audit actions after which a CA's CRL is out of date.
CHANGES = ("certificate_revoked", "certificate_hold_released")


def lifetime() -> dt.timedelta:
    """From thisUpdate to nextUpdate (CRL_NEXT_UPDATE_HOURS)."""
    hours = settings.CRL_NEXT_UPDATE_HOURS
    if hours < 1:
        raise ImproperlyConfigured("CRL_NEXT_UPDATE_HOURS must be at least 1")
    return dt.timedelta(hours=hours)


def newest(ca: CertificateAuthority) -> CertificateRevocationList | None:
    """The CA's CRL with the highest number, if any."""
    return CertificateRevocationList.objects.filter(ca=ca).order_by("-number").first()


def outdated(
    crl: CertificateRevocationList | None,
    ca: CertificateAuthority,
    *,
    now: dt.datetime,
    renew_early: bool = False,
) -> bool:
    """True when there is no CRL, it expired, a revocation or release came after it, or
    (renew_early, for cron) it has passed half its lifetime."""
    if crl is None or now >= crl.next_update:
        return True
    if renew_early and now >= crl.this_update + (crl.next_update - crl.this_update) / 2:
        return True
    return AuditEvent.objects.filter(ca=ca, action__in=CHANGES, time__gt=crl.created).exists()


def revoked_entries(ca: CertificateAuthority, *, now: dt.datetime) -> list[pki.RevokedEntry]:
    """The CA's revoked certificates that have not expired (expired ones leave the CRL,
    RFC 5280 3.3; Dogtag's includeExpiredCerts=false)."""
    rows = (
        Certificate.objects.filter(ca=ca, status=Certificate.Status.REVOKED, not_after__gt=now)
        .order_by("revoked_at", "pk")
        .values_list("serial", "revoked_at", "revocation_reason", "invalidity_date")
    )
    return [
        pki.RevokedEntry(
            serial=int(serial, 16),
            revoked_at=revoked_at,
            reason=reason or "unspecified",
            invalidity_date=invalidity,
        )
        for serial, revoked_at, reason, invalidity in rows
    ]


@transaction.atomic
def publish_crl(
    ca: CertificateAuthority, *, force: bool = True, renew_early: bool = False
) -> tuple[CertificateRevocationList, bool]:
    """Sign and store the CA's next CRL (unless force=False and the newest is still right);
    returns it and whether it is new."""
    # The CA row is the lock that numbers CRLs one after another, and that lets the
    # processes which all find the CRL out of date at once make only one new CRL.
    CertificateAuthority.objects.select_for_update().filter(pk=ca.pk).first()
    now = pki.utcnow().replace(microsecond=0)  # a CRL's times have whole seconds
    current = newest(ca)
    if not force and not outdated(current, ca, now=now, renew_early=renew_early):
        return current, False
    number = (current.number if current else 0) + 1
    try:
        builder = pki.crl_builder(
            ca_cert=ca.certificate,
            entries=revoked_entries(ca, now=now),
            number=number,
            this_update=now,
            next_update=now + lifetime(),
        )
        signed = keys.backend_for(ca).sign_crl(ca, builder)
    except pki.CAError as exc:
        raise CAUnavailable(str(exc)) from None
    row = CertificateRevocationList.objects.create(
        ca=ca,
        number=number,
        this_update=now,
        next_update=now + lifetime(),
        der=pki.crl_der(signed),
    )
    audit(
        "crl_generated",
        actor=None,
        ca=ca,
        number=number,
        entries=len(signed),
        next_update=row.next_update.isoformat(),
    )
    signals.crl_published.send(sender=CertificateRevocationList, crl=row)
    return row, True


def current_crl(ca: CertificateAuthority) -> CertificateRevocationList:
    """The CRL to serve: the newest, made first (publish_crl, its own transaction) if it is
    missing or out of date, so that a lost task never leaves a revoked certificate trusted."""
    row = newest(ca)
    if row is not None and not outdated(row, ca, now=pki.utcnow()):
        return row
    return publish_crl(ca, force=False)[0]
