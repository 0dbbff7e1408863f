"""ACME orders, authorizations and challenges: the state changes of the protocol's
issuance. Certificates come only from the Certificate Manager's services (submit_request,
approve_request, revoke_certificate); re-exported by requests_app.acme.services."""

from __future__ import annotations

import datetime as dt
import threading

from cryptography import x509
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .. import pki, services, throttle
from ..models import Certificate, CertificateRequest
from . import jws, validation
from .models import Account, Authorization, Challenge, ExternalAccountBinding, Order
from .problems import AcmeProblem, problem_document
from .services import name_approved, require_within_rate, retry_after_for

Status = CertificateRequest.Status
MAX_IDENTIFIERS = 100
ORDER_LIFETIME = dt.timedelta(days=7)

#: At most this many validations run at once in a process (each holds a web worker for at
#: most twice ACME_VALIDATION_TIMEOUT).
_validations = threading.BoundedSemaphore(
    max(1, int(getattr(settings, "ACME_VALIDATION_CONCURRENCY", 4)))
)

#: RFC 5280 reason codes a client may give (removeFromCRL and certificateHold are the
#: agents' to use).
ACME_REASONS = {
    0: "unspecified",
    1: "keyCompromise",
    3: "affiliationChanged",
    4: "superseded",
    5: "cessationOfOperation",
    9: "privilegeWithdrawn",
}


def _label(account: Account) -> str:
    return f"acme:{account.slug}"


def binding_of(account: Account) -> ExternalAccountBinding | None:
    return ExternalAccountBinding.objects.filter(account=account).first()


def _require_usable_binding(account: Account) -> ExternalAccountBinding | None:
    binding = binding_of(account)
    if binding is None:
        if settings.ACME_REQUIRE_EAB:
            raise AcmeProblem("unauthorized", "this account has no external account binding")
        return None
    if binding.revoked_at is not None:
        raise AcmeProblem("unauthorized", "the account's binding was revoked by an agent")
    if binding.is_expired:
        raise AcmeProblem(
            "unauthorized", "the account's binding has expired: ask an agent for a new one"
        )
    return binding


def _identifier_names(identifiers) -> list[str]:
    if not isinstance(identifiers, list) or not identifiers:
        raise AcmeProblem("malformed", "an order needs a list of identifiers")
    if len(identifiers) > MAX_IDENTIFIERS:
        raise AcmeProblem("rejectedIdentifier", f"at most {MAX_IDENTIFIERS} identifiers per order")
    names: list[str] = []
    for ident in identifiers:
        if not isinstance(ident, dict) or not isinstance(ident.get("value"), str):
            raise AcmeProblem("malformed", "each identifier is {type, value}")
        if ident.get("type") != "dns":
            raise AcmeProblem(
                "unsupportedIdentifier",
                f"identifier type {ident.get('type')!r} is not supported; use dns",
            )
        try:
            name = pki.normalize_hostname(ident["value"])
        except pki.InvalidName as exc:
            raise AcmeProblem("rejectedIdentifier", str(exc)) from None
        if name != ident["value"].strip().lower().removesuffix("."):
            raise AcmeProblem(
                "rejectedIdentifier", f"send {ident['value']!r} as its A-label {name!r}"
            )
        if name not in names:
            names.append(name)
    return sorted(names)


@transaction.atomic
def new_order(
    account: Account, *, identifiers, replaces: str | None = None, ip: str | None = None
) -> Order:
    """An order with an authorization per name (http-01 and dns-01 challenges; dns-01 only
    for a wildcard)."""
    require_within_rate(
        f"acme-new-order:{account.slug}",
        settings.ACME_NEW_ORDER_RATE_LIMIT,
        "new orders from this account",
    )
    require_within_rate(
        f"acme-new-order-ip:{ip}",
        settings.ACME_NEW_ORDER_RATE_LIMIT,
        "new orders from this address",
    )
    _require_usable_binding(account)
    names = _identifier_names(identifiers)
    replaced = None
    if replaces is not None:
        if not isinstance(replaces, str):
            raise AcmeProblem("malformed", "replaces must be an ARI CertID")
        replaced = certificate_for_cert_id(replaces)
        if replaced is None or not _owns(account, replaced):
            raise AcmeProblem("malformed", "replaces names no certificate of this account")
    expires = timezone.now() + ORDER_LIFETIME
    order = Order.objects.create(
        account=account, names=names, expires_at=expires, replaces=replaced
    )
    for name in names:
        wildcard = name.startswith("*.")
        authz = Authorization.objects.create(
            order=order, name=name.removeprefix("*."), wildcard=wildcard, expires_at=expires
        )
        types = (
            [Challenge.Type.DNS_01] if wildcard else [Challenge.Type.HTTP_01, Challenge.Type.DNS_01]
        )
        Challenge.objects.bulk_create([Challenge(authorization=authz, type=t) for t in types])
    services.audit(
        "acme_order_created",
        actor=None,
        actor_label=_label(account),
        ip=ip,
        account=account.slug,
        order=order.slug,
        names=names,
    )
    return order


