"""/healthz: every CA still in use whose key is in a token can sign now."""

from __future__ import annotations

import logging

from django.utils import timezone

from ... import pki

logger = logging.getLogger(__name__)


def tokens_configured() -> bool:
    """Whether a PKCS#11 module is configured (PKCS11_MODULE, or a pkcs11 backend's OPTIONS):
    /healthz then checks the token keys."""
    from django.conf import settings

    if getattr(settings, "PKCS11_MODULE", ""):
        return True
    return any(
        str(config.get("BACKEND", "")).startswith("requests_app.keys.pkcs11")
        and (config.get("OPTIONS") or {}).get("module")
        for config in getattr(settings, "CA_KEY_BACKENDS", {}).values()
    )


def token_health() -> str | None:
    """None when every unexpired CA kept in a token reaches its key, else which cannot (the
    reason goes to the log: an answer names no token, module or setting)."""
    from ...models import CertificateAuthority
    from .. import backends
    from .backend import PKCS11Backend

    failing = []
    for ca in CertificateAuthority.objects.filter(not_after__gt=timezone.now()).order_by("pk"):
        if ca.key_backend not in backends:
            continue  # the system check reports a CA_KEY_BACKENDS without it
        backend = backends[ca.key_backend]
        if not isinstance(backend, PKCS11Backend):
            continue
        try:
            backend.check_usable(ca)
        except pki.CAError as exc:
            logger.error("healthz: the token key of CA %r is not usable: %s", ca.name, exc)
            failing.append(repr(ca.name))
    if failing:
        return f"error: the token key of CA {', '.join(failing)} cannot sign (see the server log)"
    return None
