"""ACME driven with certbot's `acme` client library against a live portal and an http-01
responder on loopback: the whole flow, the agent queue, and the refusals."""

from __future__ import annotations

import datetime as dt

import josepy as jose
import pytest
from acme import errors as acme_errors
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.urls import reverse

from requests_app import services
from requests_app.acme import services as acme_services
from requests_app.acme.models import Order
from requests_app.models import Certificate, CertificateRequest
from tests.helpers.acme import (
    HTTP01Responder,
    account_key,
    acme_client,
    answer_http01,
    deadline,
    new_key_and_csr,
    openssl_verify,
    register,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def responder(settings, empty_cache):
    with HTTP01Responder() as server:
        settings.ACME_HTTP01_ADDRESS = "127.0.0.1"
        settings.ACME_HTTP01_PORT = server.port
        settings.ACME_ALLOW_PRIVATE_ADDRESSES = True
        settings.ACME_VALIDATION_TIMEOUT = 3.0
        yield server


@pytest.fixture
def directory_url(live_server, ca):
    return live_server.url + "/acme/directory"


@pytest.fixture
def binding(agent):
    return acme_services.create_binding(
        email="ops@example.com", names=["app.example.com", "*.corp.example.com"], actor=agent
    )


def test_register_order_validate_finalize_download(tmp_path, directory_url, responder, binding, ca):
    """EAB account, order, http-01 on loopback, finalize, download: openssl verifies the
    chain, and the certificate went through the queue as an "acme" request."""
    kid, hmac_key = binding[0].kid, binding[1]
    acme = acme_client(directory_url, account_key())
    regr = register(acme, kid=kid, hmac_key=hmac_key)
    assert regr.body.status == "valid"
    _, csr = new_key_and_csr("app.example.com", "www.corp.example.com")
    order = acme.new_order(csr)
    answer_http01(acme, order, responder)
    assert "app.example.com" in responder.hosts
    done = acme.poll_and_finalize(order, deadline())
    assert done.body.status == messages.STATUS_VALID
    result = openssl_verify(tmp_path, ca.certificate_pem, done.fullchain_pem)
    assert result.returncode == 0, result.stdout + result.stderr
    req = CertificateRequest.objects.get(channel="acme")
    assert req.status == CertificateRequest.Status.COMPLETE
    assert sorted(req.certificate.sans) == ["DNS:app.example.com", "DNS:www.corp.example.com"]
    assert Order.objects.get().request == req


def test_name_outside_approval_waits_for_an_agent_who_approves(
    directory_url, responder, binding, agent_client
):
    """An order for a name outside the binding stays processing (Retry-After) until an agent
    approves it on the agent pages; then the client's poll returns the certificate."""
    acme = acme_client(directory_url, account_key())
    register(acme, kid=binding[0].kid, hmac_key=binding[1])
    _, csr = new_key_and_csr("other.example.net")
    order = acme.new_order(csr)
    answer_http01(acme, order, responder)
    order = acme.poll_authorizations(order, deadline())
    processing = acme.begin_finalization(order)
    assert processing.body.status == messages.STATUS_PROCESSING
    req = CertificateRequest.objects.get(channel="acme")
    assert req.status == CertificateRequest.Status.PENDING
    assert not Certificate.objects.exists()
    detail = agent_client.get(
        reverse("agent:request_detail", args=[req.public_id])
    ).content.decode()
    assert binding[0].kid in detail  # the ACME panel names the binding and the challenge
    assert "http-01" in detail and "other.example.net" in detail
    queue = agent_client.get(reverse("agent:request_list")).content.decode()
    assert 'class="acme-mark"' in queue
    response = agent_client.post(reverse("agent:approve", args=[req.public_id]), {})
    assert response.status_code == 302
    done = acme.poll_finalization(processing, deadline(), fetch_alternative_chains=True)
    assert done.body.status == messages.STATUS_VALID
    assert "BEGIN CERTIFICATE" in done.fullchain_pem


def test_name_outside_approval_rejected_by_an_agent(
    directory_url, responder, binding, agent_client
):
    """A rejection makes the order invalid, the agent's reason in the problem detail."""
    acme = acme_client(directory_url, account_key())
    register(acme, kid=binding[0].kid, hmac_key=binding[1])
    _, csr = new_key_and_csr("other.example.net")
    order = acme.new_order(csr)
    answer_http01(acme, order, responder)
    order = acme.poll_authorizations(order, deadline())
    processing = acme.begin_finalization(order)
    req = CertificateRequest.objects.get(channel="acme")
    agent_client.post(
        reverse("agent:reject", args=[req.public_id]), {"reason": "not our host, ask IT"}
    )
    with pytest.raises(acme_errors.IssuanceError) as info:
        acme.poll_finalization(processing, deadline())
    assert "not our host, ask IT" in info.value.error.detail
    assert not Certificate.objects.exists()


def test_account_without_eab_is_refused(directory_url, ca):
    """No EAB: externalAccountRequired, and no account."""
    acme = acme_client(directory_url, account_key())
    with pytest.raises(messages.Error) as info:
        register(acme, kid=None, hmac_key=None)
    assert info.value.typ == "urn:ietf:params:acme:error:externalAccountRequired"


def test_wrong_eab_mac_is_refused(directory_url, binding):
    """An EAB made with another HMAC key: unauthorized, and the binding stays unused."""
    acme = acme_client(directory_url, account_key())
    other_key = acme_services.b64url(b"x" * 32)
    with pytest.raises(messages.Error) as info:
        register(acme, kid=binding[0].kid, hmac_key=other_key)
    assert info.value.typ == "urn:ietf:params:acme:error:unauthorized"
    binding[0].refresh_from_db()
    assert binding[0].account is None


def test_revoked_and_used_bindings_are_refused(directory_url, binding, agent):
    """A binding binds one account once; a revoked one binds none."""
    first = acme_client(directory_url, account_key())
    register(first, kid=binding[0].kid, hmac_key=binding[1])
    second = acme_client(directory_url, account_key())
    with pytest.raises(messages.Error) as info:
        register(second, kid=binding[0].kid, hmac_key=binding[1])
    assert "used already" in info.value.detail
    other, key = acme_services.create_binding(
        email="b@example.com", names=["b.example.com"], actor=agent
    )
    acme_services.revoke_binding(other.kid, actor=agent)
    with pytest.raises(messages.Error) as info:
        register(second, kid=other.kid, hmac_key=key)
    assert "revoked" in info.value.detail


def test_csr_names_differing_from_the_order_are_refused(directory_url, responder, binding):
    """Finalize with a CSR for other names: badCSR, nothing submitted."""
    acme = acme_client(directory_url, account_key())
    register(acme, kid=binding[0].kid, hmac_key=binding[1])
    _, csr = new_key_and_csr("app.example.com")
    order = acme.new_order(csr)
    answer_http01(acme, order, responder)
    order = acme.poll_authorizations(order, deadline())
    _, other_csr = new_key_and_csr("app.example.com", "evil.example.com")
    with pytest.raises(messages.Error) as info:
        acme.begin_finalization(order.update(csr_pem=other_csr))
    assert info.value.typ == "urn:ietf:params:acme:error:badCSR"
    assert not CertificateRequest.objects.exists()
    assert not Certificate.objects.exists()


def test_wrong_token_answer_makes_the_challenge_invalid(directory_url, responder, binding):
    """A responder answering something else: the authorization and order are invalid."""
    acme = acme_client(directory_url, account_key())
    register(acme, kid=binding[0].kid, hmac_key=binding[1])
    _, csr = new_key_and_csr("app.example.com")
    order = acme.new_order(csr)
    answer_http01(acme, order, responder, wrong=True)
    with pytest.raises(acme_errors.ValidationError) as info:
        acme.poll_authorizations(order, deadline())
    error = info.value.failed_authzrs[0].body.challenges[0].error
    assert error.typ == "urn:ietf:params:acme:error:incorrectResponse"
    assert not CertificateRequest.objects.exists()


def test_revoke_by_account_then_ocsp_and_ari(directory_url, responder, binding):
    """The account revokes its certificate; the portal's record says revoked, and ARI
    suggests renewing now."""
    acme = acme_client(directory_url, account_key())
    register(acme, kid=binding[0].kid, hmac_key=binding[1])
    _, csr = new_key_and_csr("app.example.com")
    order = acme.new_order(csr)
    answer_http01(acme, order, responder)
    done = acme.poll_and_finalize(order, deadline())
    leaf = x509.load_pem_x509_certificate(done.fullchain_pem.encode())
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    renew_at, _ = acme.renewal_time(done.fullchain_pem.encode())
    renew_at = renew_at.astimezone(dt.UTC)
    assert (
        leaf.not_valid_after_utc - lifetime / 3
        <= renew_at
        <= leaf.not_valid_after_utc - lifetime / 6
    )
    acme.revoke(leaf, 1)
    cert = Certificate.objects.get()
    assert cert.status == Certificate.Status.REVOKED
    assert cert.revocation_reason == "keyCompromise"
    renew_at, _ = acme.renewal_time(done.fullchain_pem.encode())
    assert renew_at.astimezone(dt.UTC) <= dt.datetime.now(dt.UTC)
    with pytest.raises(messages.Error) as info:
        acme.revoke(leaf, 1)
    assert info.value.typ == "urn:ietf:params:acme:error:alreadyRevoked"
    assert services.verify_audit().intact


def test_revoke_with_the_certificate_key(directory_url, responder, binding):
    """revokeCert signed by the certificate's own key (a jwk, no account) revokes it."""
    acme = acme_client(directory_url, account_key())
    register(acme, kid=binding[0].kid, hmac_key=binding[1])
    key_pem, csr = new_key_and_csr("app.example.com")
    order = acme.new_order(csr)
    answer_http01(acme, order, responder)
    done = acme.poll_and_finalize(order, deadline())
    leaf = x509.load_pem_x509_certificate(done.fullchain_pem.encode())
    stranger = acme_client(directory_url, account_key())
    with pytest.raises(messages.Error) as info:
        stranger.revoke(leaf, 4)
    assert info.value.typ == "urn:ietf:params:acme:error:unauthorized"
    cert_key = jose.JWKEC(key=serialization.load_pem_private_key(key_pem, None))
    acme_client(directory_url, cert_key).revoke(leaf, 4)
    assert Certificate.objects.get().revocation_reason == "superseded"
