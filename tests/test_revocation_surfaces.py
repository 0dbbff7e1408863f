"""Revocation from the agent's certificate page, the admin action and the commands."""

from __future__ import annotations

import io

import pytest
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from requests_app import services
from requests_app.models import AuditEvent, Certificate
from tests.helpers.mfa import login_verified

Status = Certificate.Status
CHANGELIST = "admin:requests_app_certificate_changelist"


@pytest.fixture
def issued(pending_request, agent) -> Certificate:
    return services.approve_request(pending_request, agent=agent)


@pytest.fixture
def agent_client(client, agent):
    login_verified(client, agent)
    return client


def messages_of(response) -> list[tuple[str, str]]:
    return [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]


def run(*args, **options) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


# --- the agent's certificate page -------------------------------------------------------


def test_certificate_page_offers_revoke(agent_client, issued):
    """The page shows the certificate, its status and the Revoke form with every reason."""
    response = agent_client.get(reverse("agent:certificate", args=[issued.serial_colons]))
    assert response.status_code == 200
    page = response.content.decode()
    assert issued.serial_colons in page
    assert "status-valid" in page
    assert reverse("agent:revoke", args=[issued.serial]) in page
    assert 'value="aACompromise"' in page
    assert "Release hold" not in page


def test_certificate_page_is_for_agents_only(client, issued, django_user_model):
    """Anonymous visitors are sent to log in; a user without the permission gets 403."""
    url = reverse("agent:certificate", args=[issued.serial])
    assert client.get(url).status_code == 302
    assert client.post(reverse("agent:revoke", args=[issued.serial])).status_code == 403
    login_verified(client, django_user_model.objects.create_user("nobody", password="x"))
    assert client.get(url).status_code == 403
    assert client.post(reverse("agent:revoke", args=[issued.serial])).status_code == 403


def test_issued_and_request_pages_link_to_the_certificate_page(agent_client, issued):
    """The request and issued-certificate pages link to the certificate page."""
    link = reverse("agent:certificate", args=[issued.serial])
    request_id = issued.request.public_id
    assert (
        link
        in agent_client.get(reverse("agent:request_detail", args=[request_id])).content.decode()
    )
    issued_page = agent_client.get(reverse("agent:certificate_issued", args=[request_id]))
    assert link in issued_page.content.decode()


def test_unknown_certificate_is_404(agent_client, ca):
    """A serial no certificate has is a 404."""
    assert agent_client.get(reverse("agent:certificate", args=["abc"])).status_code == 404


