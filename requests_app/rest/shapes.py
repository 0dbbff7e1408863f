"""The JSON documents of Dogtag's REST API, in the shapes `dogtag-pki` 11.2.1 reads (keys
it requires are always present; Dogtag omits null fields, and so do we). No views and no
state changes here."""

from __future__ import annotations

import base64
import datetime as dt

from django.http import HttpRequest

from .. import pki, profiles
from ..models import Certificate, CertificateRequest
from . import ids

Status = CertificateRequest.Status

# Dogtag's request states; awaiting the requester's email confirmation is still "pending"
# to a Dogtag client (as on the certmonger protocol), though agents cannot act on it yet.
REQUEST_STATUS = {
    Status.AWAITING_EMAIL: "pending",
    Status.PENDING: "pending",
    Status.COMPLETE: "complete",
    Status.REJECTED: "rejected",
    Status.CANCELED: "canceled",
}

# --- profiles -------------------------------------------------------------------------


def profile_ids() -> dict[str, profiles.Profile]:
    """Profile ID -> our enabled profile: Dogtag's IDs (as on the certmonger protocol), then
    our own names."""
    mapping = profiles.dogtag_profile_ids()
    for profile in profiles.all_profiles():
        mapping.setdefault(profile.name, profile)
    return mapping


def dogtag_id_of(profile_name: str) -> str:
    """The first Dogtag ID naming our profile (its own name when none does)."""
    for dogtag_id, profile in profile_ids().items():
        if profile.name == profile_name:
            return dogtag_id
    return profile_name


def profile_entry(request: HttpRequest, dogtag_id: str, profile: profiles.Profile) -> dict:
    return {
        "profileId": dogtag_id,
        "profileName": profile.label,
        "profileDescription": profile.description,
        "profileURL": absolute(request, f"/ca/rest/certrequests/profiles/{dogtag_id}"),
    }


def _attribute(name: str, description: str, syntax: str = "string", value: str = "") -> dict:
    return {
        "name": name,
        "Value": value,
        "Descriptor": {"Syntax": syntax, "Description": description},
    }


def inputs(profile: profiles.Profile) -> list[dict]:
    """The enrollment inputs: the PKCS#10 request, and the requester's contact details."""
    email_text = "Requester's email address (where the certificate or its link is sent)"
    if profile.confirm_email:
        email_text += "; it must be confirmed from the mailbox before an agent sees the request"
    return [
        {
            "id": "i1",
            "ClassID": "certReqInputImpl",
            "Name": "Certificate Request Input",
            "Text": "A PKCS#10 certificate signing request, PEM or base64",
            "Attribute": [
                _attribute("cert_request_type", "Certificate Request Type", "cert_request_type"),
                _attribute("cert_request", "Certificate Request", "cert_request"),
            ],
            "ConfigAttribute": [],
        },
        {
            "id": "i2",
            "ClassID": "submitterInfoInputImpl",
            "Name": "Requestor Information",
            "Text": "Who asks for the certificate",
            "Attribute": [
                _attribute("requestor_name", "Requester Name"),
                _attribute("requestor_email", email_text, "email"),
                _attribute("requestor_phone", "Requester Phone"),
            ],
            "ConfigAttribute": [],
        },
    ]


def enrollment_template(dogtag_id: str, profile: profiles.Profile) -> dict:
    return {
        "Attributes": {"Attribute": []},
        "ProfileID": dogtag_id,
        "Renewal": False,
        "RemoteHost": "",
        "RemoteAddress": "",
        "Input": inputs(profile),
        "Output": [],
    }


# --- requests -------------------------------------------------------------------------


def absolute(request: HttpRequest, path: str) -> str:
    return request.build_absolute_uri(path)


def request_url(request: HttpRequest, req: CertificateRequest) -> str:
    return absolute(request, f"/ca/rest/certrequests/{ids.request_decimal(req)}")


def cert_url(request: HttpRequest, cert: Certificate) -> str:
    return absolute(request, f"/ca/rest/certs/{ids.serial_decimal(cert)}")


def request_type(req: CertificateRequest) -> str:
    return "renewal" if req.renewal_of_id else "enrollment"


