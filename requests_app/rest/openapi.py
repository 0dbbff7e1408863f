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

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from .openapi_schemas import SCHEMAS, ref

JSON = "application/json"
OPENAPI_PATH = "/ca/rest/openapi.json"


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(name: str) -> dict:
    return {"$ref": f"#/components/responses/{name}"}


ERRORS = {
    "BadRequest": "Bad input: com.netscape.certsrv.base.BadRequestException",
    "Unauthorized": "No or wrong credentials: com.netscape.certsrv.base.UnauthorizedException",
    "Forbidden": "Not an agent, or no second factor: com.netscape.certsrv.base.ForbiddenException",
    "NotFound": "No such request, certificate or profile (a ResourceNotFoundException subclass)",
    "MethodNotAllowed": "The resource does not take this method",
    "Conflict": "The state forbids it: com.netscape.certsrv.base.ConflictingOperationException",
    "TooLarge": "The body is larger than the portal accepts",
    "UnsupportedMediaType": "The body is not JSON",
    "TooManyRequests": "Too many requests or failed logins from this address",
    "Unavailable": "The CA cannot sign now",
}
ERROR_STATUS = {
    "BadRequest": "400",
    "Unauthorized": "401",
    "Forbidden": "403",
    "NotFound": "404",
    "MethodNotAllowed": "405",
    "Conflict": "409",
    "TooLarge": "413",
    "UnsupportedMediaType": "415",
    "TooManyRequests": "429",
    "Unavailable": "503",
}

PUBLIC = [{}]
AGENT = [{"agentPassword": []}, {"agentCertificate": []}, {"agentSession": []}]


def _responses(ok: dict, *, errors: tuple[str, ...] = ("BadRequest", "NotFound")) -> dict:
    answers = dict(ok)
    for name in (*errors, "MethodNotAllowed", "TooManyRequests", "Unavailable"):
        answers[ERROR_STATUS[name]] = _error(name)
    return answers


AGENT_ERRORS = ("BadRequest", "Unauthorized", "Forbidden", "NotFound")


def _param(name: str, where: str, schema: dict, description: str = "", **extra) -> dict:
    param = {"name": name, "in": where, "schema": schema, **extra}
    if description:
        param["description"] = description
    if where == "path":
        param["required"] = True
    return param


_page = {"type": "integer", "minimum": 0}
REQUEST_ID = _param(
    "requestId",
    "path",
    {"type": "string", "minLength": 1},
    "A request ID as Dogtag writes it: decimal (as in requestURL), or 0x + hexadecimal "
    "(requestID). It is the portal's request number; the public request ID that the web "
    "pages and certmonger use is accepted too.",
)
SERIAL = _param(
    "serial",
    "path",
    {"type": "string", "minLength": 1},
    "The certificate's serial number: 0x + hexadecimal (as in certId), or decimal.",
)
PROFILE_ID = _param(
    "profileId",
    "path",
    {"type": "string", "minLength": 1},
    "A Dogtag profile ID (caServerCert, caUserCert, ...) or a portal profile name.",
)
ISSUER_ID = _param("issuer-id", "query", {"type": "string"}, "the authority (CA) to issue from")


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


def _action(name: str, what: str) -> dict:
    return {
        "post": _op(
            what,
            f"{name}Request",
            _responses(
                {
                    "200": _json(ref("CertRequestInfo"), "done"),
                    "204": {"description": "done (Dogtag's answer)"},
                },
                errors=(*AGENT_ERRORS, "Conflict", "TooLarge", "UnsupportedMediaType"),
            ),
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
                errors=(*AGENT_ERRORS, "Conflict", "TooLarge", "UnsupportedMediaType"),
            ),
            security=AGENT,
            parameters=[SERIAL, ISSUER_ID],
            **extra,
        )
    }


ACTIONS = {
    "approve": "Approve a pending request (issues the certificate at once)",
    "reject": "Reject a pending request",
    "cancel": "Cancel a pending request",
    "update": "Update a pending request (refused: the portal edits at approval)",
    "validate": "Validate a pending request (refused: the portal checks at submission)",
    "assign": "Assign a request to the agent (refused: the portal has no owners)",
    "unassign": "Unassign a request (refused: the portal has no owners)",
}


