"""Agent access changes, through any surface: the admin's user and group pages, a shell,
create_agent. Model signals on the three ways to gain the approval permission (membership of
a group that holds it or of "Certificate Manager Agents", a direct user permission, the
permission added to a group), on superuser status, and on deleting such a group, become one
service call each (an audit row per user and the agent_access_changed signal)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db.models.signals import m2m_changed, post_save, pre_delete, pre_save

from . import services
from .actor import current_actor

APP_LABEL, CODENAME = "requests_app", "approve_certificaterequest"


def _approve_permission_ids() -> set[int]:
    return set(
        Permission.objects.filter(content_type__app_label=APP_LABEL, codename=CODENAME).values_list(
            "pk", flat=True
        )
    )


def _agent_groups(group_ids) -> list[Group]:
    """The groups among group_ids that make their members agents."""
    groups = Group.objects.filter(pk__in=group_ids)
    return [
        group
        for group in groups
        if group.name == services.AGENTS_GROUP
        or group.permissions.filter(pk__in=_approve_permission_ids()).exists()
    ]


def _report(users, *, granted: bool, via: str) -> None:
    users = [user for user in users if user is not None]
    if users:
        services.record_agent_access_change(users, granted=granted, via=via, actor=current_actor())


def _action(action: str) -> bool | None:
    return {"post_add": True, "post_remove": False, "post_clear": False}.get(action)


def user_groups_changed(sender, instance, action, reverse, pk_set, **kwargs):
    if action == "pre_clear":
        # The members or groups about to go, remembered for post_clear (which names none).
        if reverse:
            instance._access_cleared = (
                list(instance.user_set.all()) if _agent_groups([instance.pk]) else []
            )
        else:
            instance._access_cleared = _agent_groups(instance.groups.values_list("pk", flat=True))
        return
    granted = _action(action)
    if granted is None:
        return
    if reverse:  # group.user_set.add(users...)
        groups = _agent_groups([instance.pk])
        if not groups:
            return
        users = (
            instance.__dict__.pop("_access_cleared", [])
            if action == "post_clear"
            else list(get_user_model().objects.filter(pk__in=pk_set))
        )
        _report(users, granted=granted, via=f"group {instance.name!r}")
    else:  # user.groups.add(groups...)
        groups = (
            instance.__dict__.pop("_access_cleared", [])
            if action == "post_clear"
            else _agent_groups(pk_set)
        )
        for group in groups:
            _report([instance], granted=granted, via=f"group {group.name!r}")


def user_permissions_changed(sender, instance, action, reverse, pk_set, **kwargs):
    if action == "pre_clear":
        if reverse:
            instance._access_cleared = (
                list(instance.user_set.all()) if instance.pk in _approve_permission_ids() else []
            )
        else:
            instance._access_cleared = (
                [instance]
                if instance.user_permissions.filter(pk__in=_approve_permission_ids()).exists()
                else []
            )
        return
    granted = _action(action)
    if granted is None:
        return
    via = "the approval permission, given to the user"
    if action == "post_clear":
        _report(instance.__dict__.pop("_access_cleared", []), granted=False, via=via)
    elif reverse:  # permission.user_set.add(users...)
        if instance.pk in _approve_permission_ids():
            _report(get_user_model().objects.filter(pk__in=pk_set), granted=granted, via=via)
    elif pk_set & _approve_permission_ids():
        _report([instance], granted=granted, via=via)


def group_permissions_changed(sender, instance, action, reverse, pk_set, **kwargs):
    if action == "pre_clear":
        if reverse:
            groups = (
                list(instance.group_set.all()) if instance.pk in _approve_permission_ids() else []
            )
        else:
            groups = (
                [instance]
                if instance.permissions.filter(pk__in=_approve_permission_ids()).exists()
                else []
            )
        instance._access_cleared = groups
        return
    granted = _action(action)
    if granted is None:
        return
    if action == "post_clear":
        groups = instance.__dict__.pop("_access_cleared", [])
    elif reverse:  # permission.group_set.add(groups...)
        groups = (
            list(Group.objects.filter(pk__in=pk_set))
            if instance.pk in _approve_permission_ids()
            else []
        )
    else:
        groups = [instance] if pk_set & _approve_permission_ids() else []
    for group in groups:
        _report(
            list(group.user_set.all()),
            granted=granted,
            via=f"the approval permission, {'given to' if granted else 'taken from'} group "
            f"{group.name!r}",
        )


def group_deleted(sender, instance, **kwargs):
    if _agent_groups([instance.pk]):
        _report(
            list(instance.user_set.all()), granted=False, via=f"group {instance.name!r} deleted"
        )


def superuser_changed(sender, instance, update_fields=None, **kwargs):
    if update_fields is not None and "is_superuser" not in update_fields:
        return
    if instance.pk is None or instance._state.adding:
        instance._access_new_superuser = bool(instance.is_superuser)  # post_save reports it
        return
    before = sender.objects.filter(pk=instance.pk).values_list("is_superuser", flat=True).first()
    if before is not None and bool(before) != bool(instance.is_superuser):
        _report([instance], granted=bool(instance.is_superuser), via="superuser status")


def superuser_created(sender, instance, created, **kwargs):
    if created and instance.__dict__.pop("_access_new_superuser", False):
        _report([instance], granted=True, via="superuser status (a new superuser)")


def connect() -> None:
    """Connect the receivers (from AppConfig.ready)."""
    user_model = get_user_model()
    m2m_changed.connect(
        user_groups_changed, sender=user_model.groups.through, dispatch_uid="access.groups"
    )
    m2m_changed.connect(
        user_permissions_changed,
        sender=user_model.user_permissions.through,
        dispatch_uid="access.user_permissions",
    )
    m2m_changed.connect(
        group_permissions_changed, sender=Group.permissions.through, dispatch_uid="access.group"
    )
    pre_delete.connect(group_deleted, sender=Group, dispatch_uid="access.group_deleted")
    pre_save.connect(superuser_changed, sender=user_model, dispatch_uid="access.superuser")
    post_save.connect(superuser_created, sender=user_model, dispatch_uid="access.new_superuser")
