"""DELIVERY_BACKENDS, shaped like Django's MAILERS: alias -> {"BACKEND": path, "OPTIONS": {}}."""

from __future__ import annotations

import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from .base import BaseDeliveryBackend, DeliveryError, SendResult

__all__ = ["BaseDeliveryBackend", "DeliveryError", "SendResult", "get_backend", "load_backend"]

_instances: dict[str, BaseDeliveryBackend] = {}
_lock = threading.Lock()


def load_backend(alias: str) -> BaseDeliveryBackend:
    """Import, check and instantiate the backend configured under alias."""
    try:
        config = settings.DELIVERY_BACKENDS[alias]
    except KeyError:
        raise ImproperlyConfigured(
            f"no delivery backend {alias!r} in DELIVERY_BACKENDS "
            f"(configured: {', '.join(settings.DELIVERY_BACKENDS) or 'none'})"
        ) from None
    path = config.get("BACKEND", "")
    try:
        backend_class = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"DELIVERY_BACKENDS[{alias!r}]: cannot import BACKEND {path!r}: {exc}"
        ) from None
    if not (isinstance(backend_class, type) and issubclass(backend_class, BaseDeliveryBackend)):
        raise ImproperlyConfigured(
            f"DELIVERY_BACKENDS[{alias!r}]: {path!r} is not a subclass of "
            "delivery.backends.BaseDeliveryBackend"
        )
    unknown = set(config) - {"BACKEND", "OPTIONS"}
    if unknown:
        raise ImproperlyConfigured(
            f"DELIVERY_BACKENDS[{alias!r}] has unknown keys {sorted(unknown)}; "
            "use BACKEND and OPTIONS"
        )
    return backend_class(alias, **config.get("OPTIONS", {}))


def get_backend(alias: str) -> BaseDeliveryBackend:
    """The backend instance for alias, made once per process."""
    backend = _instances.get(alias)
    if backend is None:
        with _lock:
            backend = _instances.get(alias) or load_backend(alias)
            _instances[alias] = backend
    return backend


@receiver(setting_changed)
def _forget_backends(*, setting, **kwargs):
    if setting in ("DELIVERY_BACKENDS", "MAILERS", "SITE_URL"):
        _instances.clear()
