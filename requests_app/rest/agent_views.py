"""Dogtag's agent REST resources: the request queue, a request's review (with its nonce)
and the actions on it; a certificate's review, revoke, revoke-ca and unrevoke. Every one
needs an agent (auth.py); every action echoes its review's nonce and calls one service."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from django.http import HttpRequest, HttpResponse
from django.utils.http import urlencode

from .. import pki, services
from ..httputil import client_ip
from ..models import CertificateRequest
from . import ids, nonces, shapes
from .auth import authenticated_agent
from .errors import RestError
from .http import int_param, json_body, reply, resource, text_value
from .views import MAX_PAGE_SIZE, MAX_START, certificate_or_404, raise_request_not_found

Status = CertificateRequest.Status

#: requestStatus values the list takes (Dogtag's, and ours for awaiting confirmation).
LIST_STATUSES = {
    "pending": [Status.PENDING],
    "complete": [Status.COMPLETE],
    "rejected": [Status.REJECTED],
    "canceled": [Status.CANCELED],
    "awaiting_email": [Status.AWAITING_EMAIL],
}
#: Dogtag's actions that ca-portal does not take, and why.
NOT_TAKEN = {
    "update": "ca-portal keeps no agent edits on a pending request: send the edits (validity, "
    "alternative names) with approve",
    "validate": "ca-portal checks an agent's edits when approving: send them with approve",
    "assign": "ca-portal's queue has no request owners; any agent may act on any request",
    "unassign": "ca-portal's queue has no request owners; any agent may act on any request",
}
REQUEST_NONCE, CERT_NONCE = "cert-request", "cert-revoke"


@resource("GET", private=True)
def request_list(request: HttpRequest) -> HttpResponse:
    """The queue, newest first: requestStatus and requestType filter (without a status,
    requests still awaiting their requester's email confirmation are left out, as on the
    agent pages); start is an offset, pageSize (at most maxResults) a page's size."""
    authenticated_agent(request)
    rows = CertificateRequest.objects.select_related("certificate").order_by("-submitted_at", "-pk")
    status = request.GET.get("requestStatus", "").strip().lower()
    if status:
        if status not in LIST_STATUSES:
            offered = ", ".join(LIST_STATUSES)
            raise RestError("BadRequest", f"requestStatus must be one of {offered}")
        rows = rows.filter(status__in=LIST_STATUSES[status])
    else:
        rows = rows.exclude(status__in=CertificateRequest.NOT_IN_QUEUE)
    kind = request.GET.get("requestType", "").strip().lower()
    if kind == "renewal":
        rows = rows.filter(renewal_of__isnull=False)
    elif kind == "enrollment":
        rows = rows.filter(renewal_of__isnull=True)
    elif kind:
        raise RestError("BadRequest", "requestType must be enrollment or renewal")
    start = int_param(request, "start", 0, low=0, high=MAX_START)
    size = int_param(request, "pageSize", 20, low=1, high=MAX_PAGE_SIZE)
    size = min(size, int_param(request, "maxResults", size, low=1, high=MAX_PAGE_SIZE))
    page = list(rows[start : start + size + 1])
    entries = [shapes.request_info(request, req) for req in page[:size]]
    next_url = ""
    if len(page) > size:
        query = {k: v for k, v in request.GET.items() if k != "start"}
        query["start"] = start + size
        next_url = request.build_absolute_uri(f"{request.path}?{urlencode(query)}")
    return reply(shapes.collection(entries, total=start + len(entries), next_url=next_url))


def _request(request_id: str) -> CertificateRequest:
    req = ids.find_request(request_id)
    if req is None:
        raise_request_not_found(request_id)
    return req


@resource("GET", private=True)
def request_review(request: HttpRequest, request_id: str) -> HttpResponse:
    """The review document of a request, with a fresh nonce for the action that follows."""
    agent = authenticated_agent(request)
    req = _request(request_id)
    nonce = nonces.issue(agent, REQUEST_NONCE, req.public_id)
    return reply(shapes.review(request, req, str(nonce)))


def _policy_values(body: dict) -> dict[str, str]:
    """The agent's values in the echoed ProfilePolicySet: name -> Value."""
    values: dict[str, str] = {}
    sets = body.get("ProfilePolicySet") or []
    for policy_set in sets if isinstance(sets, list) else []:
        policies = policy_set.get("policies") if isinstance(policy_set, dict) else None
        for policy in policies if isinstance(policies, list) else []:
            definition = policy.get("def") if isinstance(policy, dict) else None
            attributes = definition.get("attributes") if isinstance(definition, dict) else None
            for attribute in attributes if isinstance(attributes, list) else []:
                if isinstance(attribute, dict) and isinstance(attribute.get("name"), str):
                    name = attribute["name"]
                    values[name] = text_value(attribute.get("Value"), name, limit=4000)
    return values


def _edits(req: CertificateRequest, body: dict) -> dict:
    """approve_request's keyword arguments for the edits the agent made in the review."""
    values = _policy_values(body)
    edits: dict = {}
    days = values.get("range", "").strip()
    if days:
        if not days.isdigit() or len(days) > 6:
            raise RestError("BadRequest", f"The validity range must be days, not {days[:20]!r}")
        edits["validity_days"] = int(days)
    if "subjAltNames" in values:
        entries = [name.strip() for name in values["subjAltNames"].split(",") if name.strip()]
        sans = list(dict.fromkeys(_san_text(entry) for entry in entries))
        if sans != list(req.requested_sans):
            edits["sans"] = sans
    return edits


