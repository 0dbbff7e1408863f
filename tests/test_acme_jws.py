"""The ACME server's JWS checks and account operations, through Django's test client:
every refusal is a problem document and changes nothing."""

from __future__ import annotations

import json

import josepy as jose
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from requests_app.acme import services as acme_services
from requests_app.acme import validation
from requests_app.acme.models import Account, ExternalAccountBinding
from requests_app.models import AuditEvent, CertificateRequest
from tests.helpers.acme import Signer, StubDNS, account_key, new_key_and_csr

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"
ERR = "urn:ietf:params:acme:error:"


@pytest.fixture
def binding(agent, empty_cache):
    return acme_services.create_binding(
        email="ops@example.com", names=["app.example.com"], actor=agent
    )


@pytest.fixture
def signer(client, binding):
    """A registered account's signer."""
    signer = Signer(client)
    assert signer.register(binding[0].kid, binding[1]).status_code == 201
    return signer


def problem(response, type_: str, status: int = 400) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    assert response["Replay-Nonce"]
    doc = json.loads(response.content)
    assert doc["type"] == ERR + type_, doc
    return doc


def test_directory_and_nonce(client):
    """The directory names every resource and says EAB is required; new-nonce hands out one."""
    directory = client.get("/acme/directory").json()
    for name in ("newNonce", "newAccount", "newOrder", "revokeCert", "keyChange", "renewalInfo"):
        assert directory[name].startswith("http://testserver/acme/")
    assert directory["meta"]["externalAccountRequired"] is True
    first, second = client.head("/acme/new-nonce"), client.get("/acme/new-nonce")
    assert first.status_code == 200 and second.status_code == 204
    assert first["Replay-Nonce"] != second["Replay-Nonce"]
    assert first["Cache-Control"] == "no-store"


def test_register_binds_the_binding_once(signer, binding):
    """The account is bound to its binding, with an audit row."""
    stored = ExternalAccountBinding.objects.get(kid=binding[0].kid)
    assert stored.account.slug == signer.kid.rsplit("/", 1)[-1]
    assert AuditEvent.objects.filter(action="acme_account_created").count() == 1


def test_alg_none_is_refused(client, binding):
    """A JWS with alg "none" (built from josepy's base64 and JWK helpers): badSignatureAlgorithm."""
    key = account_key()
    nonce = client.head("/acme/new-nonce")["Replay-Nonce"]
    protected = {
        "alg": "none",
        "jwk": key.public_key().to_partial_json(),
        "nonce": nonce,
        "url": "http://testserver/acme/new-account",
    }
    body = {
        "protected": jose.b64.b64encode(json.dumps(protected).encode()).decode(),
        "payload": jose.b64.b64encode(json.dumps({"termsOfServiceAgreed": True}).encode()).decode(),
        "signature": "",
    }
    response = client.post(
        "/acme/new-account", json.dumps(body), content_type="application/jose+json"
    )
    doc = problem(response, "badSignatureAlgorithm")
    assert "ES256" in doc["algorithms"]
    assert not Account.objects.exists()


def test_hmac_outside_eab_is_refused(client):
    """An account request signed with HS256: badSignatureAlgorithm."""
    signer = Signer(client, key=jose.JWKOct(key=b"k" * 32))
    nonce = signer.nonce()
    from acme import jws as acme_jws

    signed = acme_jws.JWS.sign(
        b"{}",
        key=signer.key,
        alg=jose.HS256,
        nonce=jose.decode_b64jose(nonce),
        url="http://testserver/acme/new-account",
        kid="whatever",
    )
    response = client.post(
        "/acme/new-account", signed.json_dumps(), content_type="application/jose+json"
    )
    problem(response, "badSignatureAlgorithm")


def test_replayed_nonce_is_refused(signer):
    """The same nonce twice: the second is badNonce (with a fresh nonce to retry)."""
    nonce = signer.nonce()
    assert (
        signer.post(signer.kid.removeprefix("http://testserver"), None, nonce=nonce).status_code
        == 200
    )
    response = signer.post(signer.kid.removeprefix("http://testserver"), None, nonce=nonce)
    problem(response, "badNonce")


