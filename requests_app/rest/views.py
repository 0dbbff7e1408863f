"""Dogtag's public REST resources: server info, enrollment templates, enrollment, request
status, certificates and their search. Each parses, calls one service (enrollment) or
reads, and answers in Dogtag's JSON; see ids.py for how IDs and serials map."""

from __future__ import annotations

import math

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.http import urlencode
from django.views import defaults

from .. import pki, services, throttle
from ..httputil import client_ip
from ..paging import MAX_PAGE
from . import ids, shapes
from .auth import optional_agent
from .errors import RestError, error_response
from .http import int_param, json_body, reply, resource, text_value
from .search import search

#: The REST API version this portal speaks: the one `dogtag-pki` 11.2.1 was proven against.
API_VERSION = "11.2.1"
MAX_PAGE_SIZE = 100
MAX_START = MAX_PAGE * MAX_PAGE_SIZE
MAX_FIELD = {
    "requestor_name": 200,
    "requestor_email": 254,
    "requestor_phone": 100,
    "cert_request_type": 20,
    "cert_request": pki.MAX_CSR_BYTES * 2,
}


@resource("GET")
def pki_info(request: HttpRequest) -> HttpResponse:
    """/pki/rest/info: what InfoClient.get_info reads (Version as x.y.z, Banner)."""
    return reply({"Attributes": {"Attribute": []}, "Name": "ca-portal", "Version": API_VERSION})


@resource("GET")
def ca_info(request: HttpRequest) -> HttpResponse:
    """/ca/rest/info: the CA's facts (no key archival: ca-portal has no KRA)."""
    return reply(
        {
            "Attributes": {"Attribute": []},
            "Name": "Certificate Manager",
            "Version": API_VERSION,
            "ArchivalMechanism": "none",
        }
    )


# --- enrollment templates --------------------------------------------------------------


@resource("GET")
def profile_list(request: HttpRequest) -> HttpResponse:
    """The enrollment profiles, under Dogtag's IDs and our own names, paged by start/size."""
    start = int_param(request, "start", 0, low=0, high=MAX_START)
    size = int_param(request, "size", 20, low=1, high=MAX_PAGE_SIZE)
    everything = list(shapes.profile_ids().items())
    entries = [shapes.profile_entry(request, pid, p) for pid, p in everything[start:][:size]]
    return reply(shapes.collection(entries, total=len(everything)))


def _profile(profile_id: str):
    found = shapes.profile_ids().get(profile_id)
    if found is None:
        offered = ", ".join(shapes.profile_ids()) or "none"
        # Dogtag answers an unknown profile with BadRequest, not ProfileNotFound.
        raise RestError(
            "BadRequest",
            f"Profile {profile_id[:40]!r} not found (offered: {offered})",
            profileId=profile_id[:40],
        )
    return found


@resource("GET")
def profile_template(request: HttpRequest, profile_id: str) -> HttpResponse:
    """The enrollment template of a profile: the inputs the client fills in and posts."""
    return reply(shapes.enrollment_template(profile_id, _profile(profile_id)))


# --- enrollment ------------------------------------------------------------------------


def flatten_inputs(body: dict) -> dict[str, str]:
    """Every Input[].Attribute[] as name -> Value, as Dogtag's CertEnrollmentRequest does."""
    values: dict[str, str] = {}
    items = body.get("Input") or []
    if not isinstance(items, list):
        raise RestError("BadRequest", "Input must be a list")
    for item in items:
        attributes = item.get("Attribute") if isinstance(item, dict) else None
        if not isinstance(attributes, list):
            continue
        for attribute in attributes:
            if not isinstance(attribute, dict) or not isinstance(attribute.get("name"), str):
                raise RestError("BadRequest", "Every input attribute needs a name")
            name = attribute["name"]
            limit = MAX_FIELD.get(name, 1000)
            values[name] = text_value(attribute.get("Value"), name, limit=limit).strip()
    return values


def _requester_email(given: str, csr, profile) -> str:
    """requestor_email, an email in the CSR, or (server certificates) the Dogtag fallback."""
    if given:
        return given
    found = pki.csr_email(csr)
    if found:
        return found
    if profile.takes_hostnames and settings.DOGTAG_REQUESTER_EMAIL:
        return settings.DOGTAG_REQUESTER_EMAIL
    raise RestError(
        "BadRequest",
        f"The {profile.name} profile needs the requester's email address: fill the "
        "requestor_email input",
    )


