"""Who is calling an agent resource, as Dogtag's client authenticates: a client certificate
(passed by the trusted TLS terminator, or our own TLS), or HTTP basic.

With AGENT_REQUIRE_MFA (the default) a password alone never acts as an agent: the basic
password is the account's password followed at once by the current code of its
authenticator app (FreeIPA's convention, "secret123456"), or the agent presents a linked
agent certificate (both factors). A TOTP code works once, so the first success is carried by
the session cookie that the client keeps (it sends it back with every call): a REST session
is marked in the session under its own key, for that user and that way of proving it, and is
honoured only with the Authorization header naming the same user, or with the same
certificate presented. A web UI session cookie is never a REST credential.

Cross-site requests: the API takes no CSRF token (its clients are programs). What stands in
for it: agent POSTs must be `Content-Type: application/json` (a cross-site form cannot send
that, and a cross-site script cannot without a CORS preflight, which is never granted), and
a request that a browser marks as cross-site (Origin of another site, Sec-Fetch-Site
cross-site or same-site) is refused before any credential is looked at.

Failures go through django-axes (wrong passwords and codes count under the same username and
address as on the login page, and lock out alike) and are audited."""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.http import HttpRequest
from django.utils.crypto import constant_time_compare

from .. import login_throttle, pki, services, throttle
from ..client_certificates import presented_certificate
from ..httputil import client_ip
from ..models import Certificate
from .errors import RestError

#: The session key of a REST agent session: {"user", "method", "hash", "fingerprint"}.
SESSION_KEY = "rest_agent"
REALM = 'Basic realm="Certificate Manager", charset="UTF-8"'
_CODE = re.compile(r"^(?P<password>.+?)(?P<code>\d{6})$", re.DOTALL)
MAX_CREDENTIALS = 1024


def _unauthorized(message: str) -> RestError:
    return RestError("Unauthorized", message, headers={"WWW-Authenticate": REALM})


def _not_an_agent(user) -> RestError:
    return RestError("Forbidden", f"{user.get_username()} is not a Certificate Manager agent")


def _locked() -> RestError:
    minutes = settings.AGENT_LOGIN_LOCKOUT_MINUTES
    return RestError(
        "Forbidden",
        f"Too many failed logins for this account or address: locked out for {minutes} minutes",
        headers={"Retry-After": str(minutes * 60)},
    )


def refuse_cross_site(request: HttpRequest) -> None:
    """Refuse what a browser would only send for another site's page (see the module)."""
    fetch_site = request.META.get("HTTP_SEC_FETCH_SITE", "").lower()
    if fetch_site in ("cross-site", "same-site"):
        raise RestError("Forbidden", "Cross-site requests to the agent API are refused")
    origin = request.META.get("HTTP_ORIGIN", "")
    if origin:
        parts = urlsplit(origin)
        own = f"{'https' if request.is_secure() else 'http'}://{request.get_host()}"
        trusted = {own.lower(), *(o.lower() for o in settings.CSRF_TRUSTED_ORIGINS)}
        if f"{parts.scheme}://{parts.netloc}".lower() not in trusted:
            raise RestError("Forbidden", "Cross-site requests to the agent API are refused")
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise RestError(
                "BadRequest", "Agent requests must be sent as Content-Type: application/json"
            )


def _basic_credentials(request: HttpRequest) -> tuple[str, str] | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    if len(value) > MAX_CREDENTIALS:
        raise _unauthorized("The Authorization header is too long")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _unauthorized("The Authorization header is not valid Basic credentials") from None
    username, colon, secret = decoded.partition(":")
    if not colon or not username:
        raise _unauthorized("The Authorization header is not valid Basic credentials")
    if "\x00" in decoded:
        # No user name or password holds a NUL (Django's login form refuses it too), and
        # PostgreSQL refuses it in the lookup: refused here, before anything is looked up.
        raise _unauthorized("The Authorization header holds a NUL character")
    return username, secret


def _session_user(request: HttpRequest, *, method: str, fingerprint: str = "", username=""):
    """The user of this REST session, if it proved itself by `method` (and, for a
    certificate, with the same certificate; for basic, under the same username)."""
    mark = request.session.get(SESSION_KEY)
    if not isinstance(mark, dict) or mark.get("kind") != method:
        return None
    user = get_user_model().objects.filter(pk=mark.get("user"), is_active=True).first()
    if user is None or not constant_time_compare(
        str(mark.get("hash", "")), user.get_session_auth_hash()
    ):
        return None
    if method == "certificate":
        same = constant_time_compare(str(mark.get("fingerprint", "")), fingerprint)
        still_linked = Certificate.objects.filter(
            fingerprint_sha256=fingerprint,
            status=Certificate.Status.VALID,
            not_after__gt=pki.utcnow(),
            agent_link__user=user,
        ).exists()
        return user if same and still_linked else None
    return user if user.get_username() == username else None


