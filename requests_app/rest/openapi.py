"""The OpenAPI 3.1 description of the Dogtag REST resources (issue 15), served at
/ca/rest/openapi.json.

It describes what the portal answers, in the shapes Dogtag 11 serves and `dogtag-pki` 11.2.1
reads: every path, its methods, its parameters, the JSON it takes and gives, Dogtag's error
JSON (`PKIException`) for every failure, and the two ways an agent authenticates (HTTP basic,
the password followed by the current TOTP code; a client certificate passed by the trusted TLS
terminator). tests/test_rest_openapi.py compares the paths and methods with the URL resolver
(so that the description cannot drift from the code) and runs schemathesis against a live
portal with it.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from .http import reply, resource
from .openapi_schemas import SCHEMAS, ref

JSON = "application/json"
OPENAPI_PATH = "/ca/rest/openapi.json"


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {JSON: {"schema": schema}}}


#: The error answers (each PKIException JSON), by name: (status, what it means).
ERRORS = {
    "BadRequest": (
        "400",
        "Bad input, a request that is not pending, a missing or used nonce, an unknown "
        "profile, or a POST to an agent resource that is not application/json: "
        "com.netscape.certsrv.base.BadRequestException",
    ),
    "Unauthorized": (
        "401",
        "No credentials, or wrong ones (WWW-Authenticate: Basic): "
        "com.netscape.certsrv.base.UnauthorizedException",
    ),
    "Forbidden": (
        "403",
        "Not an agent, a nonce of another review, a cross-site request, a lockout: "
        "com.netscape.certsrv.base.ForbiddenException",
    ),
    "NotFound": (
        "404",
        "No such request (RequestNotFoundException), certificate (CertNotFoundException) "
        "or issuer, or no such path (ResourceNotFoundException)",
    ),
    "MethodNotAllowed": (
        "405",
        "The resource does not take this method (Allow names those it does)",
    ),
    "Conflict": (
        "409",
        "The CA cannot sign now, or the record is busy: "
        "com.netscape.certsrv.base.ConflictingOperationException",
    ),
    "TooManyRequests": ("429", "Too many enrollments from this address (Retry-After)"),
}

PUBLIC: list = [{}]
AGENT = [{"agentPassword": []}, {"agentCertificate": []}, {"agentSession": []}]
AGENT_ERRORS = ("BadRequest", "Unauthorized", "Forbidden", "NotFound", "Conflict")


def _responses(ok: dict, *errors: str) -> dict:
    answers = dict(ok)
    for name in ("BadRequest", *errors, "MethodNotAllowed"):
        answers[ERRORS[name][0]] = {"$ref": f"#/components/responses/{name}"}
    return answers


def _param(name: str, where: str, schema: dict, description: str = "") -> dict:
    param = {"name": name, "in": where, "schema": schema}
    if description:
        param["description"] = description
    if where == "path":
        param["required"] = True
    return param


_count = {"type": "integer", "minimum": 0}
_text = {"type": "string"}
REQUEST_ID = _param(
    "requestId",
    "path",
    {"type": "string", "minLength": 1},
    "A request ID as Dogtag writes it: decimal (as at the end of requestURL) or 0x + "
    "hexadecimal (requestID). The number is the portal's public request ID (20 characters of "
    "Crockford's base32, 100 random bits) read as a number, so the public ID itself "
    "(ABCD-EFGH-JKMN-PQRS-TVWX, any case, with or without hyphens) is accepted too.",
)
SERIAL = _param(
    "serial",
    "path",
    {"type": "string", "minLength": 1},
    "A serial number: 0x + hexadecimal (as in certId), decimal (as in certURL), or "
    "hexadecimal with a letter and no 0x (as the portal's pages show it).",
)
PROFILE_ID = _param(
    "profileId",
    "path",
    {"type": "string", "minLength": 1},
    "A Dogtag profile ID (caServerCert, caUserCert, ...) or a portal profile name.",
)
ISSUER_ID = _param(
    "issuer-id", "query", _text, "Dogtag's authority ID: the portal has one CA, so omit it"
)
PAGE = [_param("start", "query", _count), _param("size", "query", _count)]
SEARCH_QUERY = [
    *PAGE,
    _param("maxResults", "query", _count, "sent by dogtag-pki, not used"),
    _param("maxTime", "query", _count, "sent by dogtag-pki, not used"),
]
#: GET search: CertSearchRequest's keys as query parameters (without any, every certificate).
SEARCH_CRITERIA = [
    _param(name, "query", _text)
    for name in (
        "status",
        "serialNumberRangeInUse",
        "serialFrom",
        "serialTo",
        "subjectInUse",
        "commonName",
        "eMail",
        "matchExactly",
    )
]


def _op(summary: str, op_id: str, responses: dict, *, security=PUBLIC, **extra) -> dict:
    return {
        "summary": summary,
        "operationId": op_id,
        "security": security,
        "responses": responses,
        **extra,
    }


def _body(schema_name: str, *, required: bool = True) -> dict:
    return {"required": required, "content": {JSON: {"schema": ref(schema_name)}}}


def _search(op_id: str, method: str) -> dict:
    if method == "post":
        extra = {"parameters": SEARCH_QUERY, "requestBody": _body("CertSearchRequest")}
    else:
        extra = {"parameters": [*SEARCH_QUERY, *SEARCH_CRITERIA]}
    return _op(
        "Search certificates, newest first, paged by start and size. Anyone sees server "
        "certificates; certificates of people (user, agent profiles) are listed to agents "
        "only (credentials are optional, and wrong ones are refused)",
        op_id,
        _responses({"200": _json(ref("CertDataInfos"), "a page of certificates")}, "Unauthorized"),
        security=[{}, *AGENT],
        **extra,
    )


#: The actions on a pending request, as dogtag-pki names them.
ACTIONS = {
    "approve": "Approve: issues the certificate at once (edits: range, subjAltNames)",
    "reject": "Reject (requestNotes is the reason)",
    "cancel": "Cancel",
    "update": "Refused (400): the portal takes an agent's edits with approve",
    "validate": "Refused (400): the portal checks an agent's edits when approving",
    "assign": "Refused (400): the portal's queue has no request owners",
    "unassign": "Refused (400): the portal's queue has no request owners",
}


def _action(name: str, what: str) -> dict:
    return {
        "post": _op(
            what + "; the body is the review with its nonce, which is then used up",
            f"{name}Request",
            _responses({"204": {"description": "done"}}, *AGENT_ERRORS),
            security=AGENT,
            parameters=[REQUEST_ID],
            requestBody=_body("ReviewEcho"),
        )
    }


def _cert_action(name: str, what: str, *, body: bool) -> dict:
    extra = {"requestBody": _body("CertRevokeRequest")} if body else {}
    return {
        "post": _op(
            what,
            name,
            _responses(
                {"200": _json(ref("CertRequestInfo"), "the revocation request, complete")},
                *AGENT_ERRORS,
            ),
            security=AGENT,
            parameters=[SERIAL, ISSUER_ID],
            **extra,
        )
    }


def _paths() -> dict:
    info = _responses({"200": _json(ref("Info"), "the server's name and API version")})
    paths = {
        "/pki/rest/info": {"get": _op("Server info", "pkiInfo", info)},
        "/ca/rest/info": {"get": _op("CA info", "caInfo", info)},
        "/ca/rest/certrequests/profiles": {
            "get": _op(
                "Enrollment templates: the enabled profiles, under Dogtag's IDs and their own",
                "listEnrollmentTemplates",
                _responses({"200": _json(ref("ProfileDataInfos"), "a page of profiles")}),
                parameters=PAGE,
            )
        },
        "/ca/rest/certrequests/profiles/{profileId}": {
            "get": _op(
                "One enrollment template with its inputs (an unknown profile is a "
                "BadRequest, as in Dogtag)",
                "getEnrollmentTemplate",
                _responses({"200": _json(ref("EnrollmentTemplate"), "the template")}, "NotFound"),
                parameters=[PROFILE_ID],
            )
        },
        "/ca/rest/certrequests": {
            "post": _op(
                "Submit an enrollment (the template with its values filled in), or a renewal "
                "(Renewal true, SerialNumber)",
                "submitEnrollment",
                _responses(
                    {
                        "200": _json(
                            ref("CertRequestInfos"), "the request made, pending or complete"
                        )
                    },
                    "Forbidden",
                    "NotFound",
                    "Conflict",
                    "TooManyRequests",
                ),
                parameters=[ISSUER_ID],
                requestBody=_body("EnrollmentRequest"),
            )
        },
        "/ca/rest/certrequests/{requestId}": {
            "get": _op(
                "A request's status, with the certificate's serial once issued",
                "getRequest",
                _responses({"200": _json(ref("CertRequestInfo"), "the request")}, "NotFound"),
                parameters=[REQUEST_ID],
            )
        },
        "/ca/rest/certs": {
            "get": _search("listCerts", "get"),
            "post": _search("findCerts", "post"),
        },
        "/ca/rest/certs/search": {
            "get": _search("searchCertsByQuery", "get"),
            "post": _search("searchCerts", "post"),
        },
        "/ca/rest/certs/{serial}": {
            "get": _op(
                "A certificate, with its PEM and PKCS#7 chain",
                "getCert",
                _responses({"200": _json(ref("CertData"), "the certificate")}, "NotFound"),
                parameters=[SERIAL],
            )
        },
        "/ca/rest/agent/certrequests": {
            "get": _op(
                "The request queue, newest first (without requestStatus: what agents can act "
                "on, as on the agent pages)",
                "listRequests",
                _responses(
                    {"200": _json(ref("CertRequestInfos"), "a page of requests")}, *AGENT_ERRORS
                ),
                security=AGENT,
                parameters=[
                    _param(
                        "requestStatus",
                        "query",
                        _text,
                        "pending, complete, rejected, canceled or awaiting_email",
                    ),
                    _param("requestType", "query", _text, "enrollment or renewal"),
                    _param("start", "query", _count, "an offset"),
                    _param("pageSize", "query", _count),
                    _param("maxResults", "query", _count, "at most this many"),
                    _param("maxTime", "query", _count, "sent by dogtag-pki, not used"),
                ],
            )
        },
        "/ca/rest/agent/certrequests/{requestId}": {
            "get": _op(
                "Review a request; the answer carries a nonce for one action",
                "reviewRequest",
                _responses({"200": _json(ref("CertReviewResponse"), "the review")}, *AGENT_ERRORS),
                security=AGENT,
                parameters=[REQUEST_ID],
            )
        },
        "/ca/rest/agent/certs/{serial}": {
            "get": _op(
                "Review a certificate; the answer carries a Nonce for one revocation",
                "reviewCert",
                _responses(
                    {"200": _json(ref("CertData"), "the certificate, with Nonce")}, *AGENT_ERRORS
                ),
                security=AGENT,
                parameters=[SERIAL],
            )
        },
        "/ca/rest/agent/certs/{serial}/revoke": _cert_action(
            "revokeCert",
            "Revoke with a reason and an invalidity date (Certificate_Hold: on hold; "
            "Remove_from_CRL: released); the body echoes the review's Nonce",
            body=True,
        ),
        "/ca/rest/agent/certs/{serial}/revoke-ca": _cert_action(
            "revokeCACert", "Revoke a CA certificate (400 for any other)", body=True
        ),
        "/ca/rest/agent/certs/{serial}/unrevoke": _cert_action(
            "unrevokeCert", "Release a certificate from hold (no body)", body=False
        ),
        OPENAPI_PATH: {
            "get": _op(
                "This description",
                "openapi",
                _responses({"200": _json({"type": "object"}, "OpenAPI 3.1")}),
            )
        },
    }
    for name, what in ACTIONS.items():
        paths[f"/ca/rest/agent/certrequests/{{requestId}}/{name}"] = _action(name, what)
    return paths


def document() -> dict:
    """The OpenAPI 3.1 description, as a JSON-ready dict."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ca-portal: Dogtag CA REST API",
            "version": "11",
            "description": (
                "The resources of Dogtag 11's CA REST API that dogtag-pki 11.2.1 "
                "(pki.cert.CertClient) uses. A request ID is the portal's public request ID "
                "read as a number: decimal in URLs, 0x-hexadecimal in requestID; serial "
                "numbers are 0x-hexadecimal (decimal accepted). Every failure is Dogtag's "
                "PKIException "
                "JSON. Agents authenticate with HTTP basic (the password followed by the "
                "current TOTP code; the session cookie then carries the login) or a client "
                "certificate linked to the agent, passed by the trusted TLS terminator."
            ),
        },
        "servers": [{"url": "/"}],
        "security": PUBLIC,
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "responses": {
                name: _json(ref("PKIException"), text) for name, (_, text) in ERRORS.items()
            },
            "securitySchemes": {
                "agentPassword": {
                    "type": "http",
                    "scheme": "basic",
                    "description": (
                        "The agent's user name, and the password followed immediately by "
                        "the current TOTP code (the password alone when AGENT_REQUIRE_MFA is "
                        "off). Failures count toward the login lockout."
                    ),
                },
                "agentCertificate": {
                    "type": "mutualTLS",
                    "description": (
                        "A client certificate linked to the agent (issue 14), verified by the "
                        "TLS terminator in TRUSTED_PROXIES and passed in CLIENT_CERT_HEADER."
                    ),
                },
                "agentSession": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "sessionid",
                    "description": "The session an agent's basic login started.",
                },
            },
        },
    }


@resource("GET")
def openapi_json(request: HttpRequest) -> HttpResponse:
    """GET /ca/rest/openapi.json: the description above."""
    return reply(document())
