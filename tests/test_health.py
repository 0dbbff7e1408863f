"""/healthz: what a load balancer asks before sending traffic to a node. Anonymous callers
learn ok or failing; staff and holders of HEALTHZ_TOKEN also learn why."""

import pytest

from requests_app import keys

TOKEN = "healthz-token-for-tests"


@pytest.fixture
def token(settings):
    settings.HEALTHZ_TOKEN = TOKEN
    return {"Authorization": f"Bearer {TOKEN}"}


def test_healthy(client, ca, token):
    """With a reachable database and an openable CA key the node reports ok."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    detailed = client.get("/healthz", headers=token)
    assert detailed.json() == {"status": "ok", "database": "ok", "ca_key": "ok"}


def test_no_ca_yet(client, db, token):
    """Without a CA the node cannot sign, and says so with 503."""
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "failing"}
    assert "no CA exists yet" in client.get("/healthz", headers=token).json()["ca_key"]


def test_wrong_passphrase(client, ca, settings, token, caplog):
    """A node with the wrong CA_KEY_PASSPHRASE is unhealthy; anonymous callers learn only
    that, the token names the CA, and neither the key file nor the setting is named."""
    settings.CA_KEY_PASSPHRASE = "not-the-passphrase"
    keys.reset()
    anonymous = client.get("/healthz")
    assert anonymous.status_code == 503
    assert anonymous.json() == {"status": "failing"}
    detailed = client.get("/healthz", headers=token)
    assert detailed.status_code == 503
    assert "Test Root CA" in detailed.json()["ca_key"]
    for response in (anonymous, detailed):
        body = response.content.decode()
        assert "PRIVATE KEY" not in body
        assert "CA_KEY_PASSPHRASE" not in body
        assert ".pem" not in body and str(settings.CA_KEY_DIR) not in body
    assert "CA_KEY_PASSPHRASE" in caplog.text  # the operator finds the reason in the log


def test_details_for_staff_only(client, ca, agent, django_user_model, settings):
    """Staff see the details; a logged-in non-staff user, a wrong token or no token do not."""
    settings.HEALTHZ_TOKEN = TOKEN
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        assert client.get("/healthz", headers=headers).json() == {"status": "ok"}
    settings.HEALTHZ_TOKEN = ""  # no token configured: an empty bearer opens nothing
    assert client.get("/healthz", headers={"Authorization": "Bearer "}).json() == {"status": "ok"}
    user = django_user_model.objects.create_user("plain", "p@example.test", "pass-12345678")
    client.force_login(user)
    assert client.get("/healthz").json() == {"status": "ok"}
    client.force_login(agent)  # agents are staff
    assert client.get("/healthz").json()["ca_key"] == "ok"
