"""ACME external account bindings: the services agents and commands call."""

from __future__ import annotations

import base64

import pytest
from cryptography.exceptions import InvalidTag

from requests_app import services
from requests_app.acme import services as acme
from requests_app.acme.models import ExternalAccountBinding
from requests_app.models import AuditEvent

pytestmark = pytest.mark.django_db


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_create_binding_returns_the_key_once_and_keeps_it_sealed(agent):
    """The key comes back once as base64url; the row holds it only sealed, and it opens."""
    binding, key = acme.create_binding(
        email="ops@example.com", names=["www.example.com", "*.Example.org"], actor=agent
    )
    raw = _b64url_decode(key)
    assert len(raw) == 32
    assert key not in binding.hmac_key_sealed
    assert base64.b64encode(raw).decode() not in binding.hmac_key_sealed
    stored = ExternalAccountBinding.objects.get(kid=binding.kid)
    assert acme.open_key(stored) == raw
    assert stored.names == ["www.example.com", "*.example.org"]
    assert stored.profile == "server" and stored.created_by == agent
    event = AuditEvent.objects.get(action="acme_binding_created")
    assert event.details["kid"] == binding.kid and event.actor == agent
    assert key not in str(event.details)


def test_sealed_key_is_bound_to_its_kid(agent):
    """A sealed key copied onto another binding's row does not open there."""
    first, _ = acme.create_binding(email="a@example.com", names=["a.example.com"], actor=agent)
    second, _ = acme.create_binding(email="b@example.com", names=["b.example.com"], actor=agent)
    second.hmac_key_sealed = first.hmac_key_sealed
    with pytest.raises(InvalidTag):
        acme.open_key(second)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"profile": "nosuch"}, "profile"),
        ({"profile": "user"}, "profile"),
        ({"names": ["bad..name"]}, "names"),
        ({"names": ["*.com"]}, "names"),
        ({"names": ["a.*.example.com"]}, "names"),
        ({"names": []}, "names"),
        ({"days": 0}, "days"),
        ({"days": -3}, "days"),
        ({"email": "not-an-address"}, "email"),
    ],
)
def test_create_binding_refuses_bad_input(agent, options, field):
    """Each bad input is a clear ServiceError naming its field, and nothing is written."""
    arguments = {"email": "ops@example.com", "names": ["www.example.com"], "actor": agent}
    arguments.update(options)
    with pytest.raises(services.ServiceError) as info:
        acme.create_binding(**arguments)
    assert info.value.field == field
    assert not ExternalAccountBinding.objects.exists()
    assert not AuditEvent.objects.filter(action="acme_binding_created").exists()


def test_revoke_binding_and_refusals(agent):
    """Revoking sets revoked_at with an audit row; a second revoke and an unknown kid refuse."""
    binding, _ = acme.create_binding(email="ops@example.com", names=["a.example.com"], actor=agent)
    revoked = acme.revoke_binding(binding.kid, actor=agent)
    assert revoked.revoked_at is not None and revoked.revoked_by == agent
    assert AuditEvent.objects.filter(action="acme_binding_revoked").count() == 1
    with pytest.raises(services.InvalidTransition):
        acme.revoke_binding(binding.kid, actor=agent)
    with pytest.raises(acme.BindingNotFound):
        acme.revoke_binding("eab-nosuch", actor=agent)
    assert AuditEvent.objects.filter(action="acme_binding_revoked").count() == 1


def test_list_bindings_newest_first(agent):
    """list_bindings is a queryset, newest first."""
    first, _ = acme.create_binding(email="a@example.com", names=["a.example.com"], actor=agent)
    second, _ = acme.create_binding(email="b@example.com", names=["b.example.com"], actor=agent)
    assert [b.kid for b in acme.list_bindings()] == [second.kid, first.kid]


def test_name_approved_patterns():
    """Exact names match themselves; "*.d" covers names below d and "*.d", never d."""
    approved = ["www.example.com", "*.corp.example"]
    assert acme.name_approved("www.example.com", approved)
    assert not acme.name_approved("example.com", approved)
    assert acme.name_approved("a.corp.example", approved)
    assert acme.name_approved("a.b.corp.example", approved)
    assert acme.name_approved("*.corp.example", approved)
    assert not acme.name_approved("corp.example", approved)
    assert not acme.name_approved("evilcorp.example", approved)
