"""The one family of refusals that services raise: every one is a ServiceError.

Lower-level errors (pki.PKIError, OSError, IntegrityError, ...) are wrapped at the service
boundary, so that views, admin actions and commands catch ServiceError and nothing else.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A refused operation; the message is meant for the person who asked."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidRequest(ServiceError):
    """The input is bad (CSR, profile, email, SANs, validity); nothing was written."""


class InvalidTransition(ServiceError):
    """The request is not in a state that allows this action; nothing was written."""


class RequestNotFound(ServiceError):
    """No request has that ID."""


class CertificateNotFound(ServiceError):
    """No certificate has that serial number."""


class CAUnavailable(ServiceError):
    """There is no CA, or its key cannot be opened; an administrator must act."""


class LintFailed(CAUnavailable):
    """Pre-issuance linting (pkilint) found a finding at ERROR in the certificate about to be
    signed: nothing was signed or stored. The message names the findings; `findings` holds
    them (pki.Finding). An administrator must fix the profile or the CA's settings."""

    def __init__(self, message: str, *, findings=(), field: str | None = None):
        super().__init__(message, field=field)
        self.findings = list(findings)


class CARefused(ServiceError):
    """A CA cannot be created or imported as asked (bad certificate, key or chain, or one
    exists already); nothing was written."""


class AlreadyRevoked(InvalidTransition):
    """The certificate is revoked already (for a final reason, or on hold again)."""


class NotOnHold(InvalidTransition):
    """Only a certificate on hold (certificateHold) can be released."""


class WrongPassphrase(InvalidRequest):
    """The passphrase does not open the stored key; nothing was written."""


class KeyNotAvailable(ServiceError):
    """No private key is stored for this request (never was, or erased); nothing was written."""


class NotAllowed(ServiceError):
    """This actor may not do this (e.g. approve their own agent certificate); nothing was
    written but the audit row of the refusal."""


class CertificateRefused(ServiceError):
    """A client certificate does not log anyone in; `reason` names why in one word
    (revoked, expired, other_ca, wrong_profile, not_linked, inactive, ...)."""

    def __init__(self, message: str, *, reason: str):
        super().__init__(message)
        self.reason = reason
