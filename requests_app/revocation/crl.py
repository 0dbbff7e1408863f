"""CRLs of our CAs, read side: which is newest, whether it is out of date, what goes in it.

services.publish_crl signs and stores a new one: after every revocation or release (a task,
on commit), from `manage.py generate_crl` (cron) when one ages, and through
services.current_crl when a fetch finds the newest expired or missing a revocation (a lost
task must not leave a revoked certificate trusted).
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .. import pki
from ..models import AuditEvent, Certificate, CertificateAuthority, CertificateRevocationList

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
