"""Handing an ACME binding's credentials to its requester: shown once to the agent who made
it, or mailed to the requester through the delivery outbox.

The outbox row never holds the key: the mail is built by delivery when it is sent, and asks
`credentials_for_mail` for the key then; once the binding has bound its account, is revoked
or has expired, there is nothing left to send. (requests_app never imports delivery: the
signal below is the seam, as in requests_app.signals.)
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.dispatch import Signal

from .. import services
from . import services as acme_services
from .models import ExternalAccountBinding

User = AbstractBaseUser

#: An agent asked for a binding's credentials to be mailed to its requester (binding.email);
#: the receiver writes an outbox row, and the key is read when the message is built.
#: provides args: binding, actor
binding_credentials_requested = Signal()


def binding_status(binding: ExternalAccountBinding) -> str:
    """How agents see a binding: revoked, expired, bound (an account used it) or unused."""
    if binding.is_revoked:
        return "revoked"
    if binding.is_expired:
        return "expired"
    return "bound" if binding.account_id else "unused"


class CredentialsUnavailable(services.ServiceError):
    """The binding's key can no longer be sent: it bound an account, was revoked or expired."""


@transaction.atomic
def create_binding_for_requester(
    *,
    email: str,
    names: list[str],
    profile: str = "server",
    days: int = 90,
    send: bool,
    actor: User | None,
) -> tuple[ExternalAccountBinding, str | None]:
    """Create a binding (acme.services.create_binding); with send, mail its credentials to
    the requester and return no key (the requester is the one who sees it), else return the
    key for the agent's one look."""
    binding, hmac_key = acme_services.create_binding(
        email=email, names=names, profile=profile, days=days, actor=actor
    )
    if not send:
        return binding, hmac_key
    services.audit(
        "acme_binding_credentials_mailed",
        actor=actor,
        actor_label="administrator",
        kid=binding.kid,
        email=binding.email,
    )
    binding_credentials_requested.send(sender=ExternalAccountBinding, binding=binding, actor=actor)
    return binding, None


def credentials_for_mail(binding: ExternalAccountBinding) -> tuple[str, str]:
    """The key ID and HMAC key (base64url) for the mail being built now; refused once the
    binding cannot be used any more, so an old outbox row never sends a live key."""
    binding = ExternalAccountBinding.objects.get(pk=binding.pk)  # its state now
    if binding.account_id is not None:
        raise CredentialsUnavailable(f"the ACME binding {binding.kid} has bound its account")
    if not binding.is_usable:
        raise CredentialsUnavailable(f"the ACME binding {binding.kid} is revoked or expired")
    return binding.kid, acme_services.b64url(acme_services.open_key(binding))
