"""Random public IDs for deliveries (existing rows get one each), the provider's message ID
described, and the workers' heartbeat table."""

from django.db import migrations, models

import requests_app.models


def give_each_delivery_a_public_id(apps, schema_editor):
    Delivery = apps.get_model("delivery", "Delivery")
    for delivery in Delivery.objects.filter(public_id__isnull=True).only("pk").iterator():
        Delivery.objects.filter(pk=delivery.pk).update(
            public_id=requests_app.models.new_public_id()
        )


class Migration(migrations.Migration):
    dependencies = [
        ("delivery", "0004_email_confirmation_kind"),
    ]

    operations = [
        migrations.CreateModel(
            name="WorkerHeartbeat",
            fields=[
                (
                    "worker_id",
                    models.CharField(max_length=64, primary_key=True, serialize=False),
                ),
                ("hostname", models.CharField(blank=True, max_length=255)),
                ("pid", models.PositiveIntegerField(blank=True, null=True)),
                ("started_at", models.DateTimeField()),
                ("last_seen", models.DateTimeField(db_index=True)),
            ],
            options={
                "ordering": ["-last_seen"],
            },
        ),
        # One unique value per existing row: added nullable, filled, then made unique.
        migrations.AddField(
            model_name="delivery",
            name="public_id",
            field=models.CharField(editable=False, max_length=20, null=True),
        ),
        migrations.RunPython(give_each_delivery_a_public_id, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="delivery",
            name="public_id",
            field=models.CharField(
                default=requests_app.models.new_public_id,
                editable=False,
                max_length=20,
                unique=True,
            ),
        ),
        migrations.AlterField(
            model_name="delivery",
            name="message_id",
            field=models.CharField(
                blank=True,
                db_index=True,
                help_text=(
                    "The provider's message ID, recorded at send time; tracking events match it."
                ),
                max_length=255,
            ),
        ),
    ]