def _paths() -> dict:
    info = {
        "get": _op(
            "Server info", "serverInfo", _responses({"200": _json(ref("Info"), "")}, errors=())
        )
    }
    paths = {
        "/pki/rest/info": info,
        "/ca/rest/info": {"get": {**info["get"], "operationId": "caInfo"}},
        "/ca/rest/certrequests/profiles": {
            "get": _op(
                "Enrollment templates (the visible profiles)",
                "listEnrollmentTemplates",
                _responses({"200": _json(ref("ProfileDataInfos"), "a page of profiles")}),
                parameters=[
                    _param("start", "query", _page),
                    _param("size", "query", _page),
                ],
            )
        },
        "/ca/rest/certrequests/profiles/{profileId}": {
            "get": _op(
                "One enrollment template with its inputs",
                "getEnrollmentTemplate",
                _responses({"200": _json(ref("EnrollmentTemplate"), "the template")}),
                parameters=[PROFILE_ID],
            )
        },
        "/ca/rest/certrequests": {
            "post": _op(
                "Submit an enrollment request (the template with its values)",
                "submitEnrollment",
                _responses(
                    {"200": _json(ref("CertRequestInfos"), "the requests made (one)")},
                    errors=(
                        "BadRequest",
                        "NotFound",
                        "Conflict",
                        "TooLarge",
                        "UnsupportedMediaType",
                    ),
                ),
                parameters=[ISSUER_ID],
                requestBody=_body("EnrollmentRequest"),
            )
        },
        "/ca/rest/certrequests/{requestId}": {
            "get": _op(
                "A request's status, with the certificate's serial once issued",
                "getRequest",
                _responses({"200": _json(ref("CertRequestInfo"), "the request")}),
                parameters=[REQUEST_ID],
            )
        },
        "/ca/rest/certs/{serial}": {
            "get": _op(
                "A certificate, with its PEM and PKCS#7 chain",
                "getCert",
                _responses({"200": _json(ref("CertData"), "the certificate")}),
                parameters=[SERIAL],
            )
        },
        "/ca/rest/certs/search": {
            "post": _op(
                "Search certificates (paged)",
                "searchCerts",
                _responses(
                    {"200": _json(ref("CertDataInfos"), "a page of certificates")},
                    errors=("BadRequest", "TooLarge", "UnsupportedMediaType"),
                ),
                parameters=[
                    _param("start", "query", _page),
                    _param("size", "query", _page),
                    _param("maxResults", "query", _page),
                    _param("maxTime", "query", _page),
                ],
                requestBody=_body("CertSearchRequest", required=False),
            ),
        },
        "/ca/rest/agent/certrequests": {
            "get": _op(
                "The request queue (agents)",
                "listRequests",
                _responses(
                    {"200": _json(ref("CertRequestInfos"), "a page of requests")},
                    errors=AGENT_ERRORS,
                ),
                security=AGENT,
                parameters=[
                    _param("requestStatus", "query", {"type": "string"}),
                    _param("requestType", "query", {"type": "string"}),
                    _param("start", "query", {"type": "string"}, "first request ID"),
                    _param("pageSize", "query", _page),
                    _param("maxResults", "query", _page),
                    _param("maxTime", "query", _page),
                ],
            )
        },
        "/ca/rest/agent/certrequests/{requestId}": {
            "get": _op(
                "Review a request; the answer carries a single-use nonce",
                "reviewRequest",
                _responses(
                    {"200": _json(ref("CertReviewResponse"), "the review")}, errors=AGENT_ERRORS
                ),
                security=AGENT,
                parameters=[REQUEST_ID],
            )
        },
        "/ca/rest/agent/certs/{serial}": {
            "get": _op(
                "Review a certificate; the answer carries a Nonce for revoke",
                "reviewCert",
                _responses(
                    {"200": _json(ref("CertData"), "the certificate, with Nonce")},
                    errors=AGENT_ERRORS,
                ),
                security=AGENT,
                parameters=[SERIAL],
            )
        },
        "/ca/rest/agent/certs/{serial}/revoke": _cert_action(
            "revokeCert", "Revoke a certificate (Certificate_Hold puts it on hold)", body=True
        ),
        "/ca/rest/agent/certs/{serial}/revoke-ca": _cert_action(
            "revokeCACert", "Revoke a CA certificate (refused for any other)", body=True
        ),
        "/ca/rest/agent/certs/{serial}/unrevoke": _cert_action(
            "unrevokeCert", "Release a certificate from hold", body=False
        ),
        OPENAPI_PATH: {
            "get": _op(
                "This description",
                "openapi",
                {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    }
                },
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
                "(pki.cert.CertClient) uses. Request IDs are the portal's request numbers "
                "(decimal in URLs, 0x-hexadecimal in requestID); serial numbers are "
                "0x-hexadecimal (decimal accepted). Every failure is Dogtag's PKIException "
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
            "responses": {name: _json(ref("PKIException"), text) for name, text in ERRORS.items()},
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


@require_GET
def openapi_json(request: HttpRequest) -> JsonResponse:
    """GET /ca/rest/openapi.json: the description above."""
    return JsonResponse(document(), json_dumps_params={"indent": 1})