def request_info(request: HttpRequest, req: CertificateRequest) -> dict:
    """CertRequestInfo: requestURL's last segment is the ID the client uses from then on."""
    info = {
        "requestID": ids.request_hex(req),
        "requestType": request_type(req),
        "requestStatus": REQUEST_STATUS.get(req.status, req.status),
        "requestURL": request_url(request, req),
        "certRequestType": "pkcs10",
        "operationResult": "success",
    }
    if req.certificate_id is not None:
        info["certId"] = ids.serial_id(req.certificate)
        info["certURL"] = cert_url(request, req.certificate)
    if req.status == Status.REJECTED:
        info["operationResult"] = "error"
        info["errorMessage"] = f"Request Rejected - {req.agent_note or 'no reason given'}"
    elif req.status == Status.CANCELED:
        info["errorMessage"] = "Request Canceled" + (
            f" - {req.agent_note}" if req.agent_note else ""
        )
    return info


def collection(entries: list[dict], *, total: int | None = None, next_url: str = "") -> dict:
    """Dogtag's DataCollection: entries (required by the client), total, and a next link."""
    body = {"total": len(entries) if total is None else total, "entries": entries}
    if next_url:
        body["Link"] = [{"rel": "next", "href": next_url}]
    return body


def java_date(when: dt.datetime | None) -> str | None:
    """Java's Date.toString() in UTC, as Dogtag writes dates in CertData and reviews."""
    if when is None:
        return None
    return when.astimezone(dt.UTC).strftime("%a %b %d %H:%M:%S UTC %Y")


def epoch_ms(when: dt.datetime | None) -> int | None:
    """Jackson's form of java.util.Date: milliseconds since the epoch."""
    return None if when is None else int(when.timestamp() * 1000)


def policy_set(req: CertificateRequest, profile: profiles.Profile | None) -> list[dict]:
    """The review's ProfilePolicySet: what the agent may edit before approving (validity and
    alternative names); the subject is shown, not editable. Every policy carries its id."""
    days = profile.validity_days if profile else ""
    limit = profile.max_validity_days if profile else ""
    return [
        {
            "id": "defaultSet",
            "policies": [
                {
                    "id": "1",
                    "def": {
                        "name": "Subject Name Default",
                        "text": "The subject the certificate will name (not editable here)",
                        "attributes": [_attribute("name", "Subject Name", value=req.subject)],
                        "params": [],
                    },
                },
                {
                    "id": "2",
                    "def": {
                        "name": "Validity Default",
                        "text": f"Days the certificate is valid, at most {limit}",
                        "attributes": [
                            _attribute("range", "Validity Range (days)", "integer", str(days))
                        ],
                        "params": [],
                    },
                },
                {
                    "id": "3",
                    "def": {
                        "name": "Subject Alt Name Extension Default",
                        "text": "Alternative names, separated by commas",
                        "attributes": [
                            _attribute(
                                "subjAltNames",
                                "Subject Alternative Names",
                                value=", ".join(req.requested_sans),
                            )
                        ],
                        "params": [],
                    },
                },
            ],
        }
    ]


def review(request: HttpRequest, req: CertificateRequest, nonce: str) -> dict:
    """CertReviewResponse: the enrollment request's shape plus the request's facts and the
    nonce the action must echo."""
    try:
        profile = profiles.get_profile(req.profile)
    except profiles.ProfileError:
        profile = None
    values = {
        "cert_request_type": "pkcs10",
        "cert_request": req.csr_pem,
        "requestor_name": req.requester_name,
        "requestor_email": req.requester_email,
        "requestor_phone": "",
    }
    form = inputs(profile) if profile else []
    for item in form:
        for attribute in item["Attribute"]:
            attribute["Value"] = values.get(attribute["name"], "")
    return {
        "Attributes": {"Attribute": []},
        "ProfileID": dogtag_id_of(req.profile),
        "Renewal": bool(req.renewal_of_id),
        "RemoteHost": "",
        "RemoteAddress": req.submitter_ip or "",
        "Input": form,
        "Output": [],
        "nonce": nonce,
        "requestId": ids.request_hex(req),
        "requestType": request_type(req),
        "requestStatus": REQUEST_STATUS.get(req.status, req.status),
        "requestOwner": "",
        "requestCreationTime": java_date(req.submitted_at),
        "requestModificationTime": java_date(req.updated_at),
        "requestNotes": req.requester_note,
        "profileApprovedBy": "",
        "profileSetId": "defaultSet",
        "profileIsVisible": "true",
        "profileName": profile.label if profile else req.profile,
        "profileDescription": profile.description if profile else "",
        "profileRemoteHost": "",
        "profileRemoteAddr": req.submitter_ip or "",
        "ProfilePolicySet": policy_set(req, profile),
    }


# --- certificates ---------------------------------------------------------------------


def cert_status(cert: Certificate) -> str:
    expired = cert.not_after <= pki.utcnow()
    if cert.status == Certificate.Status.REVOKED:
        return "REVOKED_EXPIRED" if expired else "REVOKED"
    return "EXPIRED" if expired else "VALID"