def _expire(order: Order) -> None:
    if (
        order.status in (Order.Status.PENDING, Order.Status.READY)
        and order.expires_at <= timezone.now()
    ):
        order.status = Order.Status.INVALID
        order.error = problem_document("malformed", "the order expired")
        order.save(update_fields=["status", "error"])


# --- challenges ------------------------------------------------------------------------------


def answer_challenge(challenge: Challenge, *, account: Account, ip: str | None = None) -> Challenge:
    """The client says the challenge is ready: validate it now, synchronously and bounded.

    Three steps on purpose: claim it (pending -> processing, one transaction), look at the
    network with no transaction open (validation.py's timeouts bound it), record the outcome
    (one transaction, an audit row). A challenge that is not pending is returned as it is."""
    if challenge.status != Challenge.Status.PENDING:
        return challenge
    authz = challenge.authorization
    order = authz.order
    if order.status != Order.Status.PENDING or authz.status != Authorization.Status.PENDING:
        return challenge
    rate = settings.ACME_FAILED_VALIDATION_RATE_LIMIT
    for scope in (f"acme-failed:{account.slug}", f"acme-failed-ip:{ip}"):
        if throttle.over_rate(scope, rate):
            raise AcmeProblem(
                "rateLimited",
                "too many failed validations; try again later",
                retry_after=retry_after_for(rate),
            )
    if not _validations.acquire(timeout=float(settings.ACME_VALIDATION_TIMEOUT)):
        raise AcmeProblem(
            "rateLimited", "the CA is validating many challenges; try again shortly", retry_after=5
        )
    try:
        claimed = Challenge.objects.filter(pk=challenge.pk, status=Challenge.Status.PENDING).update(
            status=Challenge.Status.PROCESSING
        )
        if claimed != 1:
            challenge.refresh_from_db()
            return challenge
        key_auth = validation.key_authorization(challenge.token, account.key_thumbprint)
        try:
            if challenge.type == Challenge.Type.HTTP_01:
                outcome = validation.check_http01(authz.name, challenge.token, key_auth)
            else:
                outcome = validation.check_dns01(authz.name, key_auth)
        except Exception as exc:  # never a 500 and never a challenge stuck in processing
            outcome = validation.Outcome(
                ok=False,
                problem="serverInternal",
                detail=f"validation failed: {type(exc).__name__}",
            )
    finally:
        _validations.release()
    if not outcome.ok:
        for scope in (f"acme-failed:{account.slug}", f"acme-failed-ip:{ip}"):
            throttle.within_rate(scope, rate)
    return _record_validation(challenge.pk, outcome, account=account, ip=ip)


