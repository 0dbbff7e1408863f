"""Dogtag's error documents: PKIException's JSON (ClassName, Code, Message and the
Attributes list the client requires), with the status Dogtag sends for each class. The
client picks its exception by ClassName alone."""

from __future__ import annotations

from django.http import JsonResponse

_BASE = "com.netscape.certsrv"

#: Our short name -> (Dogtag's class name, HTTP status).
CLASSES = {
    "BadRequest": (f"{_BASE}.base.BadRequestException", 400),
    "Unauthorized": (f"{_BASE}.base.UnauthorizedException", 401),
    "Forbidden": (f"{_BASE}.base.ForbiddenException", 403),
    "ResourceNotFound": (f"{_BASE}.base.ResourceNotFoundException", 404),
    "CertNotFound": (f"{_BASE}.cert.CertNotFoundException", 404),
    "RequestNotFound": (f"{_BASE}.request.RequestNotFoundException", 404),
    "ProfileNotFound": (f"{_BASE}.profile.ProfileNotFoundException", 404),
    "ConflictingOperation": (f"{_BASE}.base.ConflictingOperationException", 409),
    "PKI": (f"{_BASE}.base.PKIException", 500),
}

MAX_MESSAGE = 1000


class RestError(Exception):
    """A refusal in Dogtag's words: `kind` is a key of CLASSES."""

    def __init__(
        self, kind: str, message: str, *, status: int | None = None, headers=None, **attributes
    ):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status or CLASSES[kind][1]
        self.headers = headers or {}
        self.attributes = attributes

    def response(self) -> JsonResponse:
        return error_response(
            self.kind, self.message, status=self.status, headers=self.headers, **self.attributes
        )


def error_response(
    kind: str, message: str, *, status: int | None = None, headers=None, **attributes
) -> JsonResponse:
    class_name, default_status = CLASSES[kind]
    status = status or default_status
    message = " ".join(str(message).split())[:MAX_MESSAGE]
    body = {
        "Attributes": {
            "Attribute": [{"name": name, "value": str(value)} for name, value in attributes.items()]
        },
        "ClassName": class_name,
        "Code": status,
        "Message": message,
    }
    response = JsonResponse(body, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response
