from django.apps import AppConfig


class RequestsAppConfig(AppConfig):
    name = "requests_app"
    verbose_name = "Certificate Manager"

    def ready(self):
        from . import (
            access_audit,
            checks,  # noqa: F401 - registers the system checks
        )
        from .keys import checks as key_checks  # noqa: F401 - registers CA_KEY_BACKENDS' check

        access_audit.connect()  # agent access changes, audited from any surface
