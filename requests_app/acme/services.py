"""Every state change of ACME: one transaction each, an audit row each (the Certificate
Manager's audit helper), and certificates only through the Certificate Manager's services.

Bindings (agents, commands):  create_binding, revoke_binding, list_bindings
Accounts (the protocol):      new_account, update_account, deactivate_account, rollover_key
Orders (the protocol):        see orders.py, re-exported here.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .. import pki, profiles, services
from ..validators import validate_recipient_email
from .models import ExternalAccountBinding

User = AbstractBaseUser

#: Length of a binding's HMAC key (HS256 wants at least 256 bits).
HMAC_KEY_BYTES = 32
MAX_BINDING_NAMES = 100
MAX_BINDING_DAYS = 3650


class BindingNotFound(services.ServiceError):
    """No external account binding has that key ID."""


# --- the HMAC key at rest ----------------------------------------------------------------
#
# The key must be readable again (the server verifies the client's MAC with it), so it is
# encrypted, not hashed: AES-256-GCM under a key derived from SECRET_KEY (HKDF), with the kid
# as associated data so that a sealed key copied to another row does not open. A database
# dump alone does not reveal the keys; rotating SECRET_KEY makes unused bindings unusable
# (agents make new ones), which is the safe failure.


def _sealing_key() -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"ca-portal acme eab hmac key"
    ).derive(settings.SECRET_KEY.encode())


def seal_key(kid: str, key: bytes) -> str:
    nonce = os.urandom(12)
    return base64.b64encode(
        nonce + AESGCM(_sealing_key()).encrypt(nonce, key, kid.encode())
    ).decode()


def open_key(binding: ExternalAccountBinding) -> bytes:
    """The binding's HMAC key (raises cryptography's InvalidTag when it does not open)."""
    raw = base64.b64decode(binding.hmac_key_sealed)
    return AESGCM(_sealing_key()).decrypt(raw[:12], raw[12:], binding.kid.encode())


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- names an account may obtain -----------------------------------------------------------


def normalize_binding_name(text: str) -> str:
    """An exact DNS name or a "*.example.com" pattern, as a lower-case A-label."""
    if not isinstance(text, str) or not text.strip():
        raise services.InvalidRequest("a name is empty", field="names")
    try:
        return pki.normalize_hostname(text)
    except pki.InvalidName as exc:
        raise services.InvalidRequest(str(exc), field="names") from None


def name_approved(name: str, approved: list[str]) -> bool:
    """True when name (normalized) is one of the approved names, or under a "*.domain"
    pattern: any name below the domain, at any depth, and the wildcard "*.domain" itself
    (never the domain itself)."""
    for entry in approved:
        if name == entry:
            return True
        if entry.startswith("*.") and name.endswith(entry[1:]):
            return True
    return False


# --- bindings ------------------------------------------------------------------------------


@transaction.atomic
def create_binding(
    *,
    email: str,
    names: list[str],
    profile: str = "server",
    days: int = 90,
    actor: User | None,
) -> tuple[ExternalAccountBinding, str]:
    """An agent approves an ACME account-to-be: returns the binding and its HMAC key
    (base64url), which is shown this once."""
    email = (email or "").strip()
    try:
        validate_recipient_email(email)
    except ValidationError:
        raise services.InvalidRequest(
            f"{email!r} is not a valid email address", field="email"
        ) from None
    try:
        prof = profiles.get_profile(profile)
    except profiles.ProfileError as exc:
        raise services.InvalidRequest(str(exc), field="profile") from None
    if not prof.takes_hostnames:
        raise services.InvalidRequest(
            f"the {prof.name} profile does not issue certificates for hostnames, which is "
            "all that ACME asks for: choose a profile such as server",
            field="profile",
        )
    if isinstance(names, str):
        names = [names]
    clean: list[str] = []
    for name in names or ():
        normal = normalize_binding_name(name)
        if normal not in clean:
            clean.append(normal)
    if not clean:
        raise services.InvalidRequest(
            "name at least one hostname or *.domain pattern", field="names"
        )
    if len(clean) > MAX_BINDING_NAMES:
        raise services.InvalidRequest(
            f"at most {MAX_BINDING_NAMES} names per binding", field="names"
        )
    if isinstance(days, bool) or not isinstance(days, int) or days <= 0:
        raise services.InvalidRequest("days must be a whole number above 0", field="days")
    if days > MAX_BINDING_DAYS:
        raise services.InvalidRequest(f"days must be at most {MAX_BINDING_DAYS}", field="days")
    key = secrets.token_bytes(HMAC_KEY_BYTES)
    binding = ExternalAccountBinding(
        email=email,
        names=clean,
        profile=prof.name,
        expires_at=timezone.now() + dt.timedelta(days=days),
        created_by=actor,
    )
    binding.hmac_key_sealed = seal_key(binding.kid, key)
    binding.save(force_insert=True)
    services.audit(
        "acme_binding_created",
        actor=actor,
        actor_label="administrator",
        kid=binding.kid,
        email=email,
        names=clean,
        profile=prof.name,
        expires_at=binding.expires_at.isoformat(),
    )
    return binding, b64url(key)


@transaction.atomic
def revoke_binding(kid: str, *, actor: User | None) -> ExternalAccountBinding:
    """Withdraw an agent's approval: the binding binds no account any more, and the account
    it bound (if any) is revoked, so it can order nothing more."""
    from .models import Account

    binding = (
        ExternalAccountBinding.objects.select_for_update().filter(kid=str(kid).strip()).first()
    )
    if binding is None:
        raise BindingNotFound(f"no ACME account binding has the key ID {kid!r}", field="kid")
    if binding.revoked_at is not None:
        raise services.InvalidTransition(
            f"the ACME account binding {binding.kid} was revoked already", field="kid"
        )
    binding.revoked_at = timezone.now()
    binding.revoked_by = actor
    binding.save(update_fields=["revoked_at", "revoked_by"])
    account_slug = None
    if binding.account_id is not None:
        Account.objects.filter(pk=binding.account_id, status=Account.Status.VALID).update(
            status=Account.Status.REVOKED
        )
        account_slug = binding.account.slug
    services.audit(
        "acme_binding_revoked",
        actor=actor,
        actor_label="administrator",
        kid=binding.kid,
        email=binding.email,
        account=account_slug,
    )
    return binding


def list_bindings():
    """Every binding, newest first (a queryset)."""
    return ExternalAccountBinding.objects.select_related("account", "created_by").order_by(
        "-created_at", "-pk"
    )
