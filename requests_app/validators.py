"""Validators that several layers share, so that what a form accepts no later step refuses."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

#: Characters that could split one recipient into two or inject a mail header.
_NOT_IN_A_RECIPIENT = "\r\n\0,;"


def validate_recipient_email(value: str) -> None:
    """One email address that mail can be sent to: the check of the enrollment forms, of
    submit_request and of delivery's recipients (a quoted "a,b"@x passes Django's
    validate_email, but a mail header would read it as two addresses)."""
    text = (value or "").strip()
    if any(ch in text for ch in _NOT_IN_A_RECIPIENT):
        raise ValidationError(
            "Enter one email address, without commas, semicolons or line breaks.",
            code="invalid",
        )
    validate_email(text)
