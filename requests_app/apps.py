from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class RequestsAppConfig(AppConfig):
    name = "requests_app"
    verbose_name = "Certificate Manager"

    def ready(self):
        from . import (
            access_audit,
            checks,  # noqa: F401 - registers the system checks
            login_throttle,  # noqa: F401 - audits logins, failures and lockouts
        )
        from .keys import checks as key_checks  # noqa: F401 - registers CA_KEY_BACKENDS' check

        access_audit.connect()  # agent access changes, audited from any surface

        from . import extensions
        from .keys.pkcs11 import token_health, tokens_configured

        if tokens_configured():  # a deployment that keeps CA keys in a token
            extensions.register_health_check("ca_key_tokens", token_health)


class AgentAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with requests_app.admin_site.AgentAdminSite as admin.site."""

    default = False  # named in INSTALLED_APPS; "requests_app" still means RequestsAppConfig
    default_site = "requests_app.admin_site.AgentAdminSite"
