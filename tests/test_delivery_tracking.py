"""Anymail tracking webhooks: mounted only with an ESP and its secret; an event moves only a
`sent` delivery, found by the provider's message ID that its send returned, once per event."""

from __future__ import annotations

import base64
import importlib
import json

import pytest
from django.core import checks
from django.core import mail as django_mail
from django.urls import clear_url_caches

from delivery.models import Delivery, DeliveryEvent
from requests_app import services
from requests_app.models import AuditEvent
from tests.helpers.csrs import make_csr
from tests.helpers.mailbox import submit_confirmed

Status = Delivery.Status
AUTH = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"hook:secret-for-tests").decode()}
ESP_MAILERS = {"default": {"BACKEND": "anymail.backends.test.EmailBackend"}}


def _reload_urls():
    import ca_portal.urls

    importlib.reload(ca_portal.urls)
    clear_url_caches()


@pytest.fixture
def esp(settings):
    """Mail goes through an ESP (anymail's test backend) and the webhook secret is set, as
    with ANYMAIL_ESP=postmark and ANYMAIL_WEBHOOK_SECRET: the tracking URLs are mounted."""
    settings.MAILERS = ESP_MAILERS
    settings.ANYMAIL = {"WEBHOOK_SECRET": "hook:secret-for-tests"}
    _reload_urls()
    yield
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    _reload_urls()


def _issue_link(agent, i, django_capture_on_commit_callbacks) -> Delivery:
    """A user certificate approved; its retrieval-link mail sent by the configured mailer."""
    req = submit_confirmed(
        profile="user", csr=make_csr(cn=f"U{i}"), requester_email=f"u{i}@example.test"
    )
    with django_capture_on_commit_callbacks(execute=True):
        cert = services.approve_request(req.public_id, agent=agent)
    return Delivery.objects.get(certificate=cert)


@pytest.fixture
def sent_pair(ca, agent, settings, django_capture_on_commit_callbacks):
    """Two link deliveries really sent through the ESP, each with the message ID it returned."""
    settings.DELIVERY_NOTIFICATIONS = False
    django_mail.outbox = []
    deliveries = [_issue_link(agent, i, django_capture_on_commit_callbacks) for i in range(2)]
    for delivery in deliveries:
        delivery.refresh_from_db()
        assert delivery.status == Status.SENT
        assert delivery.message_id != ""
    return deliveries


def _post(client, payload, **auth):
    return client.post(
        "/anymail/postmark/tracking/",
        data=json.dumps(payload),
        content_type="application/json",
        **(auth or AUTH),
    )


def delivered_event(message_id, metadata=None):
    """Postmark's Delivery webhook, in the shape of anymail's own test payload."""
    return {
        "RecordType": "Delivery",
        "ServerId": 23,
        "MessageID": message_id,
        "Recipient": "u0@example.test",
        "Tag": "",
        "Metadata": metadata or {},
        "DeliveredAt": "2014-08-01T13:28:10.2735393-04:00",
        "Details": "Test delivery webhook details",
    }


def bounce_event(message_id, *, event_id=901542550, metadata=None):
    """Postmark's Bounce webhook, in the shape of anymail's own test payload."""
    return {
        "RecordType": "Bounce",
        "ID": event_id,
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
        "Metadata": metadata or {},
    }


def _statuses():
    return sorted(Delivery.objects.filter(kind="link").values_list("status", flat=True))


# --- without an ESP (mail over SMTP): nothing is mounted --------------------------------


def test_a_forged_bounce_finds_no_webhook_when_mail_goes_over_smtp(client, ca, agent, settings):
    """The issue's forged Postmark bounce naming a delivery in its metadata: 404, nothing moves."""
    settings.DELIVERY_NOTIFICATIONS = False
    req = submit_confirmed(
        profile="user", csr=make_csr(cn="Victim"), requester_email="victim@example.test"
    )
    cert = services.approve_request(req.public_id, agent=agent)
    delivery = Delivery.objects.get(certificate=cert)
    Delivery.objects.filter(pk=delivery.pk).update(status=Status.SENT)
    forged = bounce_event("anything", metadata={"delivery_id": str(delivery.pk)})
    response = _post(client, forged)
    assert response.status_code == 404
    delivery.refresh_from_db()
    assert delivery.status == Status.SENT
    assert delivery.last_error == ""
    assert DeliveryEvent.objects.count() == 0
    assert not AuditEvent.objects.filter(action="delivery_bounced").exists()


def test_an_esp_without_a_webhook_secret_is_a_check_error_and_mounts_nothing(client, settings):
    """ESP configured, ANYMAIL_WEBHOOK_SECRET missing: delivery.E004, and still no webhook."""
    settings.MAILERS = ESP_MAILERS
    settings.ANYMAIL = {}
    _reload_urls()
    try:
        errors = [e for e in checks.run_checks() if e.id == "delivery.E004"]
        assert len(errors) == 1
        assert "ANYMAIL_WEBHOOK_SECRET" in errors[0].msg
        assert _post(client, bounce_event("0")).status_code == 404
    finally:
        settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
        _reload_urls()


