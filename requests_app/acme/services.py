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

import josepy as jose
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .. import pki, profiles, services, throttle
from ..validators import validate_recipient_email
from . import jws
from .models import Account, ExternalAccountBinding
from .problems import AcmeProblem

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


# --- accounts (the protocol) ---------------------------------------------------------------


def retry_after_for(rate: str) -> int:
    """Seconds until the current window of rate ends (throttle's fixed windows)."""
    _, window = throttle.parse_rate(rate)
    return max(1, int(window - throttle.clock() % window))


def require_within_rate(scope: str, rate: str, what: str) -> None:
    """Count one use by scope against rate, or rateLimited with Retry-After."""
    if not throttle.within_rate(scope, rate):
        raise AcmeProblem(
            "rateLimited", f"too many {what}; try again later", retry_after=retry_after_for(rate)
        )


def _check_contact(contact) -> list[str]:
    if contact is None:
        return []
    if not isinstance(contact, list) or len(contact) > 10:
        raise AcmeProblem("malformed", "contact must be a list of at most 10 mailto: URIs")
    clean = []
    for uri in contact:
        if not isinstance(uri, str) or not uri.startswith("mailto:"):
            raise AcmeProblem("unsupportedContact", "only mailto: contacts are supported")
        address = uri.removeprefix("mailto:")
        try:
            validate_recipient_email(address)
        except ValidationError:
            raise AcmeProblem("invalidContact", f"{address!r} is not an email address") from None
        clean.append(uri)
    return clean


def _binding_for_eab(eab, *, jwk: jose.JWK, url: str) -> ExternalAccountBinding:
    """The binding whose key made the EAB's MAC over this account key, locked; unauthorized
    for anything else (unknown, revoked, expired or used kid; wrong MAC, url or key)."""
    if not isinstance(eab, dict):
        raise AcmeProblem("malformed", "externalAccountBinding must be a flattened JWS")
    try:
        inner = jws.JWS.from_json(eab)
        header = inner.signature.combined
    except Exception:  # any error of josepy's reading hostile input means malformed
        raise AcmeProblem("malformed", "externalAccountBinding cannot be read") from None
    if header.alg is None or header.alg.name not in jws.EAB_ALGORITHMS:
        raise AcmeProblem("badSignatureAlgorithm", "the EAB must be signed with HS256/384/512")
    if header.nonce is not None or header.jwk is not None or not header.kid:
        raise AcmeProblem("malformed", "the EAB header needs a kid and no nonce or jwk")
    if header.url != url:
        raise AcmeProblem("unauthorized", "the EAB url must be the newAccount URL")
    refused = AcmeProblem("unauthorized", "the external account binding is not valid")
    binding = ExternalAccountBinding.objects.select_for_update().filter(kid=header.kid).first()
    if binding is None:
        raise refused
    try:
        key = open_key(binding)
        mac_ok = inner.verify(jose.JWKOct(key=key))
    except Exception:
        mac_ok = False
    if not mac_ok:
        raise refused
    try:
        bound_key = jose.JWK.json_loads(inner.payload)
    except Exception:  # as above
        raise AcmeProblem("malformed", "the EAB payload is not a JWK") from None
    if bound_key.thumbprint() != jwk.thumbprint():
        raise AcmeProblem("unauthorized", "the EAB binds another key than the account's")
    if binding.revoked_at is not None:
        raise AcmeProblem("unauthorized", "the external account binding was revoked")
    if binding.is_expired:
        raise AcmeProblem("unauthorized", "the external account binding has expired")
    if binding.account_id is not None or binding.bound_at is not None:
        raise AcmeProblem("unauthorized", "the external account binding was used already")
    return binding


