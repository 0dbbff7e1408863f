"""The outbox in Django admin, and the delivery actions on certificates.

requests_app does not know about delivery, so the certificate admin gains its
"send" actions here, by re-registering a subclass.
"""

from django.contrib import admin, messages

from requests_app.admin import AgentActionsMixin, CertificateAdmin, ReadOnlyAdmin
from requests_app.models import Certificate

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
        for delivery in queryset:
            try:
                services.retry_delivery(delivery.pk, actor=request.user)
            except services.ServiceError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(
                    request, f"Retrying delivery {delivery.pk} to {delivery.recipient}."
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


class DeliveringCertificateAdmin(CertificateAdmin):
    actions = [*CertificateAdmin.actions, "send_certificate_selected", "send_link_selected"]

    def _send(self, request, queryset, method):
        for cert in queryset:
            try:
                delivery = services.send_certificate(cert, method=method, actor=request.user)
            except services.ServiceError as exc:
                self.message_user(request, f"{cert.serial}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{cert.serial}: queued to {delivery.recipient}.")

    @admin.action(description="Send certificate to requester (attached)", permissions=["approve"])
    def send_certificate_selected(self, request, queryset):
        self._send(request, queryset, "certificate")

    @admin.action(description="Send retrieval link to requester", permissions=["approve"])
    def send_link_selected(self, request, queryset):
        self._send(request, queryset, "link")


admin.site.unregister(Certificate)
admin.site.register(Certificate, DeliveringCertificateAdmin)
