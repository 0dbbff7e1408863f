"""Dogtag's end-entity XML protocol (as certmonger's dogtag-submit speaks it): profile IDs,
request fields, and the replies, byte for byte in the shapes of
../shared/protocols/dogtag-ee-xml.md. No views and no state changes here.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from xml.sax.saxutils import escape

from django.conf import settings

from .. import pki, profiles
from ..models import (
    Certificate,
    CertificateRequest,
)

XML_HEADER = '<?xml version="1.0" encoding="UTF-8" standalone="no"?>'
CONTENT_TYPE = "application/xml"

#: profileSubmit's refusals, as Dogtag numbers them (0 is issued, 2 pending).
ERROR, REJECTED = "1", "3"

MAX_ECHO = 40  # how much of a client's input a reply repeats
MAX_MESSAGE = 500

# Characters XML 1.0 cannot carry at all; libxml2 refuses the whole reply if one slips in.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]+$")


class ProtocolError(ValueError):
    """A request this protocol cannot read; the message goes back in the XML error."""


# --- profile IDs --------------------------------------------------------------------


def profile_ids() -> dict[str, profiles.Profile]:
    """Dogtag profile ID -> our enabled profile."""
    return profiles.dogtag_profile_ids()


def profile_for_id(dogtag_id: str) -> profiles.Profile:
    """Our profile for a Dogtag profile ID, or ProtocolError in Dogtag's words."""
    profile = profile_ids().get(dogtag_id)
    if profile is None:
        offered = ", ".join(profile_ids()) or "none"
        raise ProtocolError(f"Profile {echo(dogtag_id)} is not found (offered: {offered})")
    return profile


# --- request fields -----------------------------------------------------------------


def echo(value: str) -> str:
    """A client's value, shortened, for repeating it in a message."""
    value = " ".join(str(value).split())
    return value if len(value) <= MAX_ECHO else value[:MAX_ECHO] + "..."


def csr_from_param(text: str) -> str | bytes:
    """cert_request as sent: PEM (certmonger), or bare base64 DER (other Dogtag clients)."""
    if "-----BEGIN" in text or not text.strip() or not _BASE64.match(text):
        return text
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return text


def requester_email(given: str, csr: str | bytes, profile: profiles.Profile) -> str:
    """Who hears about the request: requestor_email, an email in the CSR, or the fallback."""
    given = (given or "").strip()
    if given:
        return given
    found = pki.csr_email(csr)  # None also for a bad CSR: submit_request reports what is wrong
    if found:
        return found
    if profile.takes_hostnames and settings.DOGTAG_REQUESTER_EMAIL:
        # certmonger sends no address unless told (-o requestor_email=...); a server
        # certificate does not name one, so mail goes to the configured mailbox.
        return settings.DOGTAG_REQUESTER_EMAIL
    raise ProtocolError(
        f"The {profile.name} profile needs the requester's email address: send "
        "requestor_email (dogtag-submit -o requestor_email=ADDRESS) or put it in the CSR "
        "(getcert request -E ADDRESS)"
    )


@dataclass(frozen=True)
class RequestRef:
    """A requestId as a client sent it, and the request it names (None if none)."""

    text: str
    request: CertificateRequest | None


def find_request(request_id: str) -> RequestRef:
    """The request named by a requestId (our public ID, any case, spaces trimmed)."""
    sent = (request_id or "").strip()
    found = CertificateRequest.objects.select_related("certificate").by_public_id(sent)
    return RequestRef(text=sent, request=found)


# --- XML ----------------------------------------------------------------------------


def text(value: object) -> str:
    """Escaped element text with no surrounding whitespace (certmonger trims newlines only)."""
    cleaned = _NOT_XML.sub("", str(value)).strip()
    return escape(cleaned)


def message(value: object) -> str:
    """A human message on one line, short enough for `getcert list`."""
    line = " ".join(str(value).split())
    if len(line) > MAX_MESSAGE:
        line = line[:MAX_MESSAGE] + "..."
    return text(line)


def document(body: str) -> str:
    return XML_HEADER + body


def _b64(cert: Certificate) -> str:
    return base64.b64encode(pki.to_der(cert.x509)).decode("ascii")


# profileSubmit (and its renewal form): /XMLResponse/{Status,Error,RequestId,Requests/Request/b64}


def submit_pending(req: CertificateRequest) -> str:
    """Status 2: the request waits for an agent; certmonger polls with its RequestId."""
    return document(
        "<XMLResponse><Status>2</Status><Error>Request Deferred - defer request</Error>"
        f"<RequestId>{text(req.public_id)}</RequestId></XMLResponse>"
    )