@transaction.atomic
def _record_validation(
    challenge_id: int, outcome: validation.Outcome, *, account: Account, ip: str | None
) -> Challenge:
    challenge = (
        Challenge.objects.select_for_update()
        .select_related("authorization__order")
        .get(pk=challenge_id)
    )
    authz = challenge.authorization
    order = Order.objects.select_for_update().get(pk=authz.order_id)
    now = timezone.now()
    challenge.validated_from = outcome.source[:300]
    if outcome.ok:
        challenge.status = Challenge.Status.VALID
        challenge.validated_at = now
        authz.status = Authorization.Status.VALID
        authz.save(update_fields=["status"])
        if (
            order.status == Order.Status.PENDING
            and not order.authorizations.exclude(status=Authorization.Status.VALID).exists()
        ):
            order.status = Order.Status.READY
            order.save(update_fields=["status"])
    else:
        challenge.status = Challenge.Status.INVALID
        challenge.error = problem_document(outcome.problem, outcome.detail)
        authz.status = Authorization.Status.INVALID
        authz.save(update_fields=["status"])
        if order.status in (Order.Status.PENDING, Order.Status.READY):
            order.status = Order.Status.INVALID
            order.error = problem_document(outcome.problem, f"{authz.name}: {outcome.detail}")
            order.save(update_fields=["status", "error"])
    challenge.save(update_fields=["status", "validated_at", "validated_from", "error"])
    services.audit(
        "acme_challenge_valid" if outcome.ok else "acme_challenge_invalid",
        actor=None,
        actor_label=_label(account),
        ip=ip,
        account=account.slug,
        order=order.slug,
        name=authz.name,
        type=challenge.type,
        source=outcome.source,
        **({} if outcome.ok else {"problem": outcome.problem, "detail": outcome.detail}),
    )
    return challenge


@transaction.atomic
def deactivate_authorization(
    authz: Authorization, *, account: Account, ip: str | None = None
) -> Authorization:
    """The client gives up an authorization (RFC 8555 7.5.2); its order becomes invalid."""
    authz = Authorization.objects.select_for_update().get(pk=authz.pk)
    if authz.status not in (Authorization.Status.PENDING, Authorization.Status.VALID):
        raise AcmeProblem("malformed", f"the authorization is {authz.status}")
    authz.status = Authorization.Status.DEACTIVATED
    authz.save(update_fields=["status"])
    Order.objects.filter(
        pk=authz.order_id, status__in=[Order.Status.PENDING, Order.Status.READY]
    ).update(
        status=Order.Status.INVALID,
        error=problem_document("unauthorized", "an authorization was deactivated"),
    )
    services.audit(
        "acme_authorization_deactivated",
        actor=None,
        actor_label=_label(account),
        ip=ip,
        account=account.slug,
        name=authz.name,
    )
    return authz


# --- finalize and after ---------------------------------------------------------------------


def csr_names(info: pki.CSRInfo) -> set[str]:
    """The DNS names a CSR asks for (SANs and a CN), normalized; badCSR for anything else."""
    names = set()
    for san in info.sans:
        kind, _, value = san.partition(":")
        if kind != "DNS":
            raise AcmeProblem(
                "badCSR", f"the CSR asks for {san}, which is not a DNS name of the order"
            )
        names.add(value.lower())
    cn = pki.common_name(info.csr.subject)
    if cn:
        try:
            names.add(pki.normalize_hostname(cn))
        except pki.InvalidName:
            raise AcmeProblem("badCSR", f"the CSR's common name {cn!r} is not a DNS name") from None
    return names


@transaction.atomic
def finalize_order(
    order: Order, *, account: Account, csr_der: bytes, ip: str | None = None
) -> Order:
    """Submit the order's CSR to the Certificate Manager (channel "acme"); issue at once when
    every name is inside the account binding's approval, else leave it to the agents."""
    order = Order.objects.select_for_update().get(pk=order.pk)
    _expire(order)
    if order.status != Order.Status.READY:
        raise AcmeProblem("orderNotReady", f"the order is {order.status}, not ready")
    binding = _require_usable_binding(account)
    try:
        # One parse of the DER (check_csr reads DER as well as PEM); submit_request checks
        # the same CSR again against the profile, as for every channel.
        info = pki.check_csr(csr_der)
    except (ValueError, pki.CSRError) as exc:
        raise AcmeProblem("badCSR", f"the CSR cannot be used: {exc}") from None
    csr, pem = info.csr, info.pem
    asked = csr_names(info)
    if asked != set(order.names):
        raise AcmeProblem(
            "badCSR",
            f"the CSR names {', '.join(sorted(asked)) or 'nothing'}, but the order "
            f"{', '.join(order.names)}: they must be the same",
        )
    if jws.thumbprint_of_public_key(csr.public_key()) == account.key_thumbprint:
        raise AcmeProblem("badCSR", "the certificate key must not be the account key")
    email = binding.email if binding else _contact_email(account)
    try:
        req = services.submit_request(
            profile=binding.profile if binding else settings.ACME_DEFAULT_PROFILE,
            csr=pem,
            requester_email=email,
            requester_name=f"ACME account {account.slug}",
            note=f"ACME order {order.slug}" + (f", binding {binding.kid}" if binding else ""),
            ip=ip,
            channel="acme",
            email_confirmed_by=(f"ACME binding {binding.kid}" if binding else ""),
        )
    except services.ServiceError as exc:
        raise AcmeProblem("badCSR", exc.message) from None
    order.request = req
    order.status = Order.Status.PROCESSING
    approved = binding is not None and all(name_approved(n, binding.names) for n in order.names)
    services.audit(
        "acme_order_finalized",
        actor=None,
        actor_label=_label(account),
        request=req,
        ip=ip,
        account=account.slug,
        order=order.slug,
        within_approval=approved,
    )
    if approved and req.status == Status.PENDING:
        try:
            # approve_request runs in a savepoint of its own: a refusal (linting, CA down)
            # leaves the request pending, in the agent queue, with its audit row.
            services.approve_request(
                req, agent=None, ip=ip, note="within the ACME account binding's approval"
            )
        except services.ServiceError:
            pass
        else:
            order.status = Order.Status.VALID
    # One write for the order: processing (with its request), or valid when issued at once.
    order.save(update_fields=["request", "status"])
    return order


