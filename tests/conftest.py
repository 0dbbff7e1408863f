"""Shared fixtures: a CA, agents, CSRs, pending requests, a real SMTP server.

Helpers that tests call directly (make_csr, openssl_csr, SMTPServer, race, ...) live in
tests/helpers/; import them from there, not from this file.
"""

from __future__ import annotations

import pytest

from requests_app import keys, services
from tests.helpers.csrs import make_csr
from tests.helpers.mailbox import confirmed
from tests.helpers.mfa import login_verified
from tests.helpers.servers import SMTPServer


@pytest.fixture
def empty_cache():
    """Throttle counters, shared pages and downloads live in Django's cache, which outlives
    each test's database: start and end with it empty."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _fresh_key_cache(settings, tmp_path):
    """Each test gets its own key directory and an empty key cache."""
    settings.CA_KEY_DIR = tmp_path / "ca-keys"
    keys.reset()
    yield
    keys.reset()


@pytest.fixture
def ca(db):
    """The default CA: a P-256 root."""
    return services.create_ca("CN=Test Root CA,O=ca-portal tests,C=US", key_type="p256")


@pytest.fixture
def csr_factory():
    return make_csr


@pytest.fixture
def agent(db, django_user_model):
    user = django_user_model.objects.create_user(
        "agent1", "agent1@example.test", "agent-pass-123", is_staff=True
    )
    user.groups.add(services.agents_group())
    return user


@pytest.fixture
def agent_client(client, agent):
    """The test client logged in as `agent`, past the second factor."""
    return login_verified(client, agent)


@pytest.fixture
def admin_client(client, admin_user):
    """pytest-django's admin_client, past the second factor."""
    return login_verified(client, admin_user)


@pytest.fixture
def pending_request(ca):
    return services.submit_request(
        profile="server",
        csr=make_csr(cn="www.example.test"),
        requester_email="admin@example.test",
        requester_name="Server Admin",
    )


@pytest.fixture
def smtp_server(settings):
    """A running SMTP server that the default mailer sends to (through EMAIL_URL's parser)."""
    from ca_portal.settings import build_mailers

    server = SMTPServer().start()
    settings.MAILERS = build_mailers(server.email_url, "")
    yield server
    server.stop()


#: The passphrase of server_key_cert's key.
SERVER_KEY_PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def server_key_cert(ca, agent, settings):
    """A personal certificate whose key the portal made (P-256, for speed), issued after
    the requester confirmed the address; its key opens with SERVER_KEY_PASSPHRASE."""
    settings.SERVER_KEY_TYPE = "p256"
    req = services.submit_request_with_server_key(
        profile="user",
        passphrase=SERVER_KEY_PASSPHRASE,
        requester_email="ada@example.test",
        requester_name="Ada Lovelace",
    )
    return services.approve_request(confirmed(req), agent=agent)
