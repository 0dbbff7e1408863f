"""The custodian of CA keys: CA_KEY_BACKENDS, shaped like Django's CACHES and MAILERS.

    CA_KEY_BACKENDS = {"default": {"BACKEND": "requests_app.keys.files.EncryptedFileBackend",
                                   "OPTIONS": {}}}

A CA row names its backend (`CertificateAuthority.key_backend`, an alias here) and the key's
reference in it (`key_filename`). Callers ask `backend_for(ca)` to sign; no private key
object ever leaves a backend. Each backend is made once per process and keeps its own keys:
`reset()` forgets them all (tests; a process that rotates its CA), and so does a change of
CA_KEY_BACKENDS, CA_KEY_DIR or CA_KEY_PASSPHRASE.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from ..plugins import plugin_class
from .base import CAKeyError, KeyBackend, NewKey, Rewrapped

if TYPE_CHECKING:
    from ..models import CertificateAuthority

__all__ = [
    "DEFAULT_ALIAS",
    "CAKeyError",
    "KeyBackend",
    "KeyBackendHandler",
    "NewKey",
    "Rewrapped",
    "backend_for",
    "backends",
    "reset",
]

DEFAULT_ALIAS = "default"


class KeyBackendHandler:
    """alias -> its backend, made on first use and shared by every thread of the process
    (a key is read once per process, not once per thread)."""

    def __init__(self):
        self._backends: dict[str, KeyBackend] = {}
        self._lock = threading.Lock()

    @property
    def settings(self) -> dict:
        return settings.CA_KEY_BACKENDS

    def __iter__(self):
        return iter(self.settings)

    def __contains__(self, alias: str) -> bool:
        return alias in self.settings

    def __getitem__(self, alias: str) -> KeyBackend:
        backend = self._backends.get(alias)
        if backend is None:
            with self._lock:
                backend = self._backends.get(alias) or self.create(alias)
                self._backends[alias] = backend
        return backend

    def create(self, alias: str) -> KeyBackend:
        """Import, check and instantiate the backend configured under alias."""
        backend_class, options = plugin_class(
            "CA_KEY_BACKENDS",
            alias,
            KeyBackend,
            kind="key backend",
            base_name="requests_app.keys.KeyBackend",
        )
        unknown = set(options) - set(backend_class.options)
        if unknown:
            raise ImproperlyConfigured(
                f"CA_KEY_BACKENDS[{alias!r}]: {backend_class.__module__}."
                f"{backend_class.__qualname__} does not take the OPTIONS {sorted(unknown)} "
                f"(it takes {', '.join(backend_class.options) or 'none'})"
            )
        return backend_class(alias, **options)

    def reset(self) -> None:
        """Forget every backend, and with them the keys they hold."""
        with self._lock:
            self._backends = {}


backends = KeyBackendHandler()


def backend_for(ca: CertificateAuthority) -> KeyBackend:
    """The backend that holds the CA's key."""
    return backends[ca.key_backend]


def reset() -> None:
    """Forget every key and the default CA this process knows (tests; rotating a CA)."""
    from ..models import CertificateAuthority

    backends.reset()
    CertificateAuthority.objects.forget_default()


@receiver(setting_changed)
def _reset_on_new_settings(*, setting, **kwargs):
    # A key kept under another directory or passphrase must not outlive the change.
    if setting in ("CA_KEY_BACKENDS", "CA_KEY_DIR", "CA_KEY_PASSPHRASE"):
        reset()
