"""http-01 and dns-01 validation: a stub DNS server (ACME_DNS_RESOLVER) and an http-01
responder on loopback; private addresses, redirects off ports 80/443 and the failed
validation limit."""

from __future__ import annotations

import josepy as jose
import pytest

from requests_app.acme import services as acme_services
from requests_app.acme import validation
from requests_app.acme.models import Challenge
from requests_app.models import AuditEvent
from tests.helpers.acme import HTTP01Responder, Signer, StubDNS

pytestmark = pytest.mark.django_db

ERR = "urn:ietf:params:acme:error:"


@pytest.fixture
def dns(settings):
    with StubDNS() as server:
        settings.ACME_DNS_RESOLVER = server.address
        settings.ACME_VALIDATION_TIMEOUT = 2.0
        yield server


@pytest.fixture
def signer(client, agent, empty_cache):
    binding, key = acme_services.create_binding(
        email="ops@example.com", names=["app.example.com", "*.example.com"], actor=agent
    )
    signer = Signer(client)
    assert signer.register(binding.kid, key).status_code == 201
    return signer


def _path(url: str) -> str:
    return url.removeprefix("http://testserver")


def order_challenge(signer, name: str, kind: str) -> tuple[dict, dict, str]:
    """A new order for name: (order, the challenge of kind, its key authorization)."""
    order = signer.post("/acme/new-order", {"identifiers": [{"type": "dns", "value": name}]}).json()
    authz = signer.post(_path(order["authorizations"][0]), None).json()
    challenge = next(c for c in authz["challenges"] if c["type"] == kind)
    thumb = signer.key.public_key().thumbprint()
    key_auth = f"{challenge['token']}.{jose.b64.b64encode(thumb).decode()}"
    return order, challenge, key_auth


def test_dns01_valid_through_the_configured_resolver(signer, dns):
    """The TXT record holds base64url(SHA-256(key authorization)): valid, the order ready,
    and the challenge says where it looked; the response links its authorization (up)."""
    order, challenge, key_auth = order_challenge(signer, "*.example.com", "dns-01")
    dns.records[("_acme-challenge.example.com", "TXT")] = [
        "other",
        validation.dns01_value(key_auth),
    ]
    response = signer.post(_path(challenge["url"]), {})
    assert response.status_code == 200
    assert response.json()["status"] == "valid"
    assert 'rel="up"' in response["Link"] and order["authorizations"][0] in response["Link"]
    assert (
        signer.post(_path(order["authorizations"][0].replace("authz", "authz")), None).json()[
            "status"
        ]
        == "valid"
    )
    stored = Challenge.objects.get(slug=challenge["url"].rsplit("/", 1)[-1])
    assert dns.address in stored.validated_from
    order_now = signer.post(_path(response.json()["url"]).replace("chall", "chall"), None)
    assert order_now.status_code == 200
    assert AuditEvent.objects.filter(action="acme_challenge_valid").count() == 1


def test_dns01_wrong_value_is_invalid(signer, dns):
    """A TXT record with another value: incorrectResponse, order invalid."""
    order, challenge, _ = order_challenge(signer, "app.example.com", "dns-01")
    dns.records[("_acme-challenge.app.example.com", "TXT")] = ["not-it"]
    body = signer.post(_path(challenge["url"]), {}).json()
    assert body["status"] == "invalid"
    assert body["error"]["type"] == ERR + "incorrectResponse"
    assert (
        signer.post(_path(order["finalize"].removesuffix("/finalize")), None).json()["status"]
        == "invalid"
    )


def test_dns01_missing_record(signer, dns):
    """No TXT record at all: a dns problem."""
    _, challenge, _ = order_challenge(signer, "app.example.com", "dns-01")
    body = signer.post(_path(challenge["url"]), {}).json()
    assert body["error"]["type"] == ERR + "dns"