@transaction.atomic
def new_account(
    *,
    jwk: jose.JWK,
    contact=None,
    terms_agreed: bool = False,
    only_return_existing: bool = False,
    eab=None,
    url: str,
    ip: str | None,
) -> tuple[Account, bool]:
    """Find the account of jwk, or make one (bound to its EAB): (account, created)."""
    thumb = jws.thumbprint(jwk)
    existing = Account.objects.filter(key_thumbprint=thumb).first()
    if existing is not None:
        return existing, False
    if only_return_existing:
        raise AcmeProblem("accountDoesNotExist", "no account has this key")
    require_within_rate(
        f"acme-new-account:{ip}",
        settings.ACME_NEW_ACCOUNT_RATE_LIMIT,
        "new accounts from this address",
    )
    contact = _check_contact(contact)
    if settings.ACME_TERMS_OF_SERVICE and not terms_agreed:
        raise AcmeProblem("userActionRequired", "agree to the terms of service first")
    binding = None
    if eab is not None:
        binding = _binding_for_eab(eab, jwk=jwk, url=url)
    elif settings.ACME_REQUIRE_EAB:
        raise AcmeProblem(
            "externalAccountRequired",
            "this CA needs an external account binding: ask an agent for a key ID and HMAC key",
        )
    elif not contact:
        raise AcmeProblem("invalidContact", "without an account binding, give a mailto: contact")
    account = Account.objects.create(
        key_jwk=jwk.public_key().to_json(),
        key_thumbprint=thumb,
        contact=contact,
        terms_agreed=bool(terms_agreed),
        created_ip=ip,
    )
    if binding is not None:
        binding.account = account
        binding.bound_at = timezone.now()
        binding.save(update_fields=["account", "bound_at"])
    services.audit(
        "acme_account_created",
        actor=None,
        actor_label=f"acme:{account.slug}",
        ip=ip,
        account=account.slug,
        kid=binding.kid if binding else None,
        contact=contact,
    )
    return account, True


@transaction.atomic
def update_account(
    account: Account, *, contact=None, status=None, ip: str | None = None
) -> Account:
    """Change an account's contacts, or deactivate it (for good)."""
    account = Account.objects.select_for_update().get(pk=account.pk)
    if account.status != Account.Status.VALID:
        raise AcmeProblem("unauthorized", f"the account is {account.status}")
    changed = {}
    if contact is not None:
        account.contact = _check_contact(contact)
        changed["contact"] = account.contact
    if status is not None:
        if status != Account.Status.DEACTIVATED:
            raise AcmeProblem("malformed", 'an account\'s status can only become "deactivated"')
        account.status = Account.Status.DEACTIVATED
        changed["status"] = status
    if not changed:
        return account
    account.save(update_fields=["contact", "status"])
    services.audit(
        "acme_account_deactivated" if status else "acme_account_updated",
        actor=None,
        actor_label=f"acme:{account.slug}",
        ip=ip,
        account=account.slug,
        **changed,
    )
    return account


@transaction.atomic
def rollover_key(account: Account, *, new_jwk: jose.JWK, ip: str | None = None) -> Account:
    """Replace the account's key (RFC 8555 7.3.5); the JWS checks are the caller's."""
    thumb = jws.thumbprint(new_jwk)
    other = Account.objects.filter(key_thumbprint=thumb).exclude(pk=account.pk).first()
    if other is not None:
        conflict = AcmeProblem("malformed", "another account has this key already", status=409)
        conflict.account = other  # the view names it in Location (RFC 8555 7.3.5)
        raise conflict
    account = Account.objects.select_for_update().get(pk=account.pk)
    old = account.key_thumbprint
    account.key_jwk = new_jwk.public_key().to_json()
    account.key_thumbprint = thumb
    account.save(update_fields=["key_jwk", "key_thumbprint"])
    services.audit(
        "acme_account_key_changed",
        actor=None,
        actor_label=f"acme:{account.slug}",
        ip=ip,
        account=account.slug,
        old_thumbprint=old,
        new_thumbprint=thumb,
    )
    return account


from .orders import (  # noqa: E402 - orders uses the helpers above
    answer_challenge,
    deactivate_authorization,
    finalize_order,
    new_order,
    refresh_order,
    revoke_by_acme,
)

__all__ = [
    "BindingNotFound",
    "answer_challenge",
    "create_binding",
    "deactivate_authorization",
    "finalize_order",
    "list_bindings",
    "name_approved",
    "new_account",
    "new_order",
    "refresh_order",
    "revoke_binding",
    "revoke_by_acme",
    "rollover_key",
    "update_account",
]
