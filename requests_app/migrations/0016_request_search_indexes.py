"""The queue's search (requests_app.queue_search): the start of a CN (request_subject_lower);
on PostgreSQL also pattern indexes for the start of an address, a request ID or a CN, since
LIKE 'prefix%' walks a btree only under the C collation or with a pattern operator class.
SQLite walks the plain indexes by range instead; Django's Index cannot give an expression an operator class portably,
hence plain SQL for PostgreSQL alone."""

from django.db import migrations, models

import requests_app.models

INDEXES = {
    "request_email_pattern": "(lower(requester_email) text_pattern_ops)",
    "request_public_id_pattern": "(public_id varchar_pattern_ops)",
    "request_subject_pattern": "(substr(lower(subject), 1, 200) text_pattern_ops)",
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name, columns in INDEXES.items():
            schema_editor.execute(
                f"CREATE INDEX IF NOT EXISTS {name} ON requests_app_certificaterequest {columns}"
            )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name in INDEXES:
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("requests_app", "0015_rate_counts_in_the_database")]

    operations = [
        migrations.AddIndex(
            model_name="certificaterequest",
            index=models.Index(
                requests_app.models.SubjectKey("subject"), name="request_subject_lower"
            ),
        ),
        migrations.RunPython(create, drop, elidable=False),
    ]
