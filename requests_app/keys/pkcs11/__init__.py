"""Keys in a hardware token through PKCS#11 (python-pkcs11): the backend (backend.py),
its pooled sessions (session.py), the objects it keeps in a token (objects.py), and the key
objects cryptography's builders sign with (wrappers.py)."""

from .backend import KeyRef, PKCS11Backend
from .health import token_health, tokens_configured

__all__ = ["KeyRef", "PKCS11Backend", "token_health", "tokens_configured"]
