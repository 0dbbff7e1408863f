"""Agent accounts: members of the group that holds the approval permission."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group, Permission
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from .. import signals
from ..actor import acting_as
from .audit_log import audit
from .errors import InvalidRequest

User = AbstractBaseUser

AGENTS_GROUP = "Certificate Manager Agents"


def agents_group():
    """The agents group with the approve permission (made by a migration; remade if missing).

    No transaction, audit row or signal of its own: it only repairs what the migration made,
    inside the caller's transaction (create_agent's, whose audit row names the agent), and
    for test fixtures after a flushed database."""
    group, created = Group.objects.get_or_create(name=AGENTS_GROUP)
    if created:
        group.permissions.add(
            *Permission.objects.filter(
                content_type__app_label="requests_app",
                codename__in=[
                    "approve_certificaterequest",
                    "view_certificaterequest",
                    "view_certificate",
                    "view_auditevent",
                    "view_certificateauthority",
                ],
            )
        )
    return group


@transaction.atomic
def create_agent(username: str, *, email: str, password: str | None, actor: User | None = None):
    """Create a user in the agents group (staff, so the admin is open to them). Without a
    password the account has none until its owner sets one through the enrolment link."""
    model = get_user_model()
    if model.objects.filter(username=username).exists():
        raise InvalidRequest(f"a user named {username!r} already exists", field="username")
    try:
        validate_email(email)
    except ValidationError:
        raise InvalidRequest(f"{email!r} is not a valid email address", field="email") from None
    user = model(username=username, email=email, is_staff=True)
    if password is None:
        user.set_unusable_password()
    else:
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise InvalidRequest(" ".join(exc.messages), field="password") from None
        user.set_password(password)
    user.save()
    with acting_as(actor):  # the access audit names who created the agent
        user.groups.add(agents_group())
    audit("agent_created", actor=actor, username=username, email=email)
    signals.agent_created.send(sender=model, user=user, actor=actor)
    return user


@transaction.atomic
def record_agent_access_change(users, *, granted: bool, via: str, actor: User | None = None):
    """Audit users gaining or losing the approval access (one row each) and tell the other
    agents (agent_access_changed). Called by the model signals of requests_app.access_audit,
    inside the transaction of the change, whatever surface made it."""
    users = list(users)
    for user in users:
        audit(
            "agent_access_granted" if granted else "agent_access_revoked",
            actor=actor,
            username=user.get_username(),
            user_id=user.pk,
            via=via,
        )
    signals.agent_access_changed.send(
        sender=get_user_model(), users=users, granted=granted, via=via, actor=actor
    )
