"""Reading and checking the JWS of an ACME request (RFC 8555 6.2), with josepy.

`verify_post(request, ...)` returns what the request proves (payload, key, account) or raises
AcmeProblem; it checks the content type, the flattened JSON serialization with one
signature and everything in the protected header, the algorithm (RS256, ES256, ES384 only:
never "none", never an HMAC outside the external account binding), the key (jwk for
newAccount and revokeCert, kid for the rest), the url and the nonce (single use)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import josepy as jose
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.http import HttpRequest
from django.urls import reverse

from ..httputil import has_nul
from . import nonces
from .models import Account
from .problems import AcmeProblem

JOSE_CONTENT_TYPE = "application/jose+json"
#: The signature algorithms accepted for accounts (RFC 8555 6.2 wants ES256 and EdDSA
#: support from servers that can; the issue asks for these three).
ALGORITHMS = {"RS256": jose.RS256, "ES256": jose.ES256, "ES384": jose.ES384}
EAB_ALGORITHMS = {"HS256": jose.HS256, "HS384": jose.HS384, "HS512": jose.HS512}
MIN_RSA_BITS = 2048
MAX_BODY = 64 * 1024


class Header(jose.Header):
    """The JOSE header with ACME's fields: nonce, url, kid (as acme.jws does)."""

    nonce: bytes | None = jose.field("nonce", omitempty=True, encoder=jose.encode_b64jose)
    kid: str | None = jose.field("kid", omitempty=True)
    url: str | None = jose.field("url", omitempty=True)

    @nonce.decoder  # type: ignore[no-redef,union-attr]
    def nonce(value: str) -> bytes:
        return jose.decode_b64jose(value)


class Signature(jose.Signature):
    __slots__ = jose.Signature._orig_slots
    header_cls = Header
    header: Header = jose.field(
        "header", omitempty=True, default=header_cls(), decoder=header_cls.from_json
    )


class JWS(jose.JWS):
    signature_cls = Signature
    __slots__ = jose.JWS._orig_slots


@dataclass
class Verified:
    payload: bytes
    jwk: jose.JWK
    header: Header
    account: Account | None

    @property
    def post_as_get(self) -> bool:
        return self.payload == b""

    def json(self) -> dict:
        """The payload as a JSON object, or malformed."""
        try:
            data = json.loads(self.payload or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise AcmeProblem("malformed", "the JWS payload is not JSON") from None
        if not isinstance(data, dict):
            raise AcmeProblem("malformed", "the JWS payload must be a JSON object")
        if has_nul(data):
            raise AcmeProblem("malformed", "the JWS payload contains a NUL character")
        return data


def _raw_protected(jobj) -> object:
    """The protected header as the client sent it (None when it cannot be read), read only
    to refuse what josepy would pass on or to say why josepy refused it."""
    try:
        return json.loads(jose.b64.b64decode(jobj["protected"]))
    except Exception:  # malformed anyway; the caller says so
        return None


def _raw_alg(jobj) -> object:
    """The alg the client named, read only to say why josepy refused the header."""
    protected = _raw_protected(jobj)
    return protected.get("alg") if isinstance(protected, dict) else None


def parse(body: bytes) -> JWS:
    """The flattened JWS of a body, or malformed / badSignatureAlgorithm."""
    try:
        jobj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise AcmeProblem("malformed", "the body is not JSON (a flattened JWS)") from None
    if not isinstance(jobj, dict) or "signatures" in jobj:
        raise AcmeProblem("malformed", "send a flattened JWS with exactly one signature")
    if not isinstance(jobj.get("protected"), str) or not jobj["protected"]:
        raise AcmeProblem("malformed", "the JWS has no protected header")
    if "header" in jobj:
        raise AcmeProblem("malformed", "ACME allows no unprotected JWS header")
    if has_nul(_raw_protected(jobj)):
        # A kid or url with a NUL would reach the database lookups (PostgreSQL refuses it).
        raise AcmeProblem("malformed", "the JWS protected header contains a NUL character")
    try:
        return JWS.from_json(jobj)
    except Exception:  # josepy meets hostile input with many kinds of errors; all mean malformed
        alg = _raw_alg(jobj)
        if isinstance(alg, str) and alg not in ALGORITHMS:
            raise bad_algorithm(alg) from None
        raise AcmeProblem("malformed", "the JWS cannot be read") from None


def bad_algorithm(alg) -> AcmeProblem:
    return AcmeProblem(
        "badSignatureAlgorithm",
        f"the algorithm {alg!r} is not accepted; use one of {', '.join(ALGORITHMS)}",
        extra={"algorithms": list(ALGORITHMS)},
    )


def check_account_key(jwk: jose.JWK, alg: str) -> None:
    """The key must fit the algorithm and be strong enough; badPublicKey otherwise."""
    key = getattr(jwk.key, "_wrapped", jwk.key)  # josepy's Comparable*Key wraps the key
    if alg == "RS256":
        if not isinstance(key, rsa.RSAPublicKey):
            raise bad_algorithm(alg)
        if key.key_size < MIN_RSA_BITS:
            raise AcmeProblem("badPublicKey", f"RSA keys must have at least {MIN_RSA_BITS} bits")
        return
    curve = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1}[alg]
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, curve):
        raise AcmeProblem("badPublicKey", f"{alg} needs an EC key on {curve.name}")


