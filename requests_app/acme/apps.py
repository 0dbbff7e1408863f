from django.apps import AppConfig


class AcmeConfig(AppConfig):
    name = "requests_app.acme"
    label = "acme"
    verbose_name = "ACME"

    def ready(self):
        from . import panels

        panels.register()  # the agent request page shows the ACME account and challenges