def submit_issued(req: CertificateRequest, cert: Certificate) -> str:
    """Status 0: issued at once; b64 is the bare base64 DER (no PEM armour)."""
    return document(
        "<XMLResponse><Status>0</Status><Requests><Request>"
        f"<Id>{text(req.public_id)}</Id><SubjectDN>{text(cert.subject)}</SubjectDN>"
        f"<serialno>{text(cert.serial)}</serialno><b64>{_b64(cert)}</b64>"
        "</Request></Requests></XMLResponse>"
    )


def submit_error(error: str, *, status: str = ERROR) -> str:
    """Status 1 (bad input) or 3 (refused by policy), with our message as Error."""
    if status == REJECTED:
        error = f"Request Rejected - {error}"
    return document(
        f"<XMLResponse><Status>{status}</Status><Error>{message(error)}</Error></XMLResponse>"
    )


# checkRequest: /xml/header/{status,requestId}, /xml/fixed/unexpectedError


def _fixed_error(error: str, header: str = "<header/>") -> str:
    # requestStatus 7 as in Dogtag's verified not-found reply; certmonger does not read it.
    return document(
        f"<xml>{header}<fixed><authorityName>Certificate Manager</authorityName>"
        f"<unexpectedError>{message(error)}</unexpectedError>"
        "<requestStatus>7</requestStatus></fixed><records/></xml>"
    )


def not_found(ref: RequestRef) -> str:
    """Dogtag's reply for an unknown requestId, which certmonger shows as the error."""
    if not ref.text:
        return _fixed_error("Request ID is missing (send requestId=...)")
    return _fixed_error(f"Request ID {echo(ref.text)} was not found in the request queue.")


def fixed_error(error: str) -> str:
    """An error in the xml/fixed form (checkRequest, displayCertFromRequest, profileList)."""
    return _fixed_error(error)


def _header(req: CertificateRequest, status: str) -> str:
    return (
        f"<header><status>{status}</status><requestId>{text(req.public_id)}</requestId>"
        "<authority>ca</authority></header>"
    )


def check_status(req: CertificateRequest) -> str:
    """The request's state; a rejection or cancellation carries its reason."""
    Status = CertificateRequest.Status
    # Awaiting the requester's email confirmation is still "pending" to a Dogtag client.
    if req.status in (Status.PENDING, Status.AWAITING_EMAIL):
        return document(f"<xml>{_header(req, 'pending')}<fixed/><records/></xml>")
    if req.status == Status.COMPLETE:
        return document(
            f"<xml>{_header(req, 'complete')}<fixed/><records><record>"
            f"<serialNumber>{text(req.certificate.serial)}</serialNumber>"
            "</record></records></xml>"
        )
    if req.status == Status.REJECTED:
        why = f"Request {req.display_id} was rejected by an agent: {req.agent_note or 'no reason'}"
    else:
        why = f"Request {req.display_id} was canceled" + (
            f": {req.agent_note}" if req.agent_note else ""
        )
    return document(
        f"<xml>{_header(req, req.status)}<fixed>"
        f"<unexpectedError>{message(why)}</unexpectedError></fixed><records/></xml>"
    )


# displayCertFromRequest: /xml/records/record/base64Cert, or /xml/fixed/unexpectedError


def display_certificate(req: CertificateRequest) -> str:
    """The issued certificate as PEM in base64Cert, or why there is none yet."""
    header = f"<header><requestId>{text(req.public_id)}</requestId></header>"
    if req.certificate is None:
        return _fixed_error(
            f"Request {req.display_id} was not completed (it is {req.status_text}).",
            header,
        )
    pem = pki.to_pem(req.certificate.x509).strip()
    return document(
        f"<xml>{header}<fixed><requestId>{text(req.public_id)}</requestId></fixed>"
        f"<records><record><serialNo>{text(req.certificate.serial)}</serialNo>"
        f"<base64Cert>{text(pem)}</base64Cert></record></records></xml>"
    )


# profileList: /xml/output/set/record/list/*/set/{profileId,profileIsEnable,profileIsVisible}


def profile_list() -> str:
    """Our enabled profiles under their Dogtag IDs."""
    entries = "".join(
        "<record><set>"
        f"<profileId>{text(dogtag_id)}</profileId><profileName>{text(p.label)}</profileName>"
        f"<profileDesc>{text(p.description)}</profileDesc>"
        "<profileIsEnable>true</profileIsEnable><profileIsVisible>true</profileIsVisible>"
        "</set></record>"
        for dogtag_id, p in profile_ids().items()
    )
    return document(
        f"<xml><output><set><record><list>{entries}</list></record></set></output></xml>"
    )


# The agent servlets: profileProcess's reply is read at /xml/output/set/{errorCode,errorReason}.


def agent_refusal(error: str) -> str:
    """Refuse an agent servlet: approval happens in ca-portal, by a person."""
    return document(
        "<xml><fixed><unexpectedError>"
        f"{message(error)}</unexpectedError></fixed><output><set><errorCode>1</errorCode>"
        f"<errorReason>{message(error)}</errorReason></set></output></xml>"
    )