def test_no_check_error_without_an_esp_or_with_its_secret(settings, esp):
    """SMTP needs no secret; an ESP with its secret passes."""
    assert not [e for e in checks.run_checks() if e.id == "delivery.E004"]
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend"}}
    settings.ANYMAIL = {}
    assert not [e for e in checks.run_checks() if e.id == "delivery.E004"]


# --- with an ESP and its secret -----------------------------------------------------


def test_genuine_events_move_sent_deliveries(client, esp, sent_pair):
    """Delivery and bounce events naming the message IDs the ESP returned end both deliveries."""
    delivered, bounced = sent_pair
    assert _post(client, delivered_event(delivered.message_id)).status_code == 200
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
    assert AuditEvent.objects.filter(action="delivery_delivered").count() == 1


def test_metadata_naming_a_delivery_moves_nothing(client, esp, sent_pair):
    """A bounce for a message never sent, whose metadata names a real delivery: ignored."""
    victim, _ = sent_pair
    forged = bounce_event(
        "never-sent-by-us",
        metadata={"delivery_id": str(victim.pk), "delivery": victim.public_id},
    )
    assert _post(client, forged).status_code == 200
    assert _statuses() == [Status.SENT, Status.SENT]
    assert DeliveryEvent.objects.count() == 0
    assert not AuditEvent.objects.filter(action="delivery_bounced").exists()


def test_an_event_for_a_pending_delivery_changes_nothing(client, esp, ca, agent, settings):
    """A 'delivered' for a delivery still pending (the forged stop of a queued mail): ignored."""
    settings.DELIVERY_NOTIFICATIONS = False
    req = submit_confirmed(
        profile="user", csr=make_csr(cn="Queued"), requester_email="queued@example.test"
    )
    cert = services.approve_request(req.public_id, agent=agent)  # on-commit send not run
    pending = Delivery.objects.get(certificate=cert)
    assert pending.status == Status.PENDING
    for message_id in ("", "0", pending.public_id, str(pending.pk)):
        _post(client, delivered_event(message_id, metadata={"delivery_id": str(pending.pk)}))
    pending.refresh_from_db()
    assert pending.status == Status.PENDING
    assert DeliveryEvent.objects.count() == 0


def test_an_event_moves_only_a_sent_delivery(client, esp, sent_pair):
    """A bounce after 'delivered', or for a delivery an agent retried, is recorded, not applied."""
    delivered, retried = sent_pair
    _post(client, delivered_event(delivered.message_id))
    _post(client, bounce_event(delivered.message_id, event_id=1))
    Delivery.objects.filter(pk=retried.pk).update(status=Status.PENDING)  # retried by an agent
    _post(client, bounce_event(retried.message_id, event_id=2))
    delivered.refresh_from_db()
    retried.refresh_from_db()
    assert delivered.status == Status.DELIVERED
    assert retried.status == Status.PENDING
    assert DeliveryEvent.objects.count() == 3
    assert not AuditEvent.objects.filter(action="delivery_bounced").exists()


def test_a_replayed_event_changes_nothing(client, esp, sent_pair):
    """Posting the same provider event twice records it once and changes nothing more."""
    _, bounced = sent_pair
    _post(client, bounce_event(bounced.message_id))
    Delivery.objects.filter(pk=bounced.pk).update(status=Status.SENT)
    assert _post(client, bounce_event(bounced.message_id)).status_code == 200
    bounced.refresh_from_db()
    assert bounced.status == Status.SENT
    assert DeliveryEvent.objects.count() == 1
    assert AuditEvent.objects.filter(action="delivery_bounced").count() == 1


def test_the_webhook_needs_its_secret(client, esp, sent_pair):
    """Without the basic-auth secret, or with a wrong one, the webhook refuses, records nothing."""
    delivered, _ = sent_pair
    wrong = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"hook:guess").decode()}
    for auth in ({"HTTP_X_NOTHING": ""}, wrong):
        response = _post(client, delivered_event(delivered.message_id), **auth)
        assert response.status_code == 400
    assert DeliveryEvent.objects.count() == 0
    assert _statuses() == [Status.SENT, Status.SENT]


def test_sent_mail_names_the_delivery_by_its_public_id_only(esp, sent_pair):
    """The header and the ESP metadata carry the random public ID, never the sequential key."""
    delivery, _ = sent_pair
    message = django_mail.outbox[0]
    assert message.extra_headers["X-CA-Portal-Delivery"] == delivery.public_id
    assert message.metadata == {"delivery": delivery.public_id}
    assert message.extra_headers["Message-ID"] == delivery.rfc_message_id
