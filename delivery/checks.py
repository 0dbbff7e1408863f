"""System checks: a bad DELIVERY_BACKENDS or DELIVERY_POLICY is caught at start-up."""

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from .backends import load_backend


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
