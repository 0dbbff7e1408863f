"""revokeCert signed by an account that did not order the certificate (RFC 8555 7.6): allowed
only with valid, unexpired authorizations for every name in it, wildcards matched as
wildcards. Driven with certbot's `acme` library against a live portal; the refusals are
`unauthorized` problem documents and revoke nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from acme import challenges, messages
from cryptography import x509
from django.utils import timezone

from requests_app import services
from requests_app.acme import services as acme_services
from requests_app.acme import validation
from requests_app.acme.models import Authorization
from requests_app.models import AuditEvent, Certificate
from tests.helpers.acme import (
    HTTP01Responder,
    StubDNS,
    account_key,
    acme_client,
    answer_http01,
    deadline,
    new_key_and_csr,
    register,
)

pytestmark = pytest.mark.django_db(transaction=True)

UNAUTHORIZED = "urn:ietf:params:acme:error:unauthorized"
NAMES = ["app.example.com", "*.corp.example.com"]


@pytest.fixture
def responder(settings, empty_cache):
    with HTTP01Responder() as server, StubDNS() as dns:
        settings.ACME_HTTP01_ADDRESS = "127.0.0.1"
        settings.ACME_HTTP01_PORT = server.port
        settings.ACME_ALLOW_PRIVATE_ADDRESSES = True
        settings.ACME_VALIDATION_TIMEOUT = 3.0
        settings.ACME_DNS_RESOLVER = dns.address
        server.dns = dns
        yield server


@pytest.fixture
def directory_url(live_server, ca):
    return live_server.url + "/acme/directory"


def _client(directory_url, agent, email):
    binding, hmac_key = acme_services.create_binding(email=email, names=NAMES, actor=agent)
    acme = acme_client(directory_url, account_key())
    register(acme, kid=binding.kid, hmac_key=hmac_key, email=email)
    return acme, binding


def _validate(acme, responder, *names):
    """Order the names and prove control (http-01, dns-01 for a wildcard); no finalize."""
    _, csr = new_key_and_csr(*names)
    order = acme.new_order(csr)
    for authz in order.authorizations:
        if authz.body.wildcard:
            chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01))
            response, key_auth = chall.response_and_validation(acme.net.key)
            record = f"_acme-challenge.{authz.body.identifier.value}"
            responder.dns.records.setdefault((record, "TXT"), []).append(
                validation.dns01_value(chall.chall.key_authorization(acme.net.key))
            )
            acme.answer_challenge(chall, response)
        else:
            chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
            response, key_auth = chall.response_and_validation(acme.net.key)
            responder.answers[chall.chall.encode("token")] = key_auth
            acme.answer_challenge(chall, response)
    return acme.poll_authorizations(order, deadline())


def _issue(acme, responder, *names) -> x509.Certificate:
    order = _validate(acme, responder, *names)
    done = acme.poll_and_finalize(order, deadline())
    return x509.load_pem_x509_certificate(done.fullchain_pem.encode())


@pytest.fixture
def subscriber(directory_url, responder, agent):
    """A certificate for app.example.com and *.corp.example.com, ordered by one account."""
    acme, _ = _client(directory_url, agent, "owner@example.com")
    return _issue(acme, responder, *NAMES)


def _refused(acme, leaf, reason=0) -> messages.Error:
    before = AuditEvent.objects.filter(action="acme_certificate_revoked").count()
    with pytest.raises(messages.Error) as info:
        acme.revoke(leaf, reason)
    assert info.value.typ == UNAUTHORIZED
    cert = Certificate.objects.get()
    assert cert.status == Certificate.Status.VALID
    assert AuditEvent.objects.filter(action="acme_certificate_revoked").count() == before
    return info.value


def test_account_with_authorizations_for_every_name_revokes(
    directory_url, responder, agent, subscriber
):
    """Another account validates both names (http-01, and dns-01 for the wildcard) without
    ordering the certificate: it may revoke it, as cessationOfOperation, audited."""
    other, _ = _client(directory_url, agent, "newowner@example.com")
    _validate(other, responder, *NAMES)
    other.revoke(subscriber, 1)
    cert = Certificate.objects.get()
    assert cert.status == Certificate.Status.REVOKED
    assert cert.revocation_reason == "cessationOfOperation"
    event = AuditEvent.objects.get(action="acme_certificate_revoked")
    assert event.certificate_id == cert.pk
    assert event.details["method"] == "control"
    assert event.details["requested_reason"] == "keyCompromise"
    assert event.actor_label.startswith("acme:")
    assert services.verify_audit().intact


def test_authorizations_for_only_some_names_are_refused(
    directory_url, responder, agent, subscriber
):
    """Authorizations for app.example.com alone do not cover *.corp.example.com."""
    other, _ = _client(directory_url, agent, "partial@example.com")
    _validate(other, responder, "app.example.com")
    problem = _refused(other, subscriber)
    assert "*.corp.example.com" in problem.detail


def test_base_name_authorization_does_not_cover_the_wildcard(
    directory_url, responder, agent, subscriber
):
    """http-01 for corp.example.com (and a name below it) is not a wildcard authorization:
    the wildcard name needs dns-01 for *.corp.example.com itself."""
    other, _ = _client(directory_url, agent, "base@example.com")
    _validate(other, responder, "app.example.com", "corp.example.com", "www.corp.example.com")
    problem = _refused(other, subscriber)
    assert "*.corp.example.com" in problem.detail


def test_wildcard_authorization_does_not_cover_names_below_it(directory_url, responder, agent):
    """A certificate for www.corp.example.com: a wildcard authorization for
    *.corp.example.com is not an authorization for www.corp.example.com."""
    owner, _ = _client(directory_url, agent, "owner@example.com")
    leaf = _issue(owner, responder, "www.corp.example.com")
    other, _ = _client(directory_url, agent, "wild@example.com")
    _validate(other, responder, "*.corp.example.com")
    _refused(other, leaf)


def test_expired_authorizations_are_refused(directory_url, responder, agent, subscriber):
    """Authorizations for every name, but past their expiry: refused."""
    other, binding = _client(directory_url, agent, "late@example.com")
    _validate(other, responder, *NAMES)
    # The clock of the authorizations moves, not the live server's: expire them in place.
    binding.refresh_from_db()
    expired = Authorization.objects.filter(order__account=binding.account)
    assert expired.count() == len(NAMES)
    expired.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    _refused(other, subscriber)


def test_invalid_authorizations_are_refused(directory_url, responder, agent, subscriber):
    """A challenge answered wrongly leaves the authorization invalid: no proof, refused."""
    other, _ = _client(directory_url, agent, "wrong@example.com")
    _, csr = new_key_and_csr("app.example.com")
    order = other.new_order(csr)
    answer_http01(other, order, responder, wrong=True)
    with pytest.raises(Exception):  # noqa: B017 - the library's ValidationError
        other.poll_authorizations(order, deadline())
    _refused(other, subscriber)


def test_deactivated_account_is_refused(directory_url, responder, agent, subscriber):
    """Valid authorizations for every name, then the account deactivates itself."""
    other, _ = _client(directory_url, agent, "gone@example.com")
    _validate(other, responder, *NAMES)
    other.deactivate_registration(other.net.account)
    _refused(other, subscriber)


def test_revoked_binding_account_is_refused(directory_url, responder, agent, subscriber):
    """Valid authorizations for every name, but an agent revoked the account's binding."""
    other, binding = _client(directory_url, agent, "withdrawn@example.com")
    _validate(other, responder, *NAMES)
    acme_services.revoke_binding(binding.kid, actor=agent)
    problem = _refused(other, subscriber)
    assert "revoked" in problem.detail


def test_subscriber_keeps_its_reason(directory_url, responder, agent):
    """The ordering account still revokes with the reason it gives (method subscriber)."""
    owner, _ = _client(directory_url, agent, "owner@example.com")
    leaf = _issue(owner, responder, "app.example.com")
    owner.revoke(leaf, 1)
    assert Certificate.objects.get().revocation_reason == "keyCompromise"
    event = AuditEvent.objects.get(action="acme_certificate_revoked")
    assert event.details["method"] == "subscriber"
    assert "requested_reason" not in event.details