def _remember(request: HttpRequest, user, *, method: str, fingerprint: str = "") -> None:
    request.session.cycle_key()  # a new session key for the new privilege
    request.session[SESSION_KEY] = {
        "kind": method,
        "user": user.pk,
        "hash": user.get_session_auth_hash(),
        "fingerprint": fingerprint,
    }


def _fingerprint(pem: str) -> str:
    try:
        return pki.sha256_hex(pki.load_pem(pem))
    except ValueError:
        return ""


def _from_certificate(request: HttpRequest, pem: str | None, source: str):
    fingerprint = _fingerprint(pem) if pem else ""
    if fingerprint:
        user = _session_user(request, method="certificate", fingerprint=fingerprint)
        if user is not None:
            return user
    ip = client_ip(request)
    if not throttle.certificate_login_allowed(ip):
        raise RestError("Forbidden", "Too many certificate logins from this address; wait a while")
    try:
        link = services.verify_agent_certificate(pem, ip=ip, source=source)
    except services.CertificateRefused as exc:
        raise _unauthorized(f"Client certificate refused: {exc.message}") from None
    _remember(request, link.user, method="certificate", fingerprint=fingerprint)
    return link.user


def _split(secret: str) -> tuple[str, str | None]:
    """The password and the TOTP code appended to it (None when no code is appended)."""
    if not settings.AGENT_REQUIRE_MFA:
        return secret, None
    match = _CODE.match(secret)
    return (match["password"], match["code"]) if match else (secret, None)


def _from_basic(request: HttpRequest, username: str, secret: str):
    user = _session_user(request, method="basic", username=username)
    if user is not None:
        return user
    ip = client_ip(request)
    password, code = _split(secret)
    try:
        user = authenticate(request, username=username, password=password)
        if getattr(request, "axes_locked_out", False):
            raise _locked()
        if user is None:
            raise _unauthorized("Wrong user name or password")
        if not services.is_active_agent(user):
            # Refused before anything is recorded or spent: no login row, no second-factor
            # check (a code is not used up), no REST session.
            raise _not_an_agent(user)
        if services.needs_second_factor(user):
            if login_throttle.is_locked(request, user):
                raise _locked()
            if code is None:
                login_throttle.count_failure(request, user)
                services.record_login_failure(username, ip=ip, reason="second_factor_missing")
                raise _unauthorized(
                    "This account needs a second factor: send the password followed at once "
                    "by the current code of its authenticator app, or use its agent "
                    "certificate"
                )
            try:
                method = services.verify_second_factor(user, code, ip=ip)
            except services.WrongSecondFactor:
                login_throttle.count_failure(request, user)
                if login_throttle.is_locked(request, user):
                    raise _locked() from None
                raise _unauthorized(
                    "Wrong or already used code: wait for the next code of the authenticator app"
                ) from None
            login_throttle.clear_failures(request, user)
        else:
            method = "password"
    finally:
        # axes would swap our JSON for its HTML lockout page; the lockout is reported here.
        request.axes_locked_out = False
    services.record_login(user, ip=ip, method=f"rest-basic+{method}")
    _remember(request, user, method="basic")
    return user


def authenticated_agent(request: HttpRequest):
    """The agent calling, or RestError: 401 without (valid) credentials, 403 for someone
    who is not an active agent (or a cross-site request, or a lockout)."""
    refuse_cross_site(request)
    pem, source = presented_certificate(request)
    basic = _basic_credentials(request)
    user = None
    if source != "none":
        try:
            user = _from_certificate(request, pem, source)
        except RestError:
            if basic is None:
                raise
    if user is None and basic is not None:
        user = _from_basic(request, *basic)
    if user is None:
        raise _unauthorized(
            "Authentication required: an agent certificate, or HTTP basic with the password "
            "followed by the current authenticator code"
        )
    if not services.is_active_agent(user):
        raise _not_an_agent(user)
    return user


def has_credentials(request: HttpRequest) -> bool:
    """Whether the caller presents anything that could make it an agent."""
    _pem, source = presented_certificate(request)
    return source != "none" or request.META.get("HTTP_AUTHORIZATION", "").lower().startswith(
        "basic "
    )


def optional_agent(request: HttpRequest):
    """The agent calling a public resource that shows agents more, or None: anonymous
    callers, and callers who are not agents (or may not act now), get the public view;
    wrong credentials are refused as on agent resources."""
    if not has_credentials(request):
        return None
    try:
        return authenticated_agent(request)
    except RestError as exc:
        if exc.kind == "Forbidden":
            return None
        raise