def test_revoke_from_the_page(agent_client, agent, issued):
    """Revoke posts, redirects to the page and says so; the audit row has the agent's IP."""
    response = agent_client.post(
        reverse("agent:revoke", args=[issued.serial]),
        {"reason": "keyCompromise", "invalidity_date": "2025-01-31T12:00"},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("agent:certificate", args=[issued.serial])
    issued.refresh_from_db()
    assert (issued.status, issued.revocation_reason) == (Status.REVOKED, "keyCompromise")
    assert issued.invalidity_date.isoformat() == "2025-01-31T12:00:00+00:00"
    assert messages_of(response) == [
        ("success", f"Certificate {issued.serial_colons} revoked: Key compromise.")
    ]
    assert AuditEvent.objects.get(action="certificate_revoked").ip == "127.0.0.1"
    page = agent_client.get(response["Location"]).content.decode()
    assert "status-revoked" in page
    assert reverse("agent:revoke", args=[issued.serial]) not in page  # final: no form


def test_revoke_needs_a_reason(agent_client, issued):
    """Without a reason the form comes back with a 400 and nothing changes."""
    response = agent_client.post(reverse("agent:revoke", args=[issued.serial]), {"reason": ""})
    assert response.status_code == 400
    assert "This field is required" in response.content.decode()
    issued.refresh_from_db()
    assert issued.status == Status.VALID


def test_future_invalidity_date_is_a_form_error(agent_client, issued):
    """An invalidity date in the future is shown on its field."""
    response = agent_client.post(
        reverse("agent:revoke", args=[issued.serial]),
        {"reason": "keyCompromise", "invalidity_date": "2999-01-01T00:00"},
    )
    assert response.status_code == 400
    assert response.context["revoke_form"].errors["invalidity_date"]
    issued.refresh_from_db()
    assert issued.status == Status.VALID


def test_revoking_twice_from_the_page_is_refused(agent_client, agent, issued):
    """A second revocation (say, from a stale page) is refused with a message."""
    services.revoke_certificate(issued, reason="superseded", actor=agent)
    response = agent_client.post(
        reverse("agent:revoke", args=[issued.serial]), {"reason": "keyCompromise"}
    )
    assert response.status_code == 302
    [(level, text)] = messages_of(response)
    assert level == "error" and "already revoked" in text


def test_hold_and_release_from_the_page(agent_client, agent, issued):
    """A held certificate offers Release hold, which makes it valid again."""
    services.revoke_certificate(issued, reason="certificateHold", actor=agent)
    page = agent_client.get(reverse("agent:certificate", args=[issued.serial])).content.decode()
    assert "on hold" in page and reverse("agent:release_hold", args=[issued.serial]) in page
    response = agent_client.post(reverse("agent:release_hold", args=[issued.serial]))
    assert response.status_code == 302
    issued.refresh_from_db()
    assert issued.status == Status.VALID
    assert messages_of(response)[0][0] == "success"


def test_release_of_a_valid_certificate_is_refused_on_the_page(agent_client, issued):
    """Release on a valid certificate is refused with a message."""
    response = agent_client.post(reverse("agent:release_hold", args=[issued.serial]))
    [(level, text)] = messages_of(response)
    assert level == "error" and "not on hold" in text


def test_revoke_and_release_are_post_only(agent_client, issued):
    """GET on the action URLs is refused."""
    assert agent_client.get(reverse("agent:revoke", args=[issued.serial])).status_code == 405
    assert agent_client.get(reverse("agent:release_hold", args=[issued.serial])).status_code == 405


def test_revoke_checks_csrf(issued, agent):
    """The Revoke form needs its CSRF token."""
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    login_verified(strict, agent)
    response = strict.post(reverse("agent:revoke", args=[issued.serial]), {"reason": "superseded"})
    assert response.status_code == 403
    issued.refresh_from_db()
    assert issued.status == Status.VALID


# --- admin ------------------------------------------------------------------------------


def test_admin_revoke_asks_for_the_reason_then_revokes(agent_client, issued):
    """The admin action shows a page asking for the reason, then revokes each certificate."""
    data = {"action": "revoke_selected", "_selected_action": [issued.pk], "index": 0}
    asked = agent_client.post(reverse(CHANGELIST), data)
    assert asked.status_code == 200
    assert "Revoke 1 certificate" in asked.content.decode()
    issued.refresh_from_db()
    assert issued.status == Status.VALID
    done = agent_client.post(
        reverse(CHANGELIST), {**data, "post": "yes", "reason": "cessationOfOperation"}
    )
    assert done.status_code == 302
    issued.refresh_from_db()
    assert issued.revocation_reason == "cessationOfOperation"
    assert ("success", f"Revoked certificate {issued.serial_colons} (cessationOfOperation).") in (
        messages_of(done)
    )


def test_admin_revoke_reports_a_refusal(agent_client, agent, issued):
    """A certificate revoked already is reported as an error."""
    services.revoke_certificate(issued, reason="superseded", actor=agent)
    data = {"action": "revoke_selected", "_selected_action": [issued.pk], "post": "yes"}
    done = agent_client.post(reverse(CHANGELIST), {**data, "reason": "keyCompromise"})
    [(level, text)] = messages_of(done)
    assert level == "error" and "already revoked" in text


def test_admin_release_hold(agent_client, agent, issued):
    """The release action takes a held certificate off hold."""
    services.revoke_certificate(issued, reason="certificateHold", actor=agent)
    agent_client.post(
        reverse(CHANGELIST), {"action": "release_hold_selected", "_selected_action": [issued.pk]}
    )
    issued.refresh_from_db()
    assert issued.status == Status.VALID


def test_admin_actions_need_the_approve_permission(client, issued, django_user_model):
    """Staff who may only view certificates are not offered the revocation actions."""
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_certificate"))
    login_verified(client, viewer)
    page = client.get(reverse(CHANGELIST)).content.decode()
    assert "revoke_selected" not in page
    client.post(
        reverse(CHANGELIST),
        {"action": "revoke_selected", "_selected_action": [issued.pk], "post": "yes",
         "reason": "superseded"},
    )  # fmt: skip
    issued.refresh_from_db()
    assert issued.status == Status.VALID


# --- commands ---------------------------------------------------------------------------


def test_revoke_certificate_command(issued, agent):
    """revoke_certificate takes any spelling of a reason, an invalidity date and an agent."""
    output = run(
        "revoke_certificate",
        issued.serial_colons,
        "--reason=key_compromise",
        "--invalidity-date=2025-01-31T12:00Z",
        "--agent=agent1",
    )
    assert output.startswith(f"Revoked certificate {issued.serial_colons} (keyCompromise)")
    issued.refresh_from_db()
    assert issued.invalidity_date.isoformat() == "2025-01-31T12:00:00+00:00"
    assert AuditEvent.objects.get(action="certificate_revoked").actor == agent


def test_revoke_certificate_command_refusals(issued):
    """Unknown serial, unknown reason, bad date and a second revocation are CommandErrors."""
    with pytest.raises(CommandError, match="no certificate has the serial number ffff"):
        run("revoke_certificate", "ffff", reason="superseded")
    with pytest.raises(CommandError, match="is not one of"):
        run("revoke_certificate", issued.serial, reason="stolen")
    with pytest.raises(CommandError, match="not an ISO date"):
        run("revoke_certificate", issued.serial, "--reason=superseded", "--invalidity-date=2 May")
    with pytest.raises(CommandError, match="cannot be in the future"):
        run(
            "revoke_certificate",
            issued.serial,
            "--reason=superseded",
            "--invalidity-date=2999-01-01T00:00",
        )
    run("revoke_certificate", issued.serial, reason="superseded")
    with pytest.raises(CommandError, match="already revoked"):
        run("revoke_certificate", issued.serial, reason="keyCompromise")


def test_release_hold_command(issued):
    """release_hold releases a hold and refuses anything else."""
    with pytest.raises(CommandError, match="not on hold"):
        run("release_hold", issued.serial)
    run("revoke_certificate", issued.serial, reason="certificateHold")
    assert "valid again" in run("release_hold", issued.serial)
    issued.refresh_from_db()
    assert issued.status == Status.VALID


def test_a_held_certificate_is_offered_final_reasons_only(agent_client, agent, issued):
    """On hold, the Revoke form no longer offers Certificate hold."""
    services.revoke_certificate(issued, reason="certificateHold", actor=agent)
    response = agent_client.get(reverse("agent:certificate", args=[issued.serial]))
    choices = [value for value, _ in response.context["revoke_form"].fields["reason"].choices]
    assert "certificateHold" not in choices and "keyCompromise" in choices
