"""System check: a bad CA_KEY_BACKENDS is caught at start-up, not at the first signature."""

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from . import DEFAULT_ALIAS, backends


@checks.register()
def check_key_backends(app_configs=None, **kwargs):
    """Every alias loads, and there is a "default" one for new CAs."""
    errors = []
    configured = getattr(settings, "CA_KEY_BACKENDS", None)
    if not isinstance(configured, dict):
        return [
            checks.Error(
                "CA_KEY_BACKENDS must be a dict of alias -> {BACKEND, OPTIONS}", id="ca.E010"
            )
        ]
    for alias in configured:
        try:
            backends.create(alias)
        except ImproperlyConfigured as exc:
            errors.append(checks.Error(str(exc), id="ca.E011"))
    if DEFAULT_ALIAS not in configured:
        errors.append(
            checks.Error(
                f"CA_KEY_BACKENDS has no {DEFAULT_ALIAS!r}; new CAs keep their keys there",
                id="ca.E012",
            )
        )
    return errors


@checks.register(checks.Tags.security)
def check_key_file_kdf(app_configs=None, **kwargs):
    """In production, key files are encrypted with at least OWASP's PBKDF2 rounds."""
    from .. import pki

    rounds = getattr(settings, "CA_KEY_KDF_ROUNDS", pki.MIN_KDF_ROUNDS)
    if settings.DEBUG or rounds >= pki.MIN_KDF_ROUNDS:
        return []
    return [
        checks.Error(
            f"CA_KEY_KDF_ROUNDS is {rounds}; key files need at least {pki.MIN_KDF_ROUNDS:,} "
            "rounds of PBKDF2-HMAC-SHA256",
            id="ca.E013",
        )
    ]