def test_made_up_nonce_is_refused(signer):
    """A nonce the server never made: badNonce."""
    response = signer.post("/acme/new-order", {"identifiers": []}, nonce="bm90LWEtbm9uY2U")
    problem(response, "badNonce")


def test_wrong_key_is_refused(signer):
    """The account's kid with a signature by another key: unauthorized, no order."""
    response = signer.post(
        "/acme/new-order",
        {"identifiers": [{"type": "dns", "value": "app.example.com"}]},
        key=account_key(),
    )
    problem(response, "unauthorized", 403)
    assert not AuditEvent.objects.filter(action="acme_order_created").exists()


def test_url_mismatch_is_refused(signer):
    """A JWS whose url header names another resource: unauthorized."""
    response = signer.post(
        "/acme/new-order",
        {"identifiers": [{"type": "dns", "value": "app.example.com"}]},
        url="http://testserver/acme/revoke-cert",
    )
    problem(response, "unauthorized", 403)


def test_wrong_content_type_is_refused(signer):
    """application/json instead of application/jose+json: 415 malformed."""
    response = signer.post("/acme/new-order", {"identifiers": []}, content_type="application/json")
    problem(response, "malformed", 415)


def test_unknown_kid_is_refused(client, signer):
    """A kid that names no account: accountDoesNotExist."""
    response = signer.post(
        "/acme/new-order", {"identifiers": []}, kid="http://testserver/acme/acct/nosuch"
    )
    problem(response, "accountDoesNotExist")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"protected": 5}',
        b'{"protected": "!!", "payload": "", "signature": ""}',
        b'{"signatures": []}',
        b'{"protected": "e30", "payload": "", "signature": ""}',
    ],
)
def test_garbage_is_malformed_never_a_500(client, body):
    """Bodies that are no JWS at all: malformed problem documents."""
    response = client.post("/acme/new-account", body, content_type="application/jose+json")
    assert response.status_code in (400, 403, 415)
    assert response["Content-Type"] == PROBLEM


def test_get_on_a_post_resource_is_refused(client):
    """GET on new-account: 405 with a problem document."""
    response = client.get("/acme/new-account")
    problem(response, "malformed", 405)


def test_deactivated_account_can_do_nothing(signer):
    """After deactivation the account is refused (unauthorized), with audit rows."""
    path = signer.kid.removeprefix("http://testserver")
    response = signer.post(path, {"status": "deactivated"})
    assert response.status_code == 200 and response.json()["status"] == "deactivated"
    assert AuditEvent.objects.filter(action="acme_account_deactivated").count() == 1
    response = signer.post(
        "/acme/new-order", {"identifiers": [{"type": "dns", "value": "app.example.com"}]}
    )
    problem(response, "unauthorized", 403)


def test_key_rollover(signer):
    """keyChange: the new key signs from then on; the old one is refused."""
    old_key, new_key = signer.key, account_key()
    from acme import jws as acme_jws

    inner = acme_jws.JWS.sign(
        json.dumps({"account": signer.kid, "oldKey": old_key.public_key().to_json()}).encode(),
        key=new_key,
        alg=jose.ES256,
        nonce=None,
        url="http://testserver/acme/key-change",
    )
    response = signer.post("/acme/key-change", json.loads(inner.json_dumps()))
    assert response.status_code == 200, response.content
    path = signer.kid.removeprefix("http://testserver")
    problem(signer.post(path, None), "unauthorized", 403)
    assert signer.post(path, None, key=new_key).status_code == 200
    assert AuditEvent.objects.filter(action="acme_account_key_changed").count() == 1


def test_key_rollover_to_a_key_in_use_is_a_conflict(signer, client, agent):
    """Rolling over to another account's key: 409 naming that account."""
    other_binding = acme_services.create_binding(
        email="b@example.com", names=["b.example.com"], actor=agent
    )
    other = Signer(client)
    other.register(other_binding[0].kid, other_binding[1])
    from acme import jws as acme_jws

    inner = acme_jws.JWS.sign(
        json.dumps({"account": signer.kid, "oldKey": signer.key.public_key().to_json()}).encode(),
        key=other.key,
        alg=jose.ES256,
        nonce=None,
        url="http://testserver/acme/key-change",
    )
    response = signer.post("/acme/key-change", json.loads(inner.json_dumps()))
    assert response.status_code == 409
    assert response["Location"] == other.kid