def _contact_email(account: Account) -> str:
    for uri in account.contact:
        if uri.startswith("mailto:"):
            return uri.removeprefix("mailto:")
    raise AcmeProblem("invalidContact", "the account has no mailto: contact")


@transaction.atomic
def refresh_order(order: Order) -> Order:
    """A processing order follows its request: the agent's approval makes it valid, a
    rejection or cancelation invalid (with the agent's reason)."""
    if order.status != Order.Status.PROCESSING or order.request_id is None:
        if order.status in (Order.Status.PENDING, Order.Status.READY):
            order = Order.objects.select_for_update().get(pk=order.pk)
            _expire(order)
        return order
    order = (
        Order.objects.select_for_update(of=("self",))
        .select_related("request", "account")
        .get(pk=order.pk)
    )
    req = order.request
    if order.status != Order.Status.PROCESSING:
        return order
    if req.status == Status.COMPLETE:
        order.status = Order.Status.VALID
    elif req.status in (Status.REJECTED, Status.CANCELED):
        order.status = Order.Status.INVALID
        reason = req.agent_note or f"the request was {req.status}"
        order.error = problem_document(
            "unauthorized", f"an agent {req.status} the request: {reason}"
        )
    else:
        return order
    order.save(update_fields=["status", "error"])
    services.audit(
        "acme_order_" + order.status,
        actor=None,
        actor_label="system",
        request=req,
        account=order.account.slug,
        order=order.slug,
    )
    return order


# --- certificates ---------------------------------------------------------------------------


def _owns(account: Account, cert: Certificate) -> bool:
    return Order.objects.filter(account=account, request__certificate=cert).exists()


def certificate_for_cert_id(cert_id: str) -> Certificate | None:
    """The certificate an ARI CertID names: base64url(AKI keyIdentifier) "." base64url(serial)."""
    try:
        aki_text, serial_text = cert_id.split(".")
        aki = jws.b64decode(aki_text)
        serial = int.from_bytes(jws.b64decode(serial_text), "big")
    except (ValueError, TypeError):
        return None
    for cert in Certificate.objects.with_serial(serial).select_related("ca"):
        ca_cert = cert.ca.certificate
        try:
            ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        except x509.ExtensionNotFound:
            ski = x509.SubjectKeyIdentifier.from_public_key(ca_cert.public_key())
        if ski.digest == aki:
            return cert
    return None