_SAN_KINDS = {"dns": "DNS", "ip": "IP", "email": "email", "uri": "URI"}


def _san_text(entry: str) -> str:
    """One SAN as "DNS:x", "IP:y" or "email:z"; a bare hostname, IP or address is accepted
    (as on the agent page)."""
    kind, sep, value = entry.partition(":")
    if sep and kind.lower() in _SAN_KINDS:
        return f"{_SAN_KINDS[kind.lower()]}:{value.strip()}"
    if "@" in entry:
        return f"email:{entry}"
    try:
        return pki.san_to_text(pki.parse_san(entry))
    except pki.InvalidName as exc:
        raise RestError("BadRequest", f"Subject alternative name {entry[:80]!r}: {exc}") from None


def _notes(req: CertificateRequest, body: dict) -> str:
    """requestNotes, when the agent changed them from the requester's note."""
    notes = text_value(body.get("requestNotes"), "requestNotes", limit=2000).strip()
    return "" if notes == (req.requester_note or "").strip() else notes


@resource("POST", private=True)
def request_action(request: HttpRequest, request_id: str, action: str) -> HttpResponse:
    """approve, reject or cancel a pending request, echoing the review (and its nonce);
    answered with 204 as Dogtag does."""
    agent = authenticated_agent(request)
    if action in NOT_TAKEN:
        raise RestError("BadRequest", f"The {action} action is not supported: {NOT_TAKEN[action]}")
    if action not in ("approve", "reject", "cancel"):
        raise RestError("ResourceNotFound", f"No such action: {action}")
    req = _request(request_id)
    body = json_body(request)
    edits = _edits(req, body) if action == "approve" else {}
    notes = _notes(req, body)
    shown = ids.request_hex(req)
    nonces.consume(agent, REQUEST_NONCE, req.public_id, body.get("nonce"), shown=shown)
    ip = client_ip(request)
    if action == "approve":
        services.approve_request(req, agent=agent, note=notes, ip=ip, **edits)
    elif action == "reject":
        reason = notes or "Rejected by a Certificate Manager agent"
        services.reject_request(req, agent=agent, reason=reason, ip=ip)
    else:
        services.cancel_request(req, agent=agent, note=notes, ip=ip)
    return HttpResponse(status=204)


# --- certificates ----------------------------------------------------------------------


@resource("GET", private=True)
def certificate_review(request: HttpRequest, serial: str) -> HttpResponse:
    """A certificate with a nonce for the revocation that follows."""
    agent = authenticated_agent(request)
    cert = certificate_or_404(serial)
    return reply(shapes.cert_data(cert, nonce=nonces.issue(agent, CERT_NONCE, cert.serial)))


def _invalidity_date(value) -> dt.datetime | None:
    """InvalidityDate as the caller gave it: epoch milliseconds (Jackson's Date), or ISO."""
    if value in (None, ""):
        return None
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            when = dt.datetime.fromtimestamp(value / 1000, dt.UTC)
        elif isinstance(value, str):
            when = dt.datetime.fromisoformat(value.strip())
            when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
        else:
            when = None
    except (ValueError, OverflowError, OSError):
        when = None
    if when is not None:
        if when > pki.utcnow():  # refused here too, so that the nonce is not spent on it
            raise RestError("BadRequest", "InvalidityDate cannot be in the future")
        return when
    raise RestError(
        "BadRequest", "InvalidityDate must be epoch milliseconds or an ISO 8601 date and time"
    )


def _is_ca(cert) -> bool:
    try:
        return cert.x509.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


@resource("POST", private=True)
def certificate_action(request: HttpRequest, serial: str, action: str) -> HttpResponse:
    """revoke (and revoke-ca, for CA certificates only) with a reason, an invalidity date and
    the review's Nonce; unrevoke releases a hold. Remove_from_CRL as a reason is unrevoke."""
    agent = authenticated_agent(request)
    if action not in ("revoke", "revoke-ca", "unrevoke"):
        raise RestError("ResourceNotFound", f"No such action: {action}")
    if request.GET.get("issuer-id", "").strip():
        raise RestError("ResourceNotFound", "ca-portal has one issuing CA; omit issuer-id")
    cert = certificate_or_404(serial)
    ip = client_ip(request)
    if action == "unrevoke":
        json_body(request, required=False)  # Dogtag's client sends none
        cert = services.release_hold(cert, actor=agent, ip=ip)
        return reply(shapes.revocation_info(request, cert, unrevoked=True))
    body = json_body(request)
    if action == "revoke-ca" and not _is_ca(cert):
        raise RestError(
            "BadRequest", f"Certificate {ids.serial_id(cert)} is not a CA certificate; use revoke"
        )
    label = text_value(body.get("Reason"), "Reason", limit=40).strip() or "Unspecified"
    release = label.replace("_", "").lower() == "removefromcrl"
    reason = None if release else pki.parse_reason(label)
    if reason is None and not release:
        raise RestError("BadRequest", f"Invalid revocation reason: {label}")
    when = _invalidity_date(body.get("InvalidityDate"))
    nonces.consume(agent, CERT_NONCE, cert.serial, body.get("Nonce"), shown=ids.serial_id(cert))
    if release:
        cert = services.release_hold(cert, actor=agent, ip=ip)
    else:
        cert = services.revoke_certificate(
            cert, reason=reason, actor=agent, invalidity_date=when, ip=ip
        )
    return reply(shapes.revocation_info(request, cert, unrevoked=release))