def test_expired_binding_is_refused(client, binding):
    """A binding past its expiry binds no account."""
    ExternalAccountBinding.objects.filter(pk=binding[0].pk).update(
        expires_at="2000-01-01T00:00:00Z"
    )
    response = Signer(client).register(binding[0].kid, binding[1])
    doc = problem(response, "unauthorized", 403)
    assert "expired" in doc["detail"]
    assert not Account.objects.exists()


def test_new_account_rate_limit_per_address(client, agent, settings):
    """Past ACME_NEW_ACCOUNT_RATE_LIMIT from one address: rateLimited with Retry-After."""
    settings.ACME_NEW_ACCOUNT_RATE_LIMIT = "1/3600"
    first = acme_services.create_binding(
        email="a@example.com", names=["a.example.com"], actor=agent
    )
    second = acme_services.create_binding(
        email="b@example.com", names=["b.example.com"], actor=agent
    )
    assert Signer(client).register(first[0].kid, first[1]).status_code == 201
    response = Signer(client).register(second[0].kid, second[1])
    problem(response, "rateLimited", 429)
    assert int(response["Retry-After"]) > 0
    assert Account.objects.count() == 1


def test_new_order_rate_limit_per_account(signer, settings):
    """Past ACME_NEW_ORDER_RATE_LIMIT: rateLimited with Retry-After, no order."""
    settings.ACME_NEW_ORDER_RATE_LIMIT = "1/3600"
    order = {"identifiers": [{"type": "dns", "value": "app.example.com"}]}
    assert signer.post("/acme/new-order", order).status_code == 201
    response = signer.post("/acme/new-order", order)
    problem(response, "rateLimited", 429)
    assert AuditEvent.objects.filter(action="acme_order_created").count() == 1


def test_order_for_another_accounts_resources_is_refused(signer, client, agent):
    """One account cannot read or answer another's order."""
    response = signer.post(
        "/acme/new-order", {"identifiers": [{"type": "dns", "value": "app.example.com"}]}
    )
    order_path = response["Location"].removeprefix("http://testserver")
    other_binding = acme_services.create_binding(
        email="b@example.com", names=["b.example.com"], actor=agent
    )
    other = Signer(client)
    other.register(other_binding[0].kid, other_binding[1])
    problem(other.post(order_path, None), "unauthorized", 403)


@pytest.mark.parametrize(
    ("identifier", "type_"),
    [
        ({"type": "ip", "value": "192.0.2.1"}, "unsupportedIdentifier"),
        ({"type": "dns", "value": "bad..name"}, "rejectedIdentifier"),
        ({"type": "dns", "value": "*.com"}, "rejectedIdentifier"),
    ],
)
def test_bad_identifiers_are_refused(signer, identifier, type_):
    """Orders for what the CA does not issue: a problem document, no order."""
    problem(signer.post("/acme/new-order", {"identifiers": [identifier]}), type_)
    assert not AuditEvent.objects.filter(action="acme_order_created").exists()


def test_wildcard_orders_offer_dns01_only(signer):
    """A wildcard's authorization has only a dns-01 challenge, and says wildcard."""
    response = signer.post(
        "/acme/new-order", {"identifiers": [{"type": "dns", "value": "*.example.com"}]}
    )
    authz_path = response.json()["authorizations"][0].removeprefix("http://testserver")
    authz = signer.post(authz_path, None).json()
    assert authz["wildcard"] is True and authz["identifier"]["value"] == "example.com"
    assert [c["type"] for c in authz["challenges"]] == ["dns-01"]


