"""The outbox in Django admin, and the delivery actions offered on certificates.

requests_app does not know about delivery: the certificate admin takes the "send"
actions below from requests_app.extensions, where apps.py registers them.
"""

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList
from django.urls import reverse
from django.utils.html import format_html

from requests_app.admin import AgentActionsMixin, ReadOnlyAdmin, act_on_each

from . import services
from .models import Delivery, DeliveryEvent


def delivery_admin_url(delivery: Delivery) -> str:
    """The admin page of a delivery, by its random public ID (never the sequential key)."""
    return reverse("admin:delivery_delivery_change", args=[quote(delivery.public_id)])


class DeliveryChangeList(ChangeList):
    def url_for_result(self, result):
        return delivery_admin_url(result)


@admin.register(Delivery)
class DeliveryAdmin(AgentActionsMixin, ReadOnlyAdmin):
    list_display = [
        "public_id",
        "created",
        "kind",
        "recipient",
        "status",
        "attempts",
        "last_error",
        "request",
    ]
    list_filter = ["status", "kind", "backend"]
    search_fields = ["public_id", "recipient", "message_id"]
    list_select_related = ["request"]
    show_full_result_count = False
    actions = ["retry_selected"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "public_id",
                    "request",
                    "acme_binding",
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

    def get_changelist(self, request, **kwargs):
        return DeliveryChangeList

    def get_object(self, request, object_id, from_field=None):
        """Pages are addressed by public ID; the internal key still finds the row for staff."""
        queryset = self.get_queryset(request)
        found = queryset.filter(public_id=object_id).first()
        if found is None and from_field is None and str(object_id).isdigit():
            found = queryset.filter(pk=int(object_id)).first()
        return found

    @admin.action(description="Retry selected deliveries", permissions=["approve"])
    def retry_selected(self, request, queryset):
        act_on_each(
            self,
            request,
            queryset,
            lambda delivery: services.retry_delivery(delivery.pk, actor=request.user),
            done="Retrying delivery {obj.public_id} to {obj.recipient}.",
            failed="{error}",
        )


@admin.register(DeliveryEvent)
class DeliveryEventAdmin(ReadOnlyAdmin):
    list_display = [
        "received_at",
        "provider",
        "event_type",
        "recipient",
        "message_id",
        "delivery_link",
    ]
    list_select_related = ["delivery"]
    list_filter = ["provider", "event_type"]
    search_fields = ["message_id", "recipient"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "delivery_link",
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

    @admin.display(description="delivery")
    def delivery_link(self, event):
        if event.delivery is None:
            return "-"
        return format_html(
            '<a href="{}">{}</a>', delivery_admin_url(event.delivery), event.delivery.public_id
        )


def _send(modeladmin, request, queryset, method: str) -> None:
    act_on_each(
        modeladmin,
        request,
        queryset,
        lambda cert: services.send_certificate(cert, method=method, actor=request.user),
        done="{obj.serial_colons}: queued to {outcome.recipient}.",
        failed="{obj.serial_colons}: {error}",
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
