"""The ACME server's endpoints (RFC 8555, RFC 9773): parse the JWS, call one service,
answer with the resource or a problem document. Never a bare 500: an unexpected error is
logged and answered as serverInternal."""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging

import josepy as jose
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from .. import services as cm_services
from ..httputil import client_ip
from . import jws, nonces
from . import services as acme
from .models import Account, Authorization, Challenge, Order
from .orders import certificate_for_cert_id
from .problems import AcmeProblem

log = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
PEM_CHAIN_CONTENT_TYPE = "application/pem-certificate-chain"
#: How long a client should wait before polling a processing order or challenge again.
PROCESSING_RETRY_AFTER = 3
ARI_RETRY_AFTER = 6 * 3600


def _url(request: HttpRequest, name: str, *args) -> str:
    return request.build_absolute_uri(reverse(f"acme:{name}", args=args))


def _when(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _finish(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    response["Replay-Nonce"] = nonces.new()
    response["Cache-Control"] = "no-store"
    response["Link"] = _link(response.get("Link"), _url(request, "directory"), "index")
    return response


def _link(existing: str | None, url: str, rel: str) -> str:
    link = f'<{url}>;rel="{rel}"'
    return f"{existing}, {link}" if existing else link


def _json(request, data, *, status=200, location=None, retry_after=None, links=()) -> HttpResponse:
    response = HttpResponse(json.dumps(data), status=status, content_type="application/json")
    if location:
        response["Location"] = location
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    for url, rel in links:
        response["Link"] = _link(response.get("Link"), url, rel)
    return _finish(request, response)


def _problem(request: HttpRequest, problem: AcmeProblem) -> HttpResponse:
    response = HttpResponse(
        json.dumps(problem.document()), status=problem.status, content_type=PROBLEM_CONTENT_TYPE
    )
    if problem.retry_after is not None:
        response["Retry-After"] = str(problem.retry_after)
    account = getattr(problem, "account", None)
    if account is not None:
        response["Location"] = _url(request, "account", account.slug)
    for name, value in problem.headers.items():
        response[name] = value
    return _finish(request, response)


def acme_view(*methods):
    """An ACME endpoint: only these methods, csrf-exempt (the JWS is the proof), and every
    refusal a problem document."""

    def decorate(view):
        @csrf_exempt
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            if request.method not in methods:
                response = _problem(
                    request,
                    AcmeProblem("malformed", f"use {' or '.join(methods)}", status=405),
                )
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return view(request, *args, **kwargs)
            except AcmeProblem as problem:
                return _problem(request, problem)
            except cm_services.ServiceError as exc:
                return _problem(request, AcmeProblem("malformed", exc.message))
            except Exception:
                log.exception("ACME %s %s failed", request.method, request.path)
                return _problem(
                    request, AcmeProblem("serverInternal", "the CA could not answer; try later")
                )

        return wrapped

    return decorate


# --- resources as JSON ---------------------------------------------------------------------


def _account_json(request, account: Account) -> dict:
    data = {
        "status": account.status,
        "contact": account.contact,
        "orders": _url(request, "account_orders", account.slug),
    }
    if account.terms_agreed:
        data["termsOfServiceAgreed"] = True
    return data


def _order_json(request, order: Order) -> dict:
    data = {
        "status": order.status,
        "expires": _when(order.expires_at),
        "identifiers": [{"type": "dns", "value": name} for name in order.names],
        "authorizations": [_url(request, "authz", a.slug) for a in order.authorizations.all()],
        "finalize": _url(request, "finalize", order.slug),
    }
    if order.status == Order.Status.VALID:
        data["certificate"] = _url(request, "certificate", order.slug)
    if order.error:
        data["error"] = order.error
    return data


def _challenge_json(request, challenge: Challenge) -> dict:
    data = {
        "type": challenge.type,
        "url": _url(request, "challenge", challenge.slug),
        "status": challenge.status,
        "token": challenge.token,
    }
    if challenge.validated_at:
        data["validated"] = _when(challenge.validated_at)
    if challenge.error:
        data["error"] = challenge.error
    return data


def _authz_json(request, authz: Authorization) -> dict:
    data = {
        "identifier": {"type": "dns", "value": authz.name},
        "status": authz.status,
        "expires": _when(authz.expires_at),
        "challenges": [_challenge_json(request, c) for c in authz.challenges.order_by("pk")],
    }
    if authz.wildcard:
        data["wildcard"] = True
    return data


def _order_response(request, order: Order, *, status=200, location=False) -> HttpResponse:
    processing = order.status == Order.Status.PROCESSING
    return _json(
        request,
        _order_json(request, order),
        status=status,
        location=_url(request, "order", order.slug) if location else None,
        retry_after=PROCESSING_RETRY_AFTER if processing else None,
    )


def _own(obj_account_id: int, verified: jws.Verified) -> None:
    if obj_account_id != verified.account.pk:
        raise AcmeProblem("unauthorized", "this resource belongs to another account")


#: What each resource's view reads next (its owner), fetched in the same query.
_RELATED = {Authorization: ("order",), Challenge: ("authorization__order",)}


def _lookup(model, slug: str):
    found = model.objects.filter(slug=slug)
    if model in _RELATED:  # (select_related() with no field would follow every relation)
        found = found.select_related(*_RELATED[model])
    found = found.first()
    if found is None:
        raise AcmeProblem("malformed", "no such resource", status=404)
    return found


# --- endpoints -----------------------------------------------------------------------------


@acme_view("GET")
def directory(request):
    meta = {"externalAccountRequired": bool(settings.ACME_REQUIRE_EAB)}
    if settings.ACME_TERMS_OF_SERVICE:
        meta["termsOfService"] = settings.ACME_TERMS_OF_SERVICE
    if settings.SITE_URL:
        meta["website"] = settings.SITE_URL
    return _json(
        request,
        {
            "newNonce": _url(request, "new_nonce"),
            "newAccount": _url(request, "new_account"),
            "newOrder": _url(request, "new_order"),
            "revokeCert": _url(request, "revoke_cert"),
            "keyChange": _url(request, "key_change"),
            "renewalInfo": _url(request, "renewal_info_base"),
            "meta": meta,
        },
    )


@acme_view("HEAD", "GET")
def new_nonce(request):
    return _finish(request, HttpResponse(status=200 if request.method == "HEAD" else 204))


@acme_view("POST")
def new_account(request):
    verified = jws.verify_post(request, use_jwk=True)
    payload = verified.json()
    account, created = acme.new_account(
        jwk=verified.jwk,
        contact=payload.get("contact"),
        terms_agreed=bool(payload.get("termsOfServiceAgreed")),
        only_return_existing=bool(payload.get("onlyReturnExisting")),
        eab=payload.get("externalAccountBinding"),
        url=request.build_absolute_uri(),
        ip=client_ip(request),
    )
    return _json(
        request,
        _account_json(request, account),
        status=201 if created else 200,
        location=_url(request, "account", account.slug),
    )


@acme_view("POST")
def account(request, slug):
    verified = jws.verify_post(request)
    if verified.account.slug != slug:
        raise AcmeProblem("unauthorized", "the kid names another account than this URL")
    acct = verified.account
    if not verified.post_as_get:
        payload = verified.json()
        acct = acme.update_account(
            acct,
            contact=payload.get("contact"),
            status=payload.get("status"),
            ip=client_ip(request),
        )
    return _json(request, _account_json(request, acct), location=_url(request, "account", slug))


@acme_view("POST")
def account_orders(request, slug):
    verified = jws.verify_post(request)
    if verified.account.slug != slug:
        raise AcmeProblem("unauthorized", "the kid names another account than this URL")
    orders = Order.objects.filter(account=verified.account).order_by("-created_at")[:1000]
    return _json(request, {"orders": [_url(request, "order", o.slug) for o in orders]})


@acme_view("POST")
def key_change(request):
    verified = jws.verify_post(request)
    try:
        inner_jobj = json.loads(verified.payload)
    except ValueError:
        raise AcmeProblem("malformed", "the payload must be a JWS signed by the new key") from None
    inner = jws.parse(json.dumps(inner_jobj).encode())
    header = inner.signature.combined
    if header.jwk is None or header.kid is not None or header.nonce is not None:
        raise AcmeProblem("malformed", "the inner JWS needs a jwk, and no kid or nonce")
    if header.alg is None or header.alg.name not in jws.ALGORITHMS:
        raise jws.bad_algorithm(header.alg.name if header.alg else None)
    if header.url != verified.header.url:
        raise AcmeProblem("malformed", "the inner JWS url must equal the outer one")
    jws.check_account_key(header.jwk, header.alg.name)
    try:
        valid = inner.verify(header.jwk)
    except Exception:
        valid = False
    if not valid:
        raise AcmeProblem("unauthorized", "the inner JWS is not signed by its jwk")
    try:
        payload = json.loads(inner.payload)
        old_key = jose.JWK.from_json(payload["oldKey"])
        account_url = payload["account"]
    except (ValueError, KeyError, TypeError, jose.Error):
        raise AcmeProblem("malformed", "the inner payload needs account and oldKey") from None
    if account_url != verified.header.kid:
        raise AcmeProblem("malformed", "the inner payload names another account")
    if jws.thumbprint(old_key) != verified.account.key_thumbprint:
        raise AcmeProblem("malformed", "oldKey is not the account's key")
    acct = acme.rollover_key(verified.account, new_jwk=header.jwk, ip=client_ip(request))
    return _json(
        request, _account_json(request, acct), location=_url(request, "account", acct.slug)
    )


@acme_view("POST")
def new_order(request):
    verified = jws.verify_post(request)
    payload = verified.json()
    if payload.get("notBefore") or payload.get("notAfter"):
        raise AcmeProblem(
            "malformed", "notBefore and notAfter are not supported; the profile sets the validity"
        )
    order = acme.new_order(
        verified.account,
        identifiers=payload.get("identifiers"),
        replaces=payload.get("replaces"),
        ip=client_ip(request),
    )
    return _order_response(request, order, status=201, location=True)


@acme_view("POST")
def order(request, slug):
    verified = jws.verify_post(request)
    found = _lookup(Order, slug)
    _own(found.account_id, verified)
    return _order_response(request, acme.refresh_order(found))


@acme_view("POST")
def finalize(request, slug):
    verified = jws.verify_post(request)
    found = _lookup(Order, slug)
    _own(found.account_id, verified)
    payload = verified.json()
    try:
        csr_der = jws.b64decode(payload["csr"])
    except (KeyError, TypeError, ValueError):
        raise AcmeProblem("malformed", "csr must be the base64url DER of a CSR") from None
    done = acme.finalize_order(
        found, account=verified.account, csr_der=csr_der, ip=client_ip(request)
    )
    return _order_response(request, done, location=True)


@acme_view("POST")
def authz(request, slug):
    verified = jws.verify_post(request)
    found = _lookup(Authorization, slug)
    _own(found.order.account_id, verified)
    if not verified.post_as_get:
        payload = verified.json()
        if payload.get("status") != "deactivated":
            raise AcmeProblem(
                "malformed", 'an authorization\'s status can only become "deactivated"'
            )
        found = acme.deactivate_authorization(
            found, account=verified.account, ip=client_ip(request)
        )
    return _json(request, _authz_json(request, found))


@acme_view("POST")
def challenge(request, slug):
    verified = jws.verify_post(request)
    found = _lookup(Challenge, slug)
    authorization = found.authorization
    _own(authorization.order.account_id, verified)
    if not verified.post_as_get:
        verified.json()  # "{}": the client is ready
        found = acme.answer_challenge(found, account=verified.account, ip=client_ip(request))
    processing = found.status == Challenge.Status.PROCESSING
    return _json(
        request,
        _challenge_json(request, found),
        retry_after=PROCESSING_RETRY_AFTER if processing else None,
        links=[(_url(request, "authz", authorization.slug), "up")],
    )


@acme_view("POST")
def certificate(request, slug):
    verified = jws.verify_post(request)
    found = _lookup(Order, slug)
    _own(found.account_id, verified)
    found = acme.refresh_order(found)
    cert = found.certificate if found.status == Order.Status.VALID else None
    if cert is None:
        raise AcmeProblem("malformed", "the order has no certificate (yet)", status=404)
    pem = "".join(c.public_bytes(jws.serialization.Encoding.PEM).decode() for c in cert.chain)
    response = HttpResponse(pem, content_type=PEM_CHAIN_CONTENT_TYPE)
    return _finish(request, response)


@acme_view("POST")
def revoke_cert(request):
    verified = jws.verify_post(request, use_jwk=None)
    payload = verified.json()
    try:
        der = jws.b64decode(payload["certificate"])
    except (KeyError, TypeError, ValueError):
        raise AcmeProblem("malformed", "certificate must be base64url DER") from None
    acme.revoke_by_acme(
        certificate_der=der,
        reason=payload.get("reason"),
        account=verified.account,
        jwk=verified.jwk,
        ip=client_ip(request),
    )
    return _finish(request, HttpResponse(status=200))


@acme_view("GET")
def renewal_info(request, cert_id=""):
    """ARI (RFC 9773): when to renew; the window is the last third of the lifetime but its
    last sixth, or now for a revoked certificate."""
    cert = certificate_for_cert_id(cert_id) if cert_id else None
    if cert is None:
        raise AcmeProblem("malformed", "no certificate has that CertID", status=404)
    if cert.status == cert.Status.REVOKED:
        now = timezone.now()
        start, end = now - dt.timedelta(days=1), now
    else:
        lifetime = cert.not_after - cert.not_before
        start, end = cert.not_after - lifetime / 3, cert.not_after - lifetime / 6
    response = _json(
        request,
        {"suggestedWindow": {"start": _when(start), "end": _when(end)}},
        retry_after=ARI_RETRY_AFTER,
    )
    return response