def _mime_base64(data: bytes) -> str:
    """Base64 in 76-column lines ending in CRLF, as Dogtag (JSS) writes it."""
    text = base64.b64encode(data).decode("ascii")
    return "".join(text[i : i + 76] + "\r\n" for i in range(0, len(text), 76))


def pretty_print(cert: Certificate) -> str:
    summary = pki.describe_certificate(cert.x509)
    lines = [
        "    Certificate:",
        "        Data:",
        "            Version:  v3",
        f"            Serial Number: 0x{summary.serial}",
        f"            Issuer: {summary.issuer}",
        "            Validity:",
        f"                Not Before: {java_date(summary.not_before)}",
        f"                Not  After: {java_date(summary.not_after)}",
        f"            Subject: {summary.subject}",
        f"            Subject Public Key: {summary.key}",
    ]
    if summary.sans:
        lines.append(f"            Subject Alternative Names: {', '.join(summary.sans)}")
    if summary.extended_key_usages:
        usages = ", ".join(summary.extended_key_usages)
        lines.append(f"            Extended Key Usage: {usages}")
    lines.append(f"        SHA-256 Fingerprint: {summary.sha256}")
    return "\n".join(lines) + "\n"


def cert_data(cert: Certificate, *, nonce: int | None = None) -> dict:
    """CertData: the certificate in PEM and its chain as a certs-only PKCS#7."""
    x = cert.x509
    data = {
        "id": ids.serial_id(cert),
        "IssuerDN": x.issuer.rfc4514_string(),
        "SubjectDN": x.subject.rfc4514_string(),
        "PrettyPrint": pretty_print(cert),
        "Encoded": pki.to_pem(x),
        "PKCS7CertChain": _mime_base64(pki.to_pkcs7(cert.chain)),
        "NotBefore": java_date(cert.not_before),
        "NotAfter": java_date(cert.not_after),
        "Status": cert_status(cert),
    }
    if cert.status == Certificate.Status.REVOKED:
        data["RevokedOn"] = epoch_ms(cert.revoked_at)
        data["RevocationReason"] = REASON_CODES.get(cert.revocation_reason, 0)
    if nonce is not None:
        data["Nonce"] = nonce
    return data


#: RFC 5280 reason codes (CRLReason), as Dogtag reports RevocationReason.
REASON_CODES = {
    "unspecified": 0,
    "keyCompromise": 1,
    "cACompromise": 2,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
    "certificateHold": 6,
    "removeFromCRL": 8,
    "privilegeWithdrawn": 9,
    "aACompromise": 10,
}


def cert_data_info(cert: Certificate) -> dict:
    """CertDataInfo, one entry of a search: dates as epoch milliseconds (Jackson's Date)."""
    x = cert.x509
    key = x.public_key()
    info = {
        "id": ids.serial_id(cert),
        "SubjectDN": x.subject.rfc4514_string(),
        "IssuerDN": x.issuer.rfc4514_string(),
        "Status": cert_status(cert),
        "Type": "X.509",
        "Version": 3,
        "KeyAlgorithmOID": x.public_key_algorithm_oid.dotted_string,
        "NotValidBefore": epoch_ms(cert.not_before),
        "NotValidAfter": epoch_ms(cert.not_after),
        "IssuedOn": epoch_ms(cert.created),
    }
    if hasattr(key, "key_size") and not hasattr(key, "curve"):
        info["KeyLength"] = key.key_size
    req = cert.issued_request
    if req is not None and req.acted_by_id is not None:
        info["IssuedBy"] = req.acted_by.get_username()
    if cert.status == Certificate.Status.REVOKED:
        info["RevokedOn"] = epoch_ms(cert.revoked_at)
    return info


def revocation_info(request: HttpRequest, cert: Certificate, *, unrevoked: bool) -> dict:
    """The reply to revoke/unrevoke: CertRequestInfo of a complete revocation. ca-portal
    keeps no separate revocation request, so requestURL names the request that issued the
    certificate (or the certificate, for one issued outside the queue)."""
    req = cert.issued_request
    info = {
        "requestType": "unrevocation" if unrevoked else "revocation",
        "requestStatus": "complete",
        "requestURL": request_url(request, req) if req else cert_url(request, cert),
        "certId": ids.serial_id(cert),
        "certURL": cert_url(request, cert),
        "operationResult": "success",
    }
    if req is not None:
        info["requestID"] = ids.request_hex(req)
    return info
