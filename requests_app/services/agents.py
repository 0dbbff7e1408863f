"""Agent accounts: members of the group that holds the approval permission."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group, Permission
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from .. import signals
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
    user.groups.add(agents_group())
    audit("agent_created", actor=actor, username=username, email=email)
    signals.agent_created.send(sender=model, user=user, actor=actor)
    return user
