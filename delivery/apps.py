from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    name = "delivery"
    verbose_name = "Delivery"

    def ready(self):
        from requests_app import extensions

        from . import admin, checks, liveness, panels, receivers  # noqa: F401 - receivers, checks

        extensions.register_agent_panel(
            "delivery", template="delivery/_panel.html", context=panels.delivery_panel
        )
        extensions.register_queue_mark(
            "delivery_problem",
            template="delivery/_queue_mark.html",
            mark=panels.requests_with_delivery_problems,
        )
        extensions.register_certificate_admin_action(admin.send_certificate_selected)
        extensions.register_certificate_admin_action(admin.send_link_selected)
        # With the durable task queue, a node is healthy only if some worker beat lately.
        if liveness.durable_tasks():
            extensions.register_health_check("worker", liveness.worker_health)
        # The receiver that mails ACME binding credentials (delivery/acme.py).
        from . import acme  # noqa: F401
