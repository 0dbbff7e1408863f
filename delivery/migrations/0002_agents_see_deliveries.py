"""Agents see the outbox in the admin (view permissions for the agents group)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Certificate Manager Agents"


def grant(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP)
    group.permissions.add(
        *Permission.objects.filter(
            content_type__app_label="delivery", codename__in=["view_delivery", "view_deliveryevent"]
        )
    )


class Migration(migrations.Migration):
    dependencies = [
        ("delivery", "0001_initial"),
        ("requests_app", "0002_agents_group"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
