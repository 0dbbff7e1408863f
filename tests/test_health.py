"""/healthz: what a load balancer asks before sending traffic to a node."""

from requests_app import keys


def test_healthy(client, ca):
    """With a reachable database and an openable CA key the node reports ok."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "ca_key": "ok"}


def test_no_ca_yet(client, db):
    """Without a CA the node cannot sign, and says so with 503."""
    response = client.get("/healthz")
    assert response.status_code == 503
    assert "no CA exists yet" in response.json()["ca_key"]


def test_wrong_passphrase(client, ca, settings):
    """A node with the wrong CA_KEY_PASSPHRASE is unhealthy, and the reason names the CA."""
    settings.CA_KEY_PASSPHRASE = "not-the-passphrase"
    keys.reset()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert "Test Root CA" in response.json()["ca_key"]
    assert "PRIVATE KEY" not in response.content.decode()
