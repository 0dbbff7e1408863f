"""Every state change of the Certificate Manager, split by domain. Views, admin actions and
management commands parse their input, call one function here, and report what it returned
or raised.

The contract of every public function: one transaction; its audit rows; its signal (from
requests_app.signals) sent inside that transaction, so receivers write their outbox rows
atomically with it; and refusals of one family, ServiceError (lower-level errors are wrapped
here). A function that deliberately uses more than one transaction says why in its docstring.

Callers import the package (`from requests_app import services; services.approve_request`);
the modules are where each behaviour lives:

    errors        the ServiceError family
    audit_log     the audit log's one writer
    records       locked reads, status counters
    submission    requests enter the queue (web, Dogtag, commands)
    mailbox       proof of the requester's mailbox before a request reaches the agents
    decisions     approve, reject, cancel
    issuance      what an approval checks and signs (shared with bulk)
    bulk          approve every pending request, a chunk per transaction
    renewals      renewal by serial number; what a renewal changes, the same-key rule
    web_renewals  renewal from the end-entity pages (a new CSR, the same key, a key made here)
    authorities   create and import CAs
    hierarchy     subordinate CAs: a CSR for an offline root and its completion, or one
                  signed by a root held here
    agents        agent accounts
    agent_auth    agents' logins, second-factor devices, recovery codes, enrolment links
    server_keys   keys made by the portal, handed over once
    agent_certificates   certificates that log agents in: links, the second-person rule for
                  approving them, the check of a presented certificate
    revocation    revoke and release certificates, the delegated OCSP responder
    crls          sign and store CRLs, and which one to serve
"""

from ..pki import HOLD as CERTIFICATE_HOLD
from ..pki import REASONS as REVOCATION_REASONS
from ..pki import REMOVE_FROM_CRL
from .agent_auth import (
    DeviceRow,
    EnrolmentLinkInvalid,
    WrongSecondFactor,
    begin_totp_enrolment,
    complete_passkey_registration,
    confirm_totp_device,
    enrolment_link_path,
    enrolment_link_user,
    has_second_factor,
    needs_second_factor,
    pending_totp_device,
    record_lockout,
    record_login,
    record_login_failure,
    record_logout,
    recovery_codes_left,
    regenerate_recovery_codes,
    remove_second_factor_device,
    reset_agent_mfa,
    second_factor_devices,
    set_password_with_enrolment_link,
    verify_passkey,
    verify_second_factor,
)
from .agent_certificates import (
    AGENT_PROFILE,
    is_active_agent,
    link_agent_certificate,
    unlink_agent_certificate,
    verify_agent_certificate,
)
from .agents import AGENTS_GROUP, agents_group, create_agent, record_agent_access_change
from .audit_log import audit, verify_audit, write_audit_checkpoint
from .authorities import create_ca, import_ca, rewrap_keys
from .bulk import BulkResult, approve_all_pending
from .crls import current_crl, publish_crl
from .decisions import approve_request, cancel_request, reject_request
from .errors import (
    AlreadyRevoked,
    CARefused,
    CAUnavailable,
    CertificateNotFound,
    CertificateRefused,
    InvalidRequest,
    InvalidTransition,
    KeyNotAvailable,
    LintFailed,
    NotAllowed,
    NotOnHold,
    RecordBusy,
    RequestNotFound,
    ServiceError,
    WrongPassphrase,
)
from .hierarchy import complete_subordinate_ca, create_subordinate_ca, request_subordinate_ca
from .mailbox import (
    WrongCode,
    confirm_email,
    expire_unconfirmed_requests,
    format_code,
    issue_email_confirmation_code,
)
from .records import status_counts
from .renewals import (
    AUTO_APPROVAL_RULE,
    RenewalChanges,
    approve_renewal_if_allowed,
    auto_approval_refusal,
    renewal_changes,
    submit_renewal,
)
from .revocation import create_ocsp_responder, release_hold, revoke_certificate
from .server_keys import (
    PKCS12_FORMATS,
    ServerKeyState,
    download_server_key,
    erase_expired_server_keys,
    offers_server_key,
    request_agent_certificate_with_server_key,
    server_key_state,
    submit_request_with_server_key,
)
from .submission import (
    issue_certificate,
    request_agent_certificate,
    submit_enrollment,
    submit_request,
)
from .web_renewals import submit_renewal_with_server_key, submit_web_renewal

__all__ = [
    "AGENTS_GROUP",
    "AGENT_PROFILE",
    "AUTO_APPROVAL_RULE",
    "CERTIFICATE_HOLD",
    "PKCS12_FORMATS",
    "REMOVE_FROM_CRL",
    "REVOCATION_REASONS",
    "AlreadyRevoked",
    "BulkResult",
    "CARefused",
    "CAUnavailable",
    "CertificateNotFound",
    "CertificateRefused",
    "DeviceRow",
    "EnrolmentLinkInvalid",
    "InvalidRequest",
    "InvalidTransition",
    "KeyNotAvailable",
    "LintFailed",
    "NotAllowed",
    "NotOnHold",
    "RecordBusy",
    "RenewalChanges",
    "RequestNotFound",
    "ServerKeyState",
    "ServiceError",
    "WrongCode",
    "WrongPassphrase",
    "WrongSecondFactor",
    "agents_group",
    "approve_all_pending",
    "approve_renewal_if_allowed",
    "approve_request",
    "audit",
    "auto_approval_refusal",
    "begin_totp_enrolment",
    "cancel_request",
    "complete_passkey_registration",
    "complete_subordinate_ca",
    "confirm_email",
    "confirm_totp_device",
    "create_agent",
    "create_ca",
    "create_ocsp_responder",
    "create_subordinate_ca",
    "current_crl",
    "download_server_key",
    "enrolment_link_path",
    "enrolment_link_user",
    "erase_expired_server_keys",
    "expire_unconfirmed_requests",
    "format_code",
    "has_second_factor",
    "import_ca",
    "is_active_agent",
    "issue_certificate",
    "issue_email_confirmation_code",
    "link_agent_certificate",
    "needs_second_factor",
    "offers_server_key",
    "pending_totp_device",
    "publish_crl",
    "record_agent_access_change",
    "record_lockout",
    "record_login",
    "record_login_failure",
    "record_logout",
    "recovery_codes_left",
    "regenerate_recovery_codes",
    "reject_request",
    "release_hold",
    "remove_second_factor_device",
    "renewal_changes",
    "request_agent_certificate",
    "request_agent_certificate_with_server_key",
    "request_subordinate_ca",
    "reset_agent_mfa",
    "revoke_certificate",
    "rewrap_keys",
    "second_factor_devices",
    "server_key_state",
    "set_password_with_enrolment_link",
    "status_counts",
    "submit_enrollment",
    "submit_renewal",
    "submit_renewal_with_server_key",
    "submit_request",
    "submit_request_with_server_key",
    "submit_web_renewal",
    "unlink_agent_certificate",
    "verify_agent_certificate",
    "verify_audit",
    "verify_passkey",
    "verify_second_factor",
    "write_audit_checkpoint",
]
