"""ACME problem documents (RFC 8555 6.7, RFC 7807): every refusal of the ACME server."""

from __future__ import annotations

from .. import services

ERROR_PREFIX = "urn:ietf:params:acme:error:"

#: HTTP status per problem type (anything not listed: 400).
STATUS = {
    "unauthorized": 403,
    "externalAccountRequired": 403,
    "accountDoesNotExist": 400,
    "rateLimited": 429,
    "serverInternal": 500,
    "orderNotReady": 403,
    "alreadyRevoked": 400,
    "badRevocationReason": 400,
    "unsupportedIdentifier": 400,
    "rejectedIdentifier": 400,
    "userActionRequired": 403,
}


class AcmeProblem(services.ServiceError):
    """A refused ACME request: `type` is the RFC 8555 error name (without the URN prefix);
    nothing was written but what the docstring of the raising function says."""

    def __init__(
        self,
        type: str,
        detail: str,
        *,
        status: int | None = None,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
        extra: dict | None = None,
    ):
        super().__init__(detail)
        self.type = type
        self.detail = detail
        self.status = status or STATUS.get(type, 400)
        self.retry_after = retry_after
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def document(self) -> dict:
        return {"type": ERROR_PREFIX + self.type, "detail": self.detail, **self.extra}


def problem_document(type: str, detail: str) -> dict:
    """A problem document to store (an order's or a challenge's error)."""
    return {"type": ERROR_PREFIX + type, "detail": detail}