@resource("POST")
def enroll(request: HttpRequest) -> HttpResponse:
    """Submit an enrollment (or a renewal by SerialNumber): the CertRequestInfos of the one
    request made, pending or (auto-approving profiles) complete."""
    body = json_body(request)
    ip = client_ip(request)
    if request.GET.get("issuer-id", "").strip():
        raise RestError("ResourceNotFound", "ca-portal has one issuing CA; omit issuer-id")
    if not throttle.enrollment_allowed(ip):
        rate = throttle.enrollment_rate()
        wait = max(1, math.ceil(throttle.window_ends(rate).timestamp() - throttle.clock()))
        raise RestError(
            "PKI",
            "Too many requests from this address (ENROLL_RATE_LIMIT). "
            + throttle.try_again_message(rate),
            status=429,
            headers={"Retry-After": str(wait)},
        )
    values = flatten_inputs(body)
    if body.get("Renewal") is True:
        serial = ids.serial_hex(text_value(body.get("SerialNumber"), "SerialNumber", limit=80))
        if serial is None:
            raise RestError("BadRequest", "A renewal needs the SerialNumber to renew")
        req = services.submit_renewal(
            serial, requester_email=values.get("requestor_email") or None, ip=ip, channel="rest"
        )
        return reply(shapes.collection([shapes.request_info(request, req)]))
    profile_id = text_value(body.get("ProfileID"), "ProfileID", limit=100).strip()
    if not profile_id:
        raise RestError("BadRequest", "ProfileID is missing")
    profile = _profile(profile_id)
    kind = (values.get("cert_request_type") or "pkcs10").lower()
    if kind != "pkcs10":
        raise RestError(
            "BadRequest", f"cert_request_type {kind[:20]!r} is not supported; send pkcs10"
        )
    csr = values.get("cert_request", "")
    if not csr:
        raise RestError("BadRequest", "cert_request (the PKCS#10 CSR) is missing")
    phone = values.get("requestor_phone", "")
    req, cert = services.submit_enrollment(
        profile=profile.name,
        csr=csr,
        requester_email=_requester_email(values.get("requestor_email", ""), csr, profile),
        requester_name=values.get("requestor_name", ""),
        note=f"Phone: {phone}" if phone else "",
        ip=ip,
        channel="rest",
    )
    if cert is not None:  # an auto_approve profile: issued at once (on a copy of req)
        req.refresh_from_db()
    return reply(shapes.collection([shapes.request_info(request, req)]))


@resource("GET")
def request_status(request: HttpRequest, request_id: str) -> HttpResponse:
    """A request's state, with the certificate's ID once issued."""
    req = ids.find_request(request_id)
    if req is None:
        raise_request_not_found(request_id)
    return reply(shapes.request_info(request, req))


def raise_request_not_found(request_id: str):
    shown = ids.request_id_shown(request_id)
    number = shown[2:] if shown.startswith("0x") else ""
    attributes = {"requestId": str(int(number, 16))} if number else {}
    raise RestError("RequestNotFound", f"Request ID {shown} not found", **attributes)


# --- certificates ----------------------------------------------------------------------


def certificate_or_404(serial: str):
    cert = ids.find_certificate(serial)
    if cert is None:
        hex_serial = ids.serial_hex(serial)
        attributes = {"certId": str(int(hex_serial, 16))} if hex_serial else {}
        shown = f"0x{hex_serial}" if hex_serial else serial[:80]
        raise RestError("CertNotFound", f"Certificate ID {shown} not found", **attributes)
    return cert


@resource("GET")
def certificate(request: HttpRequest, serial: str) -> HttpResponse:
    """A certificate: PEM, the PKCS#7 chain, its dates and status."""
    return reply(shapes.cert_data(certificate_or_404(serial)))


@resource("GET", "POST")
def certificate_search(request: HttpRequest) -> HttpResponse:
    """Certificates matching CertSearchRequest criteria (POST body, or GET query), newest
    first, paged by start/size; a next link when more follow (nothing counts the table).
    Anyone sees server certificates (what every TLS handshake shows anyway); certificates
    that name a person and their mailbox (user, agent) are listed to agents only, as the
    web pages never list them: anyone else finds one only by its serial."""
    if request.method == "POST":
        criteria = json_body(request, required=False)
    else:
        criteria = {k: v for k, v in request.GET.items() if k not in ("start", "size")}
        criteria.setdefault("serialNumberRangeInUse", "true")
    start = int_param(request, "start", 0, low=0, high=MAX_START)
    size = int_param(request, "size", 20, low=1, high=MAX_PAGE_SIZE)
    public = optional_agent(request) is None
    rows = list(search(criteria, public=public)[start : start + size + 1])
    more = len(rows) > size
    entries = [shapes.cert_data_info(cert) for cert in rows[:size]]
    next_url = ""
    if more:
        # The next page of the same search, as a GET: a POST's criteria (its body, not its
        # query) travel in the query, which a GET reads as criteria (JSON true/false as
        # "true"/"false"); paging comes from the query only.
        if request.method == "POST":
            query = {"size": size}
            for name, value in criteria.items():
                if name in ("start", "size"):
                    continue
                if isinstance(value, bool):
                    query[name] = "true" if value else "false"
                elif isinstance(value, (str, int, float)):
                    query[name] = value
        else:
            query = {k: v for k, v in request.GET.items() if k != "start"}
        query["start"] = start + size
        next_url = request.build_absolute_uri(f"{request.path}?{urlencode(query)}")
    return reply(shapes.collection(entries, total=start + len(entries), next_url=next_url))


# --- outside any resource --------------------------------------------------------------

REST_PREFIXES = ("/ca/rest/", "/pki/rest/")


def page_not_found(request: HttpRequest, exception=None) -> HttpResponse:
    """The project's 404 handler: under /ca/rest/ and /pki/rest/ Dogtag's JSON (a client of
    the API never gets an HTML page), elsewhere Django's page."""
    if request.path.startswith(REST_PREFIXES) or request.path in ("/ca/rest", "/pki/rest"):
        return error_response("ResourceNotFound", f"No such resource: {request.path[:200]}")
    return defaults.page_not_found(request, exception)
