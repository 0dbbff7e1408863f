"""The queue's search by the start of an address or of a request ID (requests_app.queue_search)
on PostgreSQL: LIKE 'prefix%' walks a btree only under the C collation, or in an index with a
pattern operator class, which these are. SQLite walks the existing indexes by range instead
and needs nothing; Django's Index cannot give an expression an operator class portably,
hence plain SQL for PostgreSQL alone."""

from django.db import migrations

INDEXES = {
    "request_email_pattern": "(lower(requester_email) text_pattern_ops)",
    "request_public_id_pattern": "(public_id varchar_pattern_ops)",
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
    dependencies = [("requests_app", "0014_certificate_subject_search")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
