"""DELIVERY_BACKENDS, shaped like Django's MAILERS: alias -> {"BACKEND": path, "OPTIONS": {}}."""

from __future__ import annotations

import threading

from django.core.signals import setting_changed
from django.dispatch import receiver

from requests_app.plugins import plugin_class

from .base import BaseDeliveryBackend, DeliveryError, DeliveryHeld, SendResult

__all__ = [
    "BaseDeliveryBackend",
    "DeliveryError",
    "DeliveryHeld",
    "SendResult",
    "get_backend",
    "load_backend",
]

_instances: dict[str, BaseDeliveryBackend] = {}
_lock = threading.Lock()


def load_backend(alias: str) -> BaseDeliveryBackend:
    """Import, check and instantiate the backend configured under alias."""
    backend_class, options = plugin_class(
        "DELIVERY_BACKENDS",
        alias,
        BaseDeliveryBackend,
        kind="delivery backend",
        base_name="delivery.backends.BaseDeliveryBackend",
    )
    return backend_class(alias, **options)


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
