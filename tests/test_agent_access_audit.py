"""Gaining or losing the agents' access is audited, with the actor, and told to the other
agents, through every surface: the admin's user page, a shell, the group's permissions,
create_agent."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.core import mail
from django.core.management import call_command

from requests_app import services
from requests_app.actor import acting_as
from requests_app.models import AuditEvent
from tests.helpers.mfa import login_verified

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(django_user_model):
    """A staff user who may change users (auth.change_user), but is no agent."""
    user = django_user_model.objects.create_user(
        "helpdesk", "helpdesk@example.test", "helpdesk-pass-123", is_staff=True
    )
    user.user_permissions.add(*Permission.objects.filter(codename__in=["change_user", "view_user"]))
    return user


def access_rows(action=None):
    """The access rows, except the agent fixture's own joining of the agents group."""
    rows = (
        AuditEvent.objects.filter(action__startswith="agent_access_")
        .exclude(action="agent_access_granted", details__username="agent1")
        .order_by("seq")
    )
    return rows.filter(action=action) if action else rows


def admin_post_groups(client, user, groups):
    """Save the admin's change page of user with these groups (every other field as it is)."""
    data = {
        "username": user.username,
        "first_name": "",
        "last_name": "",
        "email": user.email,
        "is_active": "on",
        "is_staff": "on",
        "groups": [group.pk for group in groups],
        "user_permissions": list(user.user_permissions.values_list("pk", flat=True)),
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "last_login_0": "",
        "last_login_1": "",
    }
    return client.post(f"/admin/auth/user/{user.pk}/change/", data)


def test_a_staff_user_adding_itself_to_the_agents_in_the_admin_is_audited_and_told(
    client, staff, agent, django_capture_on_commit_callbacks
):
    """The admin user page: an audit row names the staff user as actor; the agent gets a notice."""
    login_verified(client, staff)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_post_groups(client, staff, [services.agents_group()])
    assert response.status_code == 302, response.content[:2000]
    (row,) = access_rows()
    assert row.action == "agent_access_granted"
    assert row.actor == staff
    assert row.details["username"] == "helpdesk"
    assert "Certificate Manager Agents" in row.details["via"]
    (notice,) = mail.outbox
    assert notice.to == [agent.email]  # the other agents, not the one who changed
    assert "helpdesk became a Certificate Manager agent" in notice.subject
    assert "Changed by: helpdesk" in notice.body

    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_post_groups(client, staff, [])
    assert response.status_code == 302
    assert access_rows().last().action == "agent_access_revoked"
    assert access_rows().last().actor == staff
    (notice,) = mail.outbox
    assert "helpdesk is no longer a Certificate Manager agent" in notice.subject
    assert services.verify_audit().intact


def test_an_unrelated_group_is_not_reported(client, staff, agent):
    """Membership of a group without the approval permission is no agent access."""
    plain = Group.objects.create(name="Helpdesk")
    login_verified(client, staff)
    assert admin_post_groups(client, staff, [plain]).status_code == 302
    assert not access_rows().exists()


def test_a_direct_permission_grant_in_a_shell_is_audited_as_system(
    django_user_model, agent, django_capture_on_commit_callbacks
):
    """user_permissions.add(approve) from a shell: a row by "system" and a notice."""
    user = django_user_model.objects.create_user("sneaky", "sneaky@example.test", "x")
    approve = Permission.objects.get(codename="approve_certificaterequest")
    with django_capture_on_commit_callbacks(execute=True):
        user.user_permissions.add(approve)
    (row,) = access_rows()
    assert (row.action, row.actor, row.actor_label) == ("agent_access_granted", None, "system")
    assert row.details["via"] == "the approval permission, given to the user"
    assert [m.to for m in mail.outbox] == [[agent.email]]
    user.user_permissions.remove(approve)
    assert access_rows().last().action == "agent_access_revoked"
    user.user_permissions.add(approve)
    user.user_permissions.clear()
    assert access_rows().last().action == "agent_access_revoked"
    # From the permission's side too.
    approve.user_set.add(user)
    assert access_rows().last().action == "agent_access_granted"


def test_the_permission_given_to_a_group_reports_each_member(django_user_model, agent):
    """Group.permissions: giving a group the approval permission makes its members agents."""
    group = Group.objects.create(name="Night shift")
    members = [
        django_user_model.objects.create_user(f"n{i}", f"n{i}@example.test", "x") for i in range(2)
    ]
    group.user_set.add(*members)
    assert not access_rows().exists()
    approve = Permission.objects.get(codename="approve_certificaterequest")
    with acting_as(agent):
        group.permissions.add(approve)
    rows = list(access_rows())
    assert {r.details["username"] for r in rows} == {"n0", "n1"}
    assert all(r.actor == agent and r.action == "agent_access_granted" for r in rows)
    group.permissions.remove(approve)
    assert access_rows("agent_access_revoked").count() == 2


def test_the_agents_group_from_its_side_and_deleted(django_user_model, agent):
    """group.user_set.add, group.user_set.clear and deleting the group are reported."""
    group = services.agents_group()
    user = django_user_model.objects.create_user("via-group", "g@example.test", "x")
    group.user_set.add(user)
    assert access_rows().last().details["username"] == "via-group"
    group.user_set.clear()
    assert {r.details["username"] for r in access_rows("agent_access_revoked")} == {
        "via-group",
        "agent1",
    }
    group.user_set.add(user)
    group.delete()
    last = access_rows().last()
    assert last.action == "agent_access_revoked"
    assert "deleted" in last.details["via"]


def test_superuser_status_is_agent_access(django_user_model):
    """Making a user superuser (every permission) is reported, and taking it back too."""
    user = django_user_model.objects.create_user("root2", "r@example.test", "x")
    user.is_superuser = True
    user.save()
    assert access_rows().last().details["via"] == "superuser status"
    user.is_superuser = False
    user.save()
    assert access_rows().last().action == "agent_access_revoked"
    user.save(update_fields=["last_login"])  # no change, no row
    assert access_rows().count() == 2
    django_user_model.objects.create_superuser("root3", "r3@example.test", "x")
    assert access_rows().last().details == {
        "username": "root3",
        "user_id": django_user_model.objects.get(username="root3").pk,
        "via": "superuser status (a new superuser)",
    }


def test_create_agent_names_its_actor(agent, django_user_model):
    """create_agent's membership row names who created the agent."""
    services.create_agent(
        "agent9", email="agent9@example.test", password="a-long-pass-phrase-9", actor=agent
    )
    row = access_rows().last()
    assert (row.details["username"], row.actor) == ("agent9", agent)
    call_command("verify_audit")
