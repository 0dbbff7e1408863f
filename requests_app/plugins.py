"""Loading plugins named in a settings dict, the shape of Django's CACHES and MAILERS:

    SETTING = {"alias": {"BACKEND": "dotted.path.To.Class", "OPTIONS": {...}}}

One loader for every such dict (CA_KEY_BACKENDS here, DELIVERY_BACKENDS in delivery), so a
bad entry reads the same wherever it is: ImproperlyConfigured naming the setting, the alias
and the path. The caller checks the OPTIONS against its class and makes the instance.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string


def plugin_class(
    setting: str, alias: str, base: type, *, kind: str, base_name: str
) -> tuple[type, dict]:
    """The class named by settings.<setting>[alias], checked to be a subclass of base (named
    base_name in messages; kind says what it is, e.g. "key backend"), and its OPTIONS."""
    configured = getattr(settings, setting)
    try:
        config = configured[alias]
    except KeyError:
        raise ImproperlyConfigured(
            f"no {kind} {alias!r} in {setting} (configured: {', '.join(configured) or 'none'})"
        ) from None
    unknown = set(config) - {"BACKEND", "OPTIONS"}
    if unknown:
        raise ImproperlyConfigured(
            f"{setting}[{alias!r}] has unknown keys {sorted(unknown)}; use BACKEND and OPTIONS"
        )
    path = config.get("BACKEND", "")
    try:
        found = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"{setting}[{alias!r}]: cannot import BACKEND {path!r}: {exc}"
        ) from None
    if not (isinstance(found, type) and issubclass(found, base)):
        raise ImproperlyConfigured(
            f"{setting}[{alias!r}]: {path!r} is not a subclass of {base_name}"
        )
    return found, dict(config.get("OPTIONS") or {})
