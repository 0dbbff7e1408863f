"""The audit log in words: the one map of every audit action to what people read in a
history table, and its details as short phrases instead of a dict.

Every action a service writes has a name here (tests/test_audit_text.py reads the code for
the actions it writes and fails on one without a name). Delivery's actions are named here
too, as text: requests_app does not import delivery.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import pki

#: audit action -> what happened, as a history table's Action column says it.
ACTIONS: dict[str, str] = {
    # Requests and decisions
    "request_submitted": "Request submitted",
    "renewal_submitted": "Renewal submitted",
    "renewal_auto_approved": "Renewal approved automatically",
    "email_confirmation_code_issued": "Email confirmation code sent",
    "email_confirmed": "Email address confirmed",
    "request_expired": "Request expired (email never confirmed)",
    "request_approved": "Request approved, certificate issued",
    "request_rejected": "Request rejected",
    "request_canceled": "Request canceled",
    "approval_refused": "Approval refused",
    "issuance_refused_by_lint": "Issuance refused: the certificate failed its checks",
    "server_key_generated": "Key pair generated on the server",
    "private_key_downloaded": "Private key downloaded",
    "private_key_erased": "Private key erased",
    # Certificates
    "certificate_superseded": "Certificate superseded by its renewal",
    "certificate_revoked": "Certificate revoked",
    "certificate_hold_released": "Certificate hold released",
    "ocsp_responder_created": "OCSP responder certificate created",
    "crl_generated": "CRL signed",
    # Deliveries (delivery app); the queued/sent/failed titles name the kind, see describe()
    "delivery_queued": "Delivery queued",
    "delivery_sent": "Delivery sent",
    "delivery_failed": "Delivery failed",
    "delivery_retry_scheduled": "Delivery failed, will be retried",
    "delivery_retry_requested": "Delivery retry requested",
    "delivery_held": "Delivery held",
    "delivery_revived": "Delivery restarted",
    "delivery_delivered": "Delivery confirmed by the mail provider",
    "delivery_bounced": "Delivery bounced",
    "expiry_reminder_queued": "Expiry reminder queued",
    "expiry_digest_sent": "Expiry digest sent to agents",
    "expiry_digest_failed": "Expiry digest failed",
    "expiry_digest_retry_scheduled": "Expiry digest failed, will be retried",
    "tasks_recovered": "Lost background tasks recovered",
    # Certificate authorities
    "ca_created": "CA created",
    "ca_imported": "CA imported",
    "ca_csr_created": "CA key and CSR created",
    "ca_completed": "CA certificate installed",
    "ca_subordinate_created": "Subordinate CA created",
    "keys_rewrapped": "CA keys re-encrypted",
    "audit_checkpoint": "Audit checkpoint signed",
    # Agents
    "agent_created": "Agent account created",
    "agent_access_granted": "Agent access granted",
    "agent_access_revoked": "Agent access revoked",
    "agent_login": "Agent logged in",
    "agent_login_failed": "Agent login failed",
    "agent_locked_out": "Agent locked out",
    "agent_logout": "Agent logged out",
    "agent_second_factor_passed": "Second factor passed",
    "agent_second_factor_failed": "Second factor failed",
    "agent_device_enrolled": "Second-factor device enrolled",
    "agent_device_enrolment_failed": "Second-factor device enrolment failed",
    "agent_device_removed": "Second-factor device removed",
    "agent_recovery_codes_generated": "Recovery codes generated",
    "agent_mfa_reset": "Second factor reset",
    "agent_enrolment_link_used": "Enrolment link used",
    "agent_certificate_linked": "Agent certificate linked",
    "agent_certificate_unlinked": "Agent certificate unlinked",
    "agent_certificate_login": "Agent logged in with a certificate",
    "agent_certificate_login_refused": "Certificate login refused",
    # ACME
    "acme_account_created": "ACME account created",
    "acme_account_updated": "ACME account updated",
    "acme_account_deactivated": "ACME account deactivated",
    "acme_account_key_changed": "ACME account key changed",
    "acme_binding_created": "ACME account binding created",
    "acme_binding_credentials_mailed": "ACME binding credentials mailed",
    "acme_binding_revoked": "ACME account binding revoked",
    "acme_order_created": "ACME order created",
    "acme_order_finalized": "ACME order finalized",
    "acme_order_valid": "ACME order ready (certificate issued)",
    "acme_order_invalid": "ACME order failed",
    "acme_challenge_valid": "ACME challenge passed",
    "acme_challenge_invalid": "ACME challenge failed",
    "acme_authorization_deactivated": "ACME authorization deactivated",
    "acme_certificate_revoked": "Certificate revoked by its ACME client",
}

#: Delivery kinds (delivery.models.Delivery.Kind) as the subject of a history line.
DELIVERY_KINDS = {
    "certificate": "Certificate",
    "link": "Retrieval link",
    "request_received": "“Request received” notice",
    "request_waiting": "“Request waiting” notice to agents",
    "request_rejected": "“Request rejected” notice",
    "request_canceled": "“Request canceled” notice",
    "certificate_revoked": "“Certificate revoked” notice",
    "email_confirmation": "Email confirmation code",
    "acme_credentials": "ACME account credentials",
    "expiry_reminder": "Expiry reminder",
}

#: How each delivery channel reads after "by" (webhook backends are named webhook*).
_CHANNELS = {"email_certificate": "email", "email_link": "email", "notify": "email"}


def _channel(backend: str) -> str:
    if backend in _CHANNELS or backend.startswith(("email", "acme")):
        return _CHANNELS.get(backend, "email")
    return "webhook" if "webhook" in backend else backend


def action_text(action: str) -> str:
    """The human name of an audit action; one nobody named reads as a sentence anyway."""
    return ACTIONS.get(action) or action.replace("_", " ").capitalize()


def _when(value: str) -> str:
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
        return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _serial(value: Any) -> str:
    text = str(value)
    if text and all(ch in "0123456789abcdef" for ch in text):
        return pki.serial_colons(text)
    return text


def _words(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_words(item) for item in value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{key.replace('_', ' ')} {_words(item)}" for key, item in value.items())
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _yes(text: str) -> Callable[[Any], str | None]:
    return lambda value: text if value else None


#: Detail key -> its phrase (None: say nothing). Keys not here read "Key words: value".
PHRASES: dict[str, Callable[[Any], str | None]] = {
    "delivery": lambda value: None,  # the outbox row's internal number
    "user_id": lambda value: None,
    "kind": lambda value: None,  # in the title
    "backend": lambda value: None,  # in the title
    "public_id": lambda value: f"delivery {value}",
    "recipient": lambda value: f"to {value}",
    "email": lambda value: f"address {value}",
    "attempt": lambda value: f"attempt {value}",
    "attempts": lambda value: f"after {value} attempts",
    "next_attempt": lambda value: f"next try {_when(value)}",
    "until": lambda value: f"until {_when(value)}",
    "error": lambda value: f"error: {value}",
    "last_error": lambda value: f"last error: {value}",
    "reason": lambda value: f"reason: {_words(value)}",
    "note": lambda value: f"note: {value}" if value else None,
    "profile": lambda value: f"profile: {value}",
    "subject": lambda value: f"subject: {value}" if value else "empty subject",
    "sans": lambda value: f"names: {_words(value)}" if value else "no alternative names",
    "dropped": lambda value: f"dropped from the CSR: {_words(value)}" if value else None,
    "serial": lambda value: f"serial {_serial(value)}",
    "superseded_by": lambda value: f"by serial {_serial(value)}",
    "renewal_of": lambda value: f"renews serial {_serial(value)}",
    "validity_days": lambda value: f"valid for {value} days",
    "edited_sans": _yes("names edited by the agent"),
    "same_key": lambda value: "same key" if value else "new key",
    "subject_changed": _yes("subject changed"),
    "names_removed": lambda value: f"names removed: {_words(value)}" if value else None,
    "email_confirmation": lambda value: f"email confirmation {value}",
    "days": lambda value: f"{value} days",
    "key_type": lambda value: f"key {value}",
    "pkcs12_format": lambda value: f"as {value}",
    "method": lambda value: f"by {value}",
    "via": lambda value: f"via {value}",
    "not_after": lambda value: f"expires {_when(value)}",
    "invalidity_date": lambda value: f"invalid since {_when(value)}" if value else None,
    "previous_reason": lambda value: f"previously {value}" if value else None,
    "held_since": lambda value: f"on hold since {_when(value)}",
    "next_update": lambda value: f"next update {_when(value)}",
    "expires_at": lambda value: f"expires {_when(value)}",
}


def _phrase(key: str, value: Any) -> str | None:
    if value is None or value == "" or value == []:
        return None
    if key in PHRASES:
        return PHRASES[key](value)
    text = _words(value)
    if isinstance(value, str) and len(value) >= 19 and value[4:5] == "-" and value[10:11] == "T":
        text = _when(value)
    return f"{key.replace('_', ' ')}: {text}"


def describe(action: str, details: Mapping[str, Any]) -> tuple[str, list[str]]:
    """(title, phrases) for one audit row: "Certificate queued for delivery by email",
    ["to ops@example.test"]."""
    title = action_text(action)
    kind = DELIVERY_KINDS.get(details.get("kind", ""))
    if kind and action == "delivery_queued":
        title = f"{kind} queued for delivery"
        if details.get("backend"):
            title += f" by {_channel(str(details['backend']))}"
    elif kind and action == "delivery_sent":
        title = f"{kind} sent"
    elif kind and action == "delivery_failed":
        title = f"{kind} not delivered"
    phrases = [_phrase(key, value) for key, value in details.items()]
    return title, [phrase[0].upper() + phrase[1:] for phrase in phrases if phrase]


@dataclass(frozen=True)
class HistoryLine:
    """One row of a history table: the audit event, its title and its detail phrases."""

    event: Any
    title: str
    phrases: list[str]


def history(events: Iterable[Any]) -> list[HistoryLine]:
    """History table rows for audit events (AuditEvent rows), in their order."""
    return [HistoryLine(event, *describe(event.action, event.details or {})) for event in events]
