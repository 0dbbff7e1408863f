"""The agent page "ACME accounts": list, create (the HMAC key shown once), revoke; and the
abuse of it: anonymous users, non-agents, agents without the second factor, a forged form
(no CSRF token), and every place a key could leak (a second page view, the audit row, the
logs, the cache)."""

from __future__ import annotations

import base64
import json
import logging
import re

import pytest
from django.test import Client
from django.urls import reverse

from requests_app.acme import services as acme_services
from requests_app.acme.models import ExternalAccountBinding
from requests_app.models import AuditEvent
from tests.helpers.mfa import login_verified

pytestmark = pytest.mark.django_db

LIST = reverse("agent:acme_accounts")
CREATE = reverse("agent:acme_create_binding")
FORM = {
    "email": "ops@example.test",
    "names": "www.example.test, *.apps.example.test",
    "profile": "server",
    "days": "30",
}


def shown_key(response) -> str:
    match = re.search(r'id="eab-hmac-key">([A-Za-z0-9_-]+)<', response.content.decode())
    assert match, "the page shows no HMAC key"
    return match.group(1)


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_agent_creates_a_binding_and_sees_the_key_once(agent_client, agent, caplog):
    """The answer to the create form shows the kid and the key, which is the binding's real
    key; it is not cached, not logged, not in the audit row, and no later page shows it."""
    caplog.set_level(logging.DEBUG)
    response = agent_client.post(CREATE, FORM)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    binding = ExternalAccountBinding.objects.get()
    key = shown_key(response)
    assert acme_services.open_key(binding) == b64url_decode(key)
    assert binding.kid in response.content.decode()
    assert binding.names == ["www.example.test", "*.apps.example.test"]
    assert binding.created_by == agent
    assert key not in binding.hmac_key_sealed
    event = AuditEvent.objects.get(action="acme_binding_created")
    assert event.actor == agent
    assert key not in json.dumps(event.details)
    assert key not in caplog.text
    listing = agent_client.get(LIST)
    assert listing.status_code == 200
    assert binding.kid in listing.content.decode()
    assert key not in listing.content.decode()
    assert "unused" in listing.content.decode()
    assert key not in json.dumps(dict(agent_client.session.items()), default=str)


def test_the_nav_links_the_page_for_agents_only(agent_client, client, django_user_model):
    """Agents see "ACME accounts" in the navigation; others do not."""
    assert LIST.encode() in agent_client.get(reverse("agent:request_list")).content
    assert LIST.encode() not in Client().get(reverse("home")).content


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("names", "bad..name", "bad..name"),
        ("names", "   ", "required"),
        ("email", "not-an-address", "email"),
        ("days", "0", "greater than or equal to 1"),
        ("profile", "user", "not one of the available choices"),
    ],
)
def test_bad_input_is_shown_on_the_form_and_creates_nothing(agent_client, field, value, message):
    """A bad field is a 400 with the reason on the form; no binding, no audit row."""
    response = agent_client.post(CREATE, FORM | {field: value})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ExternalAccountBinding.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="acme_").exists()


def test_agent_revokes_a_binding(agent_client, agent):
    """Revoke marks the binding revoked (shown so, audited with the agent) and offers no
    second revoke; an unknown key ID is a message, not an error page."""
    binding, _ = acme_services.create_binding(
        email="ops@example.test", names=["www.example.test"], actor=agent
    )
    url = reverse("agent:acme_revoke_binding", args=[binding.kid])
    response = agent_client.post(url, follow=True)
    assert response.redirect_chain[-1][0] == LIST
    assert f"ACME binding {binding.kid}" in response.content.decode()
    binding.refresh_from_db()
    assert binding.is_revoked and binding.revoked_by == agent
    assert AuditEvent.objects.get(action="acme_binding_revoked").actor == agent
    assert url not in response.content.decode()
    again = agent_client.post(url, follow=True)
    assert "revoked already" in again.content.decode()
    unknown = agent_client.post(
        reverse("agent:acme_revoke_binding", args=["eab-unknown"]), follow=True
    )
    assert "no ACME account binding" in unknown.content.decode()
    assert AuditEvent.objects.filter(action="acme_binding_revoked").count() == 1


def test_anonymous_and_non_agents_are_refused(client, django_user_model, agent):
    """Anonymous GETs go to the login page, anonymous POSTs and non-agents get 403; nothing
    is created or revoked."""
    binding, _ = acme_services.create_binding(
        email="ops@example.test", names=["www.example.test"], actor=agent
    )
    revoke = reverse("agent:acme_revoke_binding", args=[binding.kid])
    anonymous = Client()
    assert anonymous.get(LIST).status_code == 302
    assert anonymous.post(CREATE, FORM).status_code == 403
    assert anonymous.post(revoke).status_code == 403
    user = django_user_model.objects.create_user("mallory", "m@example.test", "pw-123456789")
    mallory = login_verified(Client(), user)
    assert mallory.get(LIST).status_code == 403
    assert mallory.post(CREATE, FORM).status_code == 403
    assert mallory.post(revoke).status_code == 403
    assert ExternalAccountBinding.objects.count() == 1
    binding.refresh_from_db()
    assert not binding.is_revoked