def test_http01_refuses_private_addresses(signer, dns, settings):
    """Without ACME_HTTP01_ADDRESS, a name resolving to loopback is not contacted."""
    settings.ACME_ALLOW_PRIVATE_ADDRESSES = False
    dns.records[("app.example.com", "A")] = ["127.0.0.1"]
    with HTTP01Responder() as responder:
        _, challenge, key_auth = order_challenge(signer, "app.example.com", "http-01")
        responder.answers[challenge["token"]] = key_auth
        body = signer.post(_path(challenge["url"]), {}).json()
    assert body["status"] == "invalid"
    assert body["error"]["type"] == ERR + "rejectedIdentifier"
    assert responder.hosts == []


def test_http01_follows_no_redirect_off_ports_80_and_443(signer, settings):
    """A redirect to another port is not followed: invalid, connection problem."""
    with HTTP01Responder() as responder:
        settings.ACME_HTTP01_ADDRESS = "127.0.0.1"
        settings.ACME_HTTP01_PORT = responder.port
        _, challenge, key_auth = order_challenge(signer, "app.example.com", "http-01")
        responder.redirects[challenge["token"]] = "http://app.example.com:8080/elsewhere"
        body = signer.post(_path(challenge["url"]), {}).json()
    assert body["status"] == "invalid"
    assert body["error"]["type"] == ERR + "connection"
    assert "8080" in body["error"]["detail"]


def test_http01_follows_a_redirect_on_port_80(signer, settings):
    """A redirect to another path on port 80 is followed (to the configured address)."""
    with HTTP01Responder() as responder:
        settings.ACME_HTTP01_ADDRESS = "127.0.0.1"
        settings.ACME_HTTP01_PORT = responder.port
        _, challenge, key_auth = order_challenge(signer, "app.example.com", "http-01")
        responder.redirects[challenge["token"]] = (
            "http://app.example.com/.well-known/acme-challenge/moved"
        )
        responder.answers["moved"] = key_auth
        body = signer.post(_path(challenge["url"]), {}).json()
    assert body["status"] == "valid", body


def test_http01_connection_refused_is_invalid_not_a_500(signer, settings):
    """Nothing listening: the challenge is invalid with a connection problem."""
    with HTTP01Responder() as responder:
        port = responder.port
    settings.ACME_HTTP01_ADDRESS = "127.0.0.1"
    settings.ACME_HTTP01_PORT = port
    _, challenge, _ = order_challenge(signer, "app.example.com", "http-01")
    response = signer.post(_path(challenge["url"]), {})
    assert response.status_code == 200
    assert response.json()["error"]["type"] == ERR + "connection"


def test_failed_validation_limit(signer, dns, settings):
    """Past ACME_FAILED_VALIDATION_RATE_LIMIT failures, the next answer is rateLimited and
    the challenge stays pending."""
    settings.ACME_FAILED_VALIDATION_RATE_LIMIT = "1/3600"
    _, first, _ = order_challenge(signer, "app.example.com", "dns-01")
    assert signer.post(_path(first["url"]), {}).json()["status"] == "invalid"
    _, second, _ = order_challenge(signer, "app.example.com", "dns-01")
    response = signer.post(_path(second["url"]), {})
    assert response.status_code == 429
    assert response.json()["type"] == ERR + "rateLimited"
    assert Challenge.objects.get(slug=second["url"].rsplit("/", 1)[-1]).status == "pending"


def test_address_allowed(settings):
    """Private, loopback, link-local and reserved addresses are refused unless allowed."""
    settings.ACME_ALLOW_PRIVATE_ADDRESSES = False
    for address in ("10.0.0.1", "127.0.0.1", "169.254.169.254", "::1", "fd00::1", "0.0.0.0"):  # noqa: S104
        assert not validation.address_allowed(address)
    assert validation.address_allowed("8.8.8.8")
    settings.ACME_ALLOW_PRIVATE_ADDRESSES = True
    assert validation.address_allowed("10.0.0.1")