def revoke_by_acme(
    *, certificate_der: bytes, reason, account: Account | None, jwk, ip: str | None = None
) -> Certificate:
    """revokeCert (RFC 8555 7.6): by the account that ordered it, by an account holding valid
    authorizations for all its names (reason cessationOfOperation), or signed with the
    certificate's own key. Through services.revoke_certificate (CRL, OCSP, audit, signal)."""
    try:
        given = x509.load_der_x509_certificate(certificate_der)
    except ValueError:
        raise AcmeProblem("malformed", "certificate is not a DER certificate") from None
    if reason is None:
        reason = 0
    if isinstance(reason, bool) or not isinstance(reason, int) or reason not in ACME_REASONS:
        raise AcmeProblem("badRevocationReason", f"reason must be one of {sorted(ACME_REASONS)}")
    fingerprint = pki.sha256_hex(given)
    cert = Certificate.objects.filter(fingerprint_sha256=fingerprint).first()
    if cert is None:
        raise AcmeProblem("malformed", "this CA did not issue that certificate", status=404)
    method = "certificate-key"
    requested = ACME_REASONS[reason]
    if account is not None and _owns(account, cert):
        method = "subscriber"
    elif account is not None:
        method = "control"
        _require_control(account, given)
        # Like Let's Encrypt: an account that is not the subscriber revokes only because the
        # names left the subscriber's hands (RFC 5280 cessationOfOperation).
        reason = 5
    elif jws.thumbprint_of_public_key(given.public_key()) != jws.thumbprint(jwk):
        raise AcmeProblem(
            "unauthorized", "neither this account nor this key may revoke that certificate"
        )
    if (
        cert.status == Certificate.Status.REVOKED
        and cert.revocation_reason != services.CERTIFICATE_HOLD
    ):
        raise AcmeProblem("alreadyRevoked", "the certificate is revoked already")
    with transaction.atomic():
        try:
            cert = services.revoke_certificate(cert, reason=ACME_REASONS[reason], actor=None, ip=ip)
        except services.AlreadyRevoked:
            raise AcmeProblem("alreadyRevoked", "the certificate is revoked already") from None
        except services.ServiceError as exc:
            raise AcmeProblem("malformed", exc.message) from None
        services.audit(
            "acme_certificate_revoked",
            actor=None,
            actor_label=_label(account) if account else "acme:certificate-key",
            certificate=cert,
            ip=ip,
            account=account.slug if account else None,
            reason=ACME_REASONS[reason],
            method=method,
            **({"requested_reason": requested} if requested != ACME_REASONS[reason] else {}),
        )
    return cert


def certificate_dns_names(cert: x509.Certificate) -> list[tuple[str, bool]]:
    """The names a certificate is for, as (name without "*.", wildcard) pairs, like the
    identifiers of authorizations (RFC 8555 7.1.4); unauthorized for a name that no ACME
    authorization can cover (an IP address, an email address, a non-DNS common name)."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = []
    texts: set[str] = set()
    for san in sans:
        if not isinstance(san, x509.DNSName):
            raise AcmeProblem(
                "unauthorized",
                f"the certificate names {pki.san_to_text(san)}, which no ACME authorization "
                "covers: only its subscriber or its key may revoke it",
            )
        texts.add(san.value.lower().removesuffix("."))
    cn = pki.common_name(cert.subject)
    if cn:
        texts.add(cn.lower().removesuffix("."))
    if not texts:
        raise AcmeProblem("unauthorized", "the certificate names no DNS identifier")
    pairs = []
    for text in sorted(texts):
        wildcard = text.startswith("*.")
        try:
            name = pki.normalize_hostname(text.removeprefix("*."))
        except pki.InvalidName:
            raise AcmeProblem(
                "unauthorized", f"the certificate's name {text!r} is not a DNS identifier"
            ) from None
        pairs.append((name, wildcard))
    return pairs


def _require_control(account: Account, cert: x509.Certificate) -> None:
    """RFC 8555 7.6: an account other than the subscriber may revoke a certificate only if it
    holds valid, unexpired authorizations for every name in it. A wildcard name needs a
    wildcard authorization for its base name (dns-01 at that name, RFC 8555 7.1.3); an
    authorization for the base name alone does not cover the wildcard, nor a wildcard
    authorization the names below it (as Let's Encrypt matches identifiers exactly). The
    account's binding must still be usable: an agent's revocation withdraws it all."""
    _require_usable_binding(account)
    needed = certificate_dns_names(cert)
    held = set(
        Authorization.objects.filter(
            order__account=account,
            status=Authorization.Status.VALID,
            expires_at__gt=timezone.now(),
            name__in=[name for name, _ in needed],
        ).values_list("name", "wildcard")
    )
    missing = [("*." if wild else "") + name for name, wild in needed if (name, wild) not in held]
    if missing:
        raise AcmeProblem(
            "unauthorized",
            "this account did not order that certificate and holds no valid authorization "
            f"for {', '.join(missing)}",
        )