def test_without_eab_orders_go_to_the_agents(client, settings, empty_cache, ca, csr_factory):
    """ACME_REQUIRE_EAB=False: an account needs a mailto: contact, and its finalized order
    waits in the queue (processing, Retry-After) since no agent approved any name."""
    settings.ACME_REQUIRE_EAB = False
    signer = Signer(client)
    refused = signer.post("/acme/new-account", {"termsOfServiceAgreed": True}, kid=None)
    problem(refused, "invalidContact")
    response = signer.post(
        "/acme/new-account",
        {"contact": ["mailto:web@example.com"], "termsOfServiceAgreed": True},
        kid=None,
    )
    assert response.status_code == 201
    signer.kid = response["Location"]
    order = signer.post(
        "/acme/new-order", {"identifiers": [{"type": "dns", "value": "app.example.com"}]}
    )
    assert order.status_code == 201
    assert client.get("/acme/directory").json()["meta"]["externalAccountRequired"] is False
    authz_path = order.json()["authorizations"][0].removeprefix("http://testserver")
    challenge = next(
        c for c in signer.post(authz_path, None).json()["challenges"] if c["type"] == "dns-01"
    )
    key_auth = (
        f"{challenge['token']}.{jose.b64.b64encode(signer.key.public_key().thumbprint()).decode()}"
    )
    with StubDNS() as dns:
        settings.ACME_DNS_RESOLVER = dns.address
        dns.records[("_acme-challenge.app.example.com", "TXT")] = [validation.dns01_value(key_auth)]
        assert (
            signer.post(challenge["url"].removeprefix("http://testserver"), {}).json()["status"]
            == "valid"
        )
    _, csr_pem = new_key_and_csr("app.example.com")
    csr_der = x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER)
    finalize_path = order.json()["finalize"].removeprefix("http://testserver")
    response = signer.post(finalize_path, {"csr": jose.b64.b64encode(csr_der).decode()})
    assert response.status_code == 200 and response.json()["status"] == "processing"
    assert int(response["Retry-After"]) > 0
    req = CertificateRequest.objects.get(channel="acme")
    assert (
        req.status == CertificateRequest.Status.PENDING and req.requester_email == "web@example.com"
    )
    cert_path = "/acme/cert/" + response["Location"].rsplit("/", 1)[-1]
    problem(signer.post(cert_path, None), "malformed", 404)


_values = st.one_of(
    st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=2)
)


@given(
    header=st.dictionaries(
        st.sampled_from(["alg", "jwk", "kid", "nonce", "url", "crit", "b64"]), _values, max_size=6
    ),
    payload=st.binary(max_size=40),
)
@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_hostile_headers_never_crash(client, header, payload):
    """Arbitrary protected headers and payloads: always a problem document, never a 500."""
    body = {
        "protected": jose.b64.b64encode(json.dumps(header).encode()).decode(),
        "payload": jose.b64.b64encode(payload).decode(),
        "signature": jose.b64.b64encode(b"sig").decode(),
    }
    response = client.post(
        "/acme/new-order", json.dumps(body), content_type="application/jose+json"
    )
    assert response.status_code in (400, 403)
    assert response["Content-Type"] == PROBLEM


@pytest.mark.parametrize(
    "where",
    ["kid", "payload-key", "payload-value", "replaces"],
)
def test_a_nul_anywhere_in_a_jws_is_malformed_never_a_500(signer, where):
    """A NUL (JSON's \\u0000) in the protected header or the payload is refused before any
    lookup: PostgreSQL refuses NUL in text, which the CI's PostgreSQL pass turned into a 500."""
    payload = {"identifiers": [{"type": "dns", "value": "app.example.com"}]}
    kid = ...
    if where == "kid":
        kid = "http://testserver/acme/acct/\x00"
    elif where == "payload-key":
        payload["\x00"] = 1
    elif where == "payload-value":
        payload["identifiers"][0]["value"] = "app\x00.example.com"
    else:
        payload["replaces"] = "a\x00.b"
    orders_before = CertificateRequest.objects.count()
    response = signer.post("/acme/new-order", payload, kid=kid)
    problem(response, "malformed")
    assert "NUL" in response.json()["detail"]
    assert CertificateRequest.objects.count() == orders_before
