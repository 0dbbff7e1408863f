"""Background tasks of the Certificate Manager (Django's tasks API)."""

from __future__ import annotations

import logging

from django.tasks import task

logger = logging.getLogger(__name__)


@task
def regenerate_crl(ca_id: int) -> int | None:
    """Sign a new CRL for the CA (after a revocation or a release); returns its number."""
    from . import services
    from .models import CertificateAuthority

    ca = CertificateAuthority.objects.filter(pk=ca_id).first()
    if ca is None:
        return None
    return services.publish_crl(ca)[0].number


def schedule_crl(ca_id: int) -> None:
    """Enqueue regenerate_crl; if that fails, the CRL view and generate_crl catch up."""
    try:
        regenerate_crl.enqueue(ca_id)
    except Exception:
        logger.exception("could not enqueue the CRL of CA %s; it is made on its next fetch", ca_id)
