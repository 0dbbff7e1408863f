"""Anymail tracking webhooks move deliveries to delivered or bounced, once per event."""

from __future__ import annotations

import base64
import json

import pytest
from django.utils import timezone

from delivery.models import Delivery, DeliveryEvent
from requests_app import services
from requests_app.models import AuditEvent
from tests.helpers.csrs import make_csr
from tests.helpers.mailbox import submit_confirmed

Status = Delivery.Status
AUTH = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"hook:secret-for-tests").decode()}


@pytest.fixture
def sent_pair(ca, agent):
    """Two sent link deliveries with provider message IDs, as an ESP would have returned."""
    deliveries = []
    for i, message_id in enumerate(
        ["883953f4-6105-42a2-a16a-77a8eac79483", "2706ee8a-737c-4285-b032-ccd317af53ed"]
    ):
        req = submit_confirmed(
            profile="user", csr=make_csr(cn=f"U{i}"), requester_email=f"u{i}@example.test"
        )
        cert = services.approve_request(req.public_id, agent=agent)
        delivery = Delivery.objects.get(certificate=cert)
        Delivery.objects.filter(pk=delivery.pk).update(
            status=Status.SENT, message_id=message_id, sent_at=timezone.now()
        )
        delivery.refresh_from_db()
        deliveries.append(delivery)
    return deliveries


def _post(client, payload):
    return client.post(
        "/anymail/postmark/tracking/",
        data=json.dumps(payload),
        content_type="application/json",
        **AUTH,
    )


def delivered_event(message_id, delivery_id):
    """Postmark's Delivery webhook, in the shape of anymail's own test payload."""
    return {
        "RecordType": "Delivery",
        "ServerId": 23,
        "MessageID": message_id,
        "Recipient": "u0@example.test",
        "Tag": "",
        "Metadata": {"delivery_id": str(delivery_id)},
        "DeliveredAt": "2014-08-01T13:28:10.2735393-04:00",
        "Details": "Test delivery webhook details",
    }


def bounce_event(message_id):
    """Postmark's Bounce webhook, in the shape of anymail's own test payload (no metadata)."""
    return {
        "RecordType": "Bounce",
        "ID": 901542550,
        "Type": "HardBounce",
        "TypeCode": 1,
        "ServerID": 23,
        "Name": "Hard bounce",
        "MessageID": message_id,
        "Description": (
            "The server was unable to deliver your message (ex: unknown user, mailbox not found)."
        ),
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": "u1@example.test",
        "From": "sender@example.com",
        "BouncedAt": "2016-04-27T16:28:50.3963933-04:00",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Postmark event test",
    }


def test_delivered_and_bounced_events_move_their_deliveries(client, sent_pair):
    """A delivery event (found by metadata) and a bounce (found by message ID) set the status."""
    delivered, bounced = sent_pair
    assert _post(client, delivered_event(delivered.message_id, delivered.pk)).status_code == 200
    assert _post(client, bounce_event(bounced.message_id)).status_code == 200
    delivered.refresh_from_db()
    bounced.refresh_from_db()
    assert delivered.status == Status.DELIVERED
    assert bounced.status == Status.BOUNCED
    assert "unable to deliver" in bounced.last_error
    assert DeliveryEvent.objects.filter(
        delivery=bounced, provider="Postmark", event_id="901542550"
    ).exists()
    assert (
        AuditEvent.objects.filter(
            action="delivery_bounced", certificate=bounced.certificate
        ).count()
        == 1
    )


def test_a_replayed_event_changes_nothing(client, sent_pair):
    """Posting the same provider event twice records it once and changes nothing more."""
    _, bounced = sent_pair
    _post(client, bounce_event(bounced.message_id))
    Delivery.objects.filter(pk=bounced.pk).update(
        status=Status.PENDING
    )  # an agent retried meanwhile
    assert _post(client, bounce_event(bounced.message_id)).status_code == 200
    bounced.refresh_from_db()
    assert bounced.status == Status.PENDING
    assert DeliveryEvent.objects.count() == 1
    assert AuditEvent.objects.filter(action="delivery_bounced").count() == 1


def test_the_webhook_needs_its_secret(client, sent_pair):
    """Without the basic-auth secret the webhook refuses and records nothing."""
    delivered, _ = sent_pair
    response = client.post(
        "/anymail/postmark/tracking/",
        data=json.dumps(delivered_event(delivered.message_id, delivered.pk)),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert DeliveryEvent.objects.count() == 0


def test_an_event_for_an_unknown_message_is_kept_unattached(client, sent_pair):
    """An event naming no delivery of ours is recorded for the record and moves nothing."""
    _post(client, bounce_event("00000000-0000-0000-0000-000000000000"))
    event = DeliveryEvent.objects.get()
    assert event.delivery is None
    assert set(Delivery.objects.filter(kind="link").values_list("status", flat=True)) == {
        Status.SENT
    }