def thumbprint(jwk: jose.JWK) -> str:
    """The RFC 7638 SHA-256 thumbprint, base64url."""
    return jose.b64.b64encode(jwk.thumbprint()).decode()


def public_jwk(jwk: jose.JWK) -> jose.JWK:
    return jwk.public_key()


def account_url(request: HttpRequest, account: Account) -> str:
    return request.build_absolute_uri(reverse("acme:account", args=[account.slug]))


def verify_signature(
    jws: JWS, *, url: str, use_jwk: bool | None
) -> tuple[Header, jose.JWK | None, str | None]:
    """Check the header's shape (not the nonce nor the key yet): (header, jwk, kid)."""
    sig = jws.signature
    header = sig.combined
    if sig.header.not_omitted():
        raise AcmeProblem("malformed", "ACME allows no unprotected JWS header")
    alg = header.alg.name if header.alg is not None else None
    if alg not in ALGORITHMS:
        raise bad_algorithm(alg)
    if not isinstance(header.url, str) or header.url != url:
        raise AcmeProblem("unauthorized", f"the JWS url header must be {url}")
    if header.nonce is None:
        raise AcmeProblem("badNonce", "the JWS has no nonce")
    if (header.jwk is None) == (header.kid is None):
        raise AcmeProblem("malformed", "the JWS header needs exactly one of jwk and kid")
    if use_jwk is True and header.jwk is None:
        raise AcmeProblem("malformed", "this request must be signed with a jwk, not a kid")
    if use_jwk is False and header.kid is None:
        raise AcmeProblem("malformed", "this request must name its account (kid), not a jwk")
    return header, header.jwk, header.kid


def verify_post(request: HttpRequest, *, use_jwk: bool | None = False) -> Verified:
    """Check an ACME POST; use_jwk: True (newAccount), False (kid: the rest), None (either:
    revokeCert). The nonce is used up only once the signature holds."""
    content_type = request.content_type or ""
    if content_type != JOSE_CONTENT_TYPE:
        raise AcmeProblem("malformed", f"the content type must be {JOSE_CONTENT_TYPE}", status=415)
    body = request.body
    if len(body) > MAX_BODY:
        raise AcmeProblem("malformed", "the request is too large", status=413)
    jws = parse(body)
    url = request.build_absolute_uri()
    header, jwk, kid = verify_signature(jws, url=url, use_jwk=use_jwk)
    account = None
    if kid is not None:
        account = _account_for_kid(request, kid)
        jwk = jose.JWK.from_json(account.key_jwk)
    check_account_key(jwk, header.alg.name)
    try:
        valid = jws.verify(jwk)
    except Exception:
        valid = False
    if not valid:
        raise AcmeProblem("unauthorized", "the JWS signature does not verify with that key")
    if not nonces.use(header.nonce):
        raise AcmeProblem("badNonce", "the nonce is unknown or was used already; use a new one")
    if account is not None and account.status != Account.Status.VALID:
        raise AcmeProblem("unauthorized", f"the account is {account.status}")
    return Verified(payload=jws.payload, jwk=jwk, header=header, account=account)


def _account_for_kid(request: HttpRequest, kid) -> Account:
    if not isinstance(kid, str):
        raise AcmeProblem("malformed", "kid must be the account URL")
    slug = kid.rstrip("/").rsplit("/", 1)[-1]
    account = Account.objects.filter(slug=slug).first() if slug else None
    if account is None or account_url(request, account) != kid:
        raise AcmeProblem("accountDoesNotExist", "no account has that kid")
    return account


def thumbprint_of_public_key(public_key) -> str:
    """The RFC 7638 thumbprint of a cryptography public key (a CSR's, a certificate's)."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return thumbprint(jose.JWKRSA(key=public_key))
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return thumbprint(jose.JWKEC(key=public_key))
    # Any other kind (Ed25519): josepy's loader, as before (no PEM round trip for the rest).
    return thumbprint(
        jose.JWK.load(
            public_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    )


def b64decode(text: str) -> bytes:
    """base64url without padding, strictly (josepy's decoder)."""
    return jose.b64.b64decode(text)
