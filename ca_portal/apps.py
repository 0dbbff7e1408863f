"""The project's own start-up: what a process needs on local disk before it serves."""

from pathlib import Path

from django.apps import AppConfig
from django.conf import settings


def create_local_directories() -> None:
    """Make the directory of each SQLite database file and STATIC_ROOT when they are missing."""
    for database in settings.DATABASES.values():
        name = str(database.get("NAME") or "")
        # In-memory databases and file: URIs name no directory of ours.
        on_disk = name not in ("", ":memory:") and not name.startswith("file:")
        if database["ENGINE"] == "django.db.backends.sqlite3" and on_disk:
            Path(name).parent.mkdir(parents=True, exist_ok=True)
    # WhiteNoise warns on every request when STATIC_ROOT is missing, until collectstatic runs.
    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)


class PortalConfig(AppConfig):
    """Runs in every process (runserver, gunicorn, commands, the tests) after settings are
    read and before the first database connection or middleware exists; importing the
    settings alone touches no disk."""

    name = "ca_portal"
    verbose_name = "ca-portal"

    def ready(self):
        create_local_directories()
