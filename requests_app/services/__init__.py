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
    decisions     approve, reject, cancel
    issuance      what an approval checks and signs (shared with bulk)
    bulk          approve every pending request, a chunk per transaction
    renewals      renewal by serial number
    authorities   create and import CAs
    agents        agent accounts
    server_keys   keys made by the portal, handed over once
    revocation    revoke and release certificates, the delegated OCSP responder
    crls          sign and store CRLs, and which one to serve
"""

from ..pki import HOLD as CERTIFICATE_HOLD
from ..pki import REASONS as REVOCATION_REASONS
from ..pki import REMOVE_FROM_CRL
from .agents import AGENTS_GROUP, agents_group, create_agent
from .audit_log import audit
from .authorities import create_ca, import_ca
from .bulk import BulkResult, approve_all_pending
from .crls import current_crl, publish_crl
from .decisions import approve_request, cancel_request, reject_request
from .errors import (
    AlreadyRevoked,
    CARefused,
    CAUnavailable,
    CertificateNotFound,
    InvalidRequest,
    InvalidTransition,
    KeyNotAvailable,
    NotOnHold,
    RecordBusy,
    RequestNotFound,
    ServiceError,
    WrongPassphrase,
)
from .records import status_counts
from .renewals import submit_renewal
from .revocation import create_ocsp_responder, release_hold, revoke_certificate
from .server_keys import (
    PKCS12_FORMATS,
    ServerKeyState,
    download_server_key,
    erase_expired_server_keys,
    offers_server_key,
    server_key_state,
    submit_request_with_server_key,
)
from .submission import issue_certificate, submit_enrollment, submit_request

__all__ = [
    "AGENTS_GROUP",
    "CERTIFICATE_HOLD",
    "PKCS12_FORMATS",
    "REMOVE_FROM_CRL",
    "REVOCATION_REASONS",
    "AlreadyRevoked",
    "BulkResult",
    "CARefused",
    "CAUnavailable",
    "CertificateNotFound",
    "InvalidRequest",
    "InvalidTransition",
    "KeyNotAvailable",
    "NotOnHold",
    "RecordBusy",
    "RequestNotFound",
    "ServerKeyState",
    "ServiceError",
    "WrongPassphrase",
    "agents_group",
    "approve_all_pending",
    "approve_request",
    "audit",
    "cancel_request",
    "create_agent",
    "create_ca",
    "create_ocsp_responder",
    "current_crl",
    "download_server_key",
    "erase_expired_server_keys",
    "import_ca",
    "issue_certificate",
    "offers_server_key",
    "publish_crl",
    "reject_request",
    "release_hold",
    "revoke_certificate",
    "server_key_state",
    "status_counts",
    "submit_enrollment",
    "submit_renewal",
    "submit_request",
    "submit_request_with_server_key",
]
