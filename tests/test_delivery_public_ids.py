"""Deliveries are named outside the database by a random public ID, never by their sequential
key: agent pages, retry URLs, admin links, mail headers; and each keeps one Message-ID."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from delivery import services as delivery_services
from delivery.models import Delivery
from requests_app import services
from requests_app.models import PUBLIC_ID_ALPHABET, PUBLIC_ID_LENGTH
from tests.helpers.mfa import login_verified

Status = Delivery.Status


@pytest.fixture
def failed_deliveries(pending_request, agent):
    cert = services.approve_request(pending_request.public_id, agent=agent)
    return [
        Delivery.objects.create(
            request=pending_request,
            certificate=cert,
            backend="email_link",
            kind="link",
            recipient=f"r{i}@example.test",
            status=Status.FAILED,
            last_error="550 mailbox unavailable",
        )
        for i in range(3)
    ]


def test_public_ids_are_random_not_sequential(failed_deliveries):
    """Each delivery gets 100 random bits in Crockford base32, unrelated to its key."""
    ids = [d.public_id for d in failed_deliveries]
    assert len(set(ids)) == len(ids)
    for public_id in ids:
        assert len(public_id) == PUBLIC_ID_LENGTH
        assert set(public_id) <= set(PUBLIC_ID_ALPHABET)
    assert all(str(d.pk) != d.public_id for d in failed_deliveries)


def test_the_agent_page_links_retry_by_public_id(client, agent, failed_deliveries):
    """The panel's Retry (and Send now) forms post to /agent/deliveries/<public id>/retry/,
    never the key."""
    delivery = failed_deliveries[0]
    login_verified(client, agent)
    page = client.get(delivery.request.get_agent_url()).content.decode()
    actions = re.findall(r'action="/agent/deliveries/([^/"]+)/retry/"', page)
    assert {d.public_id for d in failed_deliveries} <= set(actions)
    of_request = Delivery.objects.filter(request=delivery.request)
    assert set(actions) <= set(of_request.values_list("public_id", flat=True))


def test_retry_by_the_sequential_key_finds_nothing(
    client, agent, failed_deliveries, django_capture_on_commit_callbacks
):
    """POSTing the integer key is a 404 and retries nothing; the public ID retries."""
    delivery = failed_deliveries[0]
    login_verified(client, agent)
    assert client.post(f"/agent/deliveries/{delivery.pk}/retry/").status_code == 404
    delivery.refresh_from_db()
    assert delivery.status == Status.FAILED
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/agent/deliveries/{delivery.public_id}/retry/")
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == Status.SENT


def test_admin_links_use_public_ids(admin_client, failed_deliveries):
    """The outbox's changelist links each row by public ID, and that page opens."""
    page = admin_client.get(reverse("admin:delivery_delivery_changelist")).content.decode()
    for delivery in failed_deliveries:
        url = reverse("admin:delivery_delivery_change", args=[delivery.public_id])
        assert url in page
        assert reverse("admin:delivery_delivery_change", args=[delivery.pk]) not in page
        detail = admin_client.get(url)
        assert detail.status_code == 200
        assert delivery.recipient in detail.content.decode()


def test_each_copy_of_a_delivery_carries_the_same_message_id(
    pending_request, agent, smtp_server, settings
):
    """A delivery sent, revived and sent again: the server receives one Message-ID twice."""
    settings.DELIVERY_NOTIFICATIONS = False
    cert = services.approve_request(pending_request.public_id, agent=agent)
    delivery = delivery_services.send_certificate(cert, method="link")
    assert delivery_services.deliver(delivery.pk) == Status.SENT
    Delivery.objects.filter(pk=delivery.pk).update(status=Status.FAILED)
    delivery_services.revive_failed_deliveries()
    assert delivery_services.deliver(delivery.pk) == Status.SENT
    ids = [m["Message-ID"] for m in smtp_server.messages]
    assert len(ids) == 2
    assert ids[0] == ids[1] == delivery.rfc_message_id
    assert [m["X-CA-Portal-Delivery"] for m in smtp_server.messages] == [delivery.public_id] * 2
