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
    "add_backend_arguments",
    "backend_for",
    "backend_options",
    "backends",
    "names_key",
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
        """Forget every backend, and with them the keys they hold (sessions are closed)."""
        with self._lock:
            forgotten, self._backends = list(self._backends.values()), {}
        for backend in forgotten:
            backend.close()

    def backend_class(self, alias: str) -> type[KeyBackend]:
        """The class configured under alias (ImproperlyConfigured if it does not load)."""
        return plugin_class(
            "CA_KEY_BACKENDS",
            alias,
            KeyBackend,
            kind="key backend",
            base_name="requests_app.keys.KeyBackend",
        )[0]


backends = KeyBackendHandler()


def backend_for(ca: CertificateAuthority) -> KeyBackend:
    """The backend that holds the CA's key."""
    return backends[ca.key_backend]


def add_backend_arguments(parser) -> None:
    """init_ca/import_ca: --key-backend, and each configured backend's own options (a group
    per backend class, added once however many aliases use it)."""
    parser.add_argument(
        "--key-backend",
        metavar="ALIAS",
        help=f"where the CA key is kept: an alias of CA_KEY_BACKENDS ({', '.join(backends)}), "
        f"by default {DEFAULT_ALIAS!r} (import_ca completing a pending CA: where its key was "
        "made)",
    )
    seen: set[type] = set()
    for alias in backends:
        try:
            backend_class = backends.backend_class(alias)
        except ImproperlyConfigured:
            continue  # the system check names it
        if backend_class in seen:
            continue
        seen.add(backend_class)
        group = parser.add_argument_group(f"key backend {alias!r} ({backend_class.__name__})")
        backend_class.add_arguments(group)


def backend_options(alias: str | None, options: dict) -> dict:
    """The options of the backend under alias (the default one if None) for
    generate_key/import_key, from a command's parsed options; CAKeyError for an unknown
    alias or a bad value."""
    alias = alias or DEFAULT_ALIAS
    if alias not in backends:
        raise CAKeyError(
            f"no key backend {alias!r} in CA_KEY_BACKENDS (configured: {', '.join(backends)})"
        )
    try:
        return backends.backend_class(alias).key_options(options)
    except ImproperlyConfigured as exc:
        raise CAKeyError(str(exc)) from None


def names_key(alias: str | None, key_options: dict) -> bool:
    """Whether key_options of the backend under alias name a key it already holds (import_ca
    without --key: import that key, rather than complete a pending CA)."""
    try:
        return backends.backend_class(alias or DEFAULT_ALIAS).names_key(key_options)
    except ImproperlyConfigured as exc:
        raise CAKeyError(str(exc)) from None


def reset() -> None:
    """Forget every key and the default CA this process knows (tests; rotating a CA)."""
    from ..models import CertificateAuthority

    backends.reset()
    CertificateAuthority.objects.forget_default()


@receiver(setting_changed)
def _reset_on_new_settings(*, setting, **kwargs):
    # A key kept under another directory or passphrase must not outlive the change.
    if setting in ("CA_KEY_BACKENDS", "CA_KEY_DIR", "CA_KEY_PASSPHRASE") or setting.startswith(
        "PKCS11_"
    ):
        reset()
