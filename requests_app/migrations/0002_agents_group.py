"""The group "Certificate Manager Agents", holding the agent permission, and the counters."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Certificate Manager Agents"
PERMISSIONS = [
    "approve_certificaterequest",
    "view_certificaterequest",
    "view_certificate",
    "view_auditevent",
    "view_certificateauthority",
]


def create_group(apps, schema_editor):
    # Permissions are normally made after migrate; make them now so the group can hold them.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP)
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="requests_app", codename__in=PERMISSIONS)
    )
    StatusCount = apps.get_model("requests_app", "StatusCount")
    for status in ("pending", "complete", "rejected", "canceled"):
        StatusCount.objects.get_or_create(status=status)


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("requests_app", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, remove_group)]
