"""The outbox in Django admin, and the delivery actions offered on certificates.

requests_app does not know about delivery: the certificate admin takes the "send"
actions below from requests_app.extensions, where apps.py registers them.
"""

from django.contrib import admin

from requests_app.admin import AgentActionsMixin, ReadOnlyAdmin, act_on_each

from . import services
from .models import Delivery, DeliveryEvent


@admin.register(Delivery)
class DeliveryAdmin(AgentActionsMixin, ReadOnlyAdmin):
    list_display = ["created", "kind", "recipient", "status", "attempts", "last_error", "request"]
    list_filter = ["status", "kind", "backend"]
    search_fields = ["recipient", "message_id"]
    list_select_related = ["request"]
    show_full_result_count = False
    actions = ["retry_selected"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "request",
                    "certificate",
                    "kind",
                    "backend",
                    "recipient",
                    "note",
                    "status",
                    "attempts",
                    "next_attempt_at",
                    "lease_until",
                    "last_error",
                    "message_id",
                    "requested_by",
                    "created",
                    "updated",
                    "sent_at",
                ]
            },
        )
    ]

    @admin.action(description="Retry selected deliveries", permissions=["approve"])
    def retry_selected(self, request, queryset):
        act_on_each(
            self,
            request,
            queryset,
            lambda delivery: services.retry_delivery(delivery.pk, actor=request.user),
            done="Retrying delivery {obj.pk} to {obj.recipient}.",
            failed="{error}",
        )


@admin.register(DeliveryEvent)
class DeliveryEventAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "provider", "event_type", "recipient", "message_id", "delivery"]
    list_filter = ["provider", "event_type"]
    search_fields = ["message_id", "recipient"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "delivery",
                    "provider",
                    "event_id",
                    "event_type",
                    "message_id",
                    "recipient",
                    "description",
                    "occurred_at",
                    "received_at",
                ]
            },
        )
    ]


def _send(modeladmin, request, queryset, method: str) -> None:
    act_on_each(
        modeladmin,
        request,
        queryset,
        lambda cert: services.send_certificate(cert, method=method, actor=request.user),
        done="{obj.serial}: queued to {outcome.recipient}.",
        failed="{obj.serial}: {error}",
    )


# Offered on the certificate admin through requests_app.extensions (see apps.py).
@admin.action(description="Send certificate to requester (attached)", permissions=["approve"])
def send_certificate_selected(modeladmin, request, queryset):
    """Mail each selected certificate, attached, to its requester."""
    _send(modeladmin, request, queryset, "certificate")


@admin.action(description="Send retrieval link to requester", permissions=["approve"])
def send_link_selected(modeladmin, request, queryset):
    """Mail a retrieval link for each selected certificate to its requester."""
    _send(modeladmin, request, queryset, "link")
