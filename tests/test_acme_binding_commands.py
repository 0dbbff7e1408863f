"""manage.py create_acme_binding, list_acme_bindings and revoke_acme_binding: the binding
services from the command line, with the key printed once and clear errors for bad input."""

from __future__ import annotations

import base64
import io
import json

import pytest
from django.core.management import CommandError, call_command

from requests_app.acme.models import ExternalAccountBinding
from requests_app.models import AuditEvent

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_create_prints_kid_and_key_as_last_two_lines():
    """The last two lines are the key ID and a 256-bit base64url HMAC key; the row keeps the
    key only sealed, and the audit row names the binding but not the key."""
    out = run(
        "create_acme_binding",
        "--email",
        "ops@example.test",
        "--names",
        "www.example.test",
        "*.Example.test",
        "--days",
        "30",
    )
    kid, key = out.strip().splitlines()[-2:]
    binding = ExternalAccountBinding.objects.get(kid=kid)
    assert len(b64url_decode(key)) == 32
    assert binding.names == ["www.example.test", "*.example.test"]
    assert binding.profile == "server"
    assert (binding.expires_at - binding.created_at).days in (29, 30)
    assert key not in binding.hmac_key_sealed
    event = AuditEvent.objects.get(action="acme_binding_created")
    assert event.details["kid"] == kid
    assert key not in json.dumps(event.details)
    assert event.actor is None


def test_create_json_carries_the_key_and_agent_is_recorded(agent):
    """--json gives kid and hmac_key with the binding's fields; --agent is the actor."""
    data = json.loads(
        run(
            "create_acme_binding",
            "--email",
            "ops@example.test",
            "--names",
            "api.example.test",
            "--agent",
            agent.username,
            "--json",
        )
    )
    assert data["kid"].startswith("eab-")
    assert len(b64url_decode(data["hmac_key"])) == 32
    assert data["names"] == ["api.example.test"]
    assert data["status"] == "unused"
    assert data["created_by"] == agent.username
    assert AuditEvent.objects.get(action="acme_binding_created").actor == agent


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--email", "not-an-address", "--names", "a.example.test"], "valid email"),
        (["--email", "o@example.test", "--names", "bad..name"], "bad..name"),
        (["--email", "o@example.test", "--names", "a.*.example.test"], "wildcard"),
        (["--email", "o@example.test", "--names", "a.example.test", "--profile", "user"], "user"),
        (["--email", "o@example.test", "--names", "a.example.test", "--days", "0"], "at least 1"),
        (["--email", "o@example.test", "--names", "a.example.test", "--agent", "nobody"], "nobody"),
    ],
)
def test_create_refuses_bad_input_and_writes_nothing(args, message):
    """Each bad argument is a one-line CommandError naming the problem; no row is written."""
    with pytest.raises(CommandError, match=message):
        run("create_acme_binding", *args)
    assert not ExternalAccountBinding.objects.exists()
    assert not AuditEvent.objects.filter(action="acme_binding_created").exists()


def test_create_refuses_a_non_agent_as_actor(django_user_model):
    """--agent must name a user with the agents' approval permission."""
    django_user_model.objects.create_user("mallory", "m@example.test", "pw-123456789")
    with pytest.raises(CommandError, match="may not act"):
        run(
            "create_acme_binding",
            "--email",
            "o@example.test",
            "--names",
            "a.example.test",
            "--agent",
            "mallory",
        )
    assert not ExternalAccountBinding.objects.exists()


def test_list_shows_bindings_newest_first_without_keys():
    """The table and the JSON list every binding, newest first, and never a key."""
    assert "No ACME bindings." in run("list_acme_bindings")
    first = json.loads(
        run(
            "create_acme_binding",
            "--email",
            "a@example.test",
            "--names",
            "a.example.test",
            "--json",
        )
    )
    second = json.loads(
        run(
            "create_acme_binding",
            "--email",
            "b@example.test",
            "--names",
            "b.example.test",
            "--json",
        )
    )
    table = run("list_acme_bindings")
    assert table.index(second["kid"]) < table.index(first["kid"])
    assert first["hmac_key"] not in table and second["hmac_key"] not in table
    listed = json.loads(run("list_acme_bindings", "--json"))
    assert [row["kid"] for row in listed] == [second["kid"], first["kid"]]
    assert all("hmac_key" not in row for row in listed)
    assert "hmac_key_sealed" not in json.dumps(listed)


def test_revoke_then_revoke_again_and_unknown_kid():
    """Revoking marks the binding revoked (listed so, audited); a second revoke and an
    unknown key ID are clear errors."""
    data = json.loads(
        run(
            "create_acme_binding",
            "--email",
            "a@example.test",
            "--names",
            "a.example.test",
            "--json",
        )
    )
    out = run("revoke_acme_binding", data["kid"])
    assert f"Revoked ACME binding {data['kid']}" in out
    assert ExternalAccountBinding.objects.get(kid=data["kid"]).is_revoked
    assert json.loads(run("list_acme_bindings", "--json"))[0]["status"] == "revoked"
    assert AuditEvent.objects.filter(action="acme_binding_revoked").count() == 1
    with pytest.raises(CommandError, match="already"):
        run("revoke_acme_binding", data["kid"])
    with pytest.raises(CommandError, match="no ACME account binding"):
        run("revoke_acme_binding", "eab-doesnotexist")
    assert AuditEvent.objects.filter(action="acme_binding_revoked").count() == 1
