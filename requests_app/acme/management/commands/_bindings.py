"""What the ACME binding commands share: a binding as JSON and as a table row."""

from __future__ import annotations

from requests_app.acme.credentials import binding_status
from requests_app.management._util import printable


def binding_data(binding) -> dict:
    """A binding without its key (which is shown once, when it is made)."""
    return {
        "kid": binding.kid,
        "status": binding_status(binding),
        "email": binding.email,
        "names": list(binding.names),
        "profile": binding.profile,
        "expires_at": binding.expires_at,
        "created_at": binding.created_at,
        "created_by": binding.created_by.get_username() if binding.created_by else None,
        "revoked_at": binding.revoked_at,
        "account": binding.account.slug if binding.account_id else None,
        "bound_at": binding.bound_at,
    }


def binding_row(binding) -> str:
    names = printable(", ".join(binding.names))
    return (
        f"{binding.kid:<22} {binding_status(binding):<8} {binding.profile:<8} "
        f"{binding.expires_at:%Y-%m-%d}  {printable(binding.email):<30} {names}"
    )


HEADER = f"{'KEY ID':<22} {'STATUS':<8} {'PROFILE':<8} {'EXPIRES':<11} {'EMAIL':<30} NAMES"
