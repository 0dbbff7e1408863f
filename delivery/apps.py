from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    name = "delivery"
    verbose_name = "Delivery"

    def ready(self):
        from . import checks, receivers  # noqa: F401 - registers the receivers and checks