def test_agent_without_second_factor_is_refused(agent):
    """An agent who logged in with the password alone is sent to the second factor (GET) or
    refused (POST); nothing is created or revoked."""
    binding, _ = acme_services.create_binding(
        email="ops@example.test", names=["www.example.test"], actor=agent
    )
    half = Client()
    half.force_login(agent)
    page = half.get(LIST)
    assert page.status_code == 302 and page["Location"].startswith(reverse("agent_verify"))
    assert half.post(CREATE, FORM).status_code == 403
    assert half.post(reverse("agent:acme_revoke_binding", args=[binding.kid])).status_code == 403
    assert ExternalAccountBinding.objects.count() == 1
    binding.refresh_from_db()
    assert not binding.is_revoked


def test_forms_need_the_csrf_token(agent):
    """A forged cross-site POST (no CSRF token) creates and revokes nothing."""
    binding, _ = acme_services.create_binding(
        email="ops@example.test", names=["www.example.test"], actor=agent
    )
    strict = login_verified(Client(enforce_csrf_checks=True), agent)
    assert strict.post(CREATE, FORM).status_code == 403
    assert strict.post(reverse("agent:acme_revoke_binding", args=[binding.kid])).status_code == 403
    assert ExternalAccountBinding.objects.count() == 1
    binding.refresh_from_db()
    assert not binding.is_revoked


def test_credentials_mailed_through_the_outbox_hold_the_key_in_the_mail_alone(
    agent_client, agent, smtp_server, django_capture_on_commit_callbacks, caplog
):
    """With "mail the credentials", the page shows no key; the outbox mails the requester
    the kid and the real key over SMTP; the outbox row, the audit rows and the logs hold no
    key; once the binding is revoked, a mail queued later sends nothing (a permanent failure)."""
    from delivery.acme import queue_binding_credentials
    from delivery.models import Delivery

    caplog.set_level(logging.DEBUG)
    with django_capture_on_commit_callbacks(execute=True):
        response = agent_client.post(CREATE, FORM | {"send": "on"})
    assert response.status_code == 200
    assert 'id="eab-hmac-key"' not in response.content.decode()
    binding = ExternalAccountBinding.objects.get()
    assert "being mailed to ops@example.test" in response.content.decode()

    assert [m["To"] for m in smtp_server.messages] == ["ops@example.test"]
    text = smtp_server.messages[0].get_body(("plain",)).get_content()
    key = re.search(r"HMAC key:\s+(\S+)", text).group(1)
    assert acme_services.open_key(binding) == b64url_decode(key)
    assert f"Key ID:         {binding.kid}" in text
    assert "/acme/directory" in text
    assert key in smtp_server.messages[0].get_body(("html",)).get_content()

    delivery = Delivery.objects.get()
    assert delivery.kind == "acme_credentials"
    assert delivery.status == Delivery.Status.SENT
    assert delivery.request is None and delivery.acme_binding == binding
    assert delivery.requested_by == agent
    row = json.dumps(list(Delivery.objects.values()), default=str)
    assert key not in row
    audit_rows = json.dumps(list(AuditEvent.objects.values("action", "details")), default=str)
    assert key not in audit_rows
    assert {"acme_binding_created", "acme_binding_credentials_mailed", "delivery_queued"} <= set(
        AuditEvent.objects.values_list("action", flat=True)
    )
    assert key not in caplog.text

    acme_services.revoke_binding(binding.kid, actor=agent)
    with django_capture_on_commit_callbacks(execute=True):
        late = queue_binding_credentials(binding, actor=agent)
    late.refresh_from_db()
    assert late.status == Delivery.Status.FAILED
    assert "revoked" in late.last_error
    assert len(smtp_server.messages) == 1


def test_a_mail_that_cannot_be_queued_creates_no_binding(agent_client, settings):
    """If the outbox cannot take the mail (its backend is not configured), the agent sees
    why and no binding is left behind."""
    settings.DELIVERY_BACKENDS = {
        k: v for k, v in settings.DELIVERY_BACKENDS.items() if k != "acme_credentials"
    }
    response = agent_client.post(CREATE, FORM | {"send": "on"})
    assert response.status_code == 400
    assert "the credentials cannot be mailed" in response.content.decode()
    assert not ExternalAccountBinding.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="acme_").exists()


def test_the_delivery_admin_shows_a_credentials_mail_without_the_key(
    admin_client, agent, smtp_server, django_capture_on_commit_callbacks
):
    """A credentials mail (no request) is listed and shown in the Delivery admin, naming its
    binding, and neither page holds the key."""
    from delivery.acme import queue_binding_credentials
    from delivery.admin import delivery_admin_url

    binding, key = acme_services.create_binding(
        email="ops@example.test", names=["www.example.test"], actor=agent
    )
    with django_capture_on_commit_callbacks(execute=True):
        delivery = queue_binding_credentials(binding, actor=agent)
    listing = admin_client.get(reverse("admin:delivery_delivery_changelist"))
    assert listing.status_code == 200
    assert delivery.public_id in listing.content.decode()
    page = admin_client.get(delivery_admin_url(delivery))
    assert page.status_code == 200
    assert binding.kid in page.content.decode()
    assert key not in listing.content.decode() + page.content.decode()
    assert key in smtp_server.messages[0].get_body(("plain",)).get_content()
