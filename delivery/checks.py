"""System checks: a bad DELIVERY_BACKENDS or DELIVERY_POLICY is caught at start-up."""

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from .backends import load_backend
from .tracking import esp_mailers, webhook_secret


@checks.register()
def check_delivery_backends(app_configs=None, **kwargs):
    errors = []
    for alias in settings.DELIVERY_BACKENDS:
        try:
            load_backend(alias)
        except ImproperlyConfigured as exc:
            errors.append(checks.Error(str(exc), id="delivery.E001"))
    required = {"email_certificate", "email_link", "notify"}
    for alias in sorted(required - set(settings.DELIVERY_BACKENDS)):
        errors.append(
            checks.Error(
                f"DELIVERY_BACKENDS has no {alias!r}; manual delivery and notifications need it",
                id="delivery.E002",
            )
        )
    for profile, aliases in (settings.DELIVERY_POLICY or {}).items():
        for alias in aliases:
            if alias not in settings.DELIVERY_BACKENDS:
                errors.append(
                    checks.Error(
                        f"DELIVERY_POLICY[{profile!r}] names {alias!r}, which is not in "
                        "DELIVERY_BACKENDS",
                        id="delivery.E003",
                    )
                )
    return errors


@checks.register()
def check_tracking_webhook_secret(app_configs=None, **kwargs):
    """An ESP without ANYMAIL_WEBHOOK_SECRET: its tracking events could not be trusted."""
    if esp_mailers() and not webhook_secret():
        return [
            checks.Error(
                f"MAILERS[{', '.join(map(repr, esp_mailers()))}] sends through an ESP "
                "(django-anymail) but ANYMAIL_WEBHOOK_SECRET is not set, so its tracking "
                "webhooks are not mounted",
                hint="Set ANYMAIL_WEBHOOK_SECRET=user:password (random) and give the same "
                "credentials to the ESP's webhook URL.",
                id="delivery.E004",
            )
        ]
    return []
