"""Send now and Retry on the delivery panel: the service (compare-and-swap, leases, refusals,
audit), its view (agents only, second factor, CSRF, POST), and the panel's status fragment."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.utils import timezone

from ca_portal.settings import build_mailers
from delivery import services as delivery_services
from delivery.models import Delivery
from requests_app import services
from requests_app.models import AuditEvent
from tests.helpers.concurrency import race
from tests.helpers.mfa import login_verified
from tests.helpers.servers import free_port

Status = Delivery.Status
RETRY = "delivery_retry_requested"


@pytest.fixture
def issued(pending_request, agent):
    cert = services.approve_request(pending_request.public_id, agent=agent)
    pending_request.refresh_from_db()
    return pending_request, cert


@pytest.fixture
def mail_server_down(settings):
    """The mailer points at a port where nothing listens."""
    settings.MAILERS = build_mailers(f"smtp://127.0.0.1:{free_port()}?timeout=2", "")


@pytest.fixture
def waiting(issued, agent, mail_server_down, django_capture_on_commit_callbacks):
    """An agent's "Email certificate" that failed against the dead mail server: pending,
    its next try 30 s away."""
    req, cert = issued
    with django_capture_on_commit_callbacks(execute=True):
        delivery = delivery_services.send_certificate(
            cert, method="certificate", to="ops@example.test", actor=agent
        )
    delivery.refresh_from_db()
    assert delivery.status == Status.PENDING and delivery.attempts == 1
    assert delivery.last_error and delivery.next_attempt_at > timezone.now()
    return delivery


def _snapshot(delivery: Delivery) -> tuple:
    delivery.refresh_from_db()
    return (
        delivery.status,
        delivery.attempts,
        delivery.next_attempt_at,
        delivery.lease_until,
        delivery.updated,
    )


def test_send_now_sends_a_pending_delivery_through_the_real_server(
    waiting, agent, smtp_server, django_capture_on_commit_callbacks
):
    """A pending row is made due, its backoff started afresh, and the running server gets it."""
    with django_capture_on_commit_callbacks(execute=True):
        delivery_services.retry_delivery(waiting.pk, actor=agent)
    waiting.refresh_from_db()
    assert waiting.status == Status.SENT
    assert waiting.attempts == 1  # started afresh, then this one try
    assert [m["To"] for m in smtp_server.messages] == ["ops@example.test"]
    assert smtp_server.messages[0].get_payload()  # a real message, with the certificate
    event = AuditEvent.objects.get(action=RETRY)
    assert event.actor == agent
    assert (event.details["was"], event.details["attempts"]) == ("pending", 1)


def test_a_double_click_changes_the_row_once_and_sends_once(
    waiting, agent, smtp_server, django_capture_on_commit_callbacks
):
    """Two clicks before either task runs: one audit row, two tasks, one message."""
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        delivery_services.retry_delivery(waiting.pk, actor=agent)
        delivery_services.retry_delivery(waiting.pk, actor=agent)
    assert len(callbacks) == 2  # both enqueue: claim() lets one of them send
    assert len(smtp_server.messages) == 1
    assert AuditEvent.objects.filter(action=RETRY).count() == 1
    assert Delivery.objects.get(pk=waiting.pk).status == Status.SENT
    with pytest.raises(delivery_services.DeliveryRefused, match="is sent already"):
        delivery_services.retry_delivery(waiting.pk, actor=agent)
    assert len(smtp_server.messages) == 1


def test_a_leased_row_is_left_alone(
    waiting, agent, smtp_server, django_capture_on_commit_callbacks
):
    """A row a worker is sending right now is refused, unchanged, unaudited and not sent."""
    lease_until = timezone.now() + dt.timedelta(minutes=4)
    Delivery.objects.filter(pk=waiting.pk).update(status=Status.SENDING, lease_until=lease_until)
    before = _snapshot(waiting)
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(delivery_services.DeliveryRefused, match="being sent right now"),
    ):
        delivery_services.retry_delivery(waiting.pk, actor=agent)
    assert _snapshot(waiting) == before
    assert not AuditEvent.objects.filter(action=RETRY).exists()
    assert smtp_server.messages == []


def test_a_row_whose_lease_ran_out_is_sent(
    waiting, agent, smtp_server, django_capture_on_commit_callbacks
):
    """A row left "sending" by a crashed worker (lease expired) is taken back and sent."""
    Delivery.objects.filter(pk=waiting.pk).update(
        status=Status.SENDING, lease_until=timezone.now() - dt.timedelta(seconds=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        delivery_services.retry_delivery(waiting.pk, actor=agent)
    assert Delivery.objects.get(pk=waiting.pk).status == Status.SENT
    assert len(smtp_server.messages) == 1


@pytest.mark.parametrize("status", [Status.SENT, Status.DELIVERED])
def test_a_sent_row_is_refused_clearly(waiting, agent, smtp_server, status):
    """Sent and delivered rows are refused with a message saying how to mail it again."""
    Delivery.objects.filter(pk=waiting.pk).update(status=status)
    before = _snapshot(waiting)
    with pytest.raises(delivery_services.DeliveryRefused) as refused:
        delivery_services.retry_delivery(waiting.pk, actor=agent)
    assert f"is {status} already" in refused.value.message
    assert "Email certificate" in refused.value.message
    assert _snapshot(waiting) == before
    assert smtp_server.messages == []


def test_retry_gives_a_failed_row_a_fresh_budget(
    waiting, agent, settings, smtp_server, django_capture_on_commit_callbacks
):
    """A row that failed after its last allowed attempt gets the whole backoff again."""
    Delivery.objects.filter(pk=waiting.pk).update(
        status=Status.FAILED, attempts=settings.DELIVERY_MAX_ATTEMPTS, next_attempt_at=None
    )
    settings.MAILERS = build_mailers(f"smtp://127.0.0.1:{free_port()}?timeout=2", "")
    with django_capture_on_commit_callbacks(execute=True):
        delivery_services.retry_delivery(waiting.pk, actor=agent)
    waiting.refresh_from_db()
    # Failed once more, but pending again, first retry within a minute, not "failed" for good.
    assert (waiting.status, waiting.attempts) == (Status.PENDING, 1)
    assert waiting.next_attempt_at - timezone.now() <= dt.timedelta(seconds=31)


# --- the view ---------------------------------------------------------------------------


def _issued_url(req) -> str:
    return f"/agent/requests/{req.public_id}/issued/"


@pytest.mark.django_db(transaction=True)
def test_send_now_lands_on_the_panel_with_the_outcome_in_words(client, waiting, agent, smtp_server):
    """The agent is sent back to the panel's anchor; the panel says what happened (the
    task runs on commit, as in production, before the view reports)."""
    req = waiting.request
    login_verified(client, agent)
    page = client.get(_issued_url(req)).content.decode()
    assert "Send now" in page and "Retry" not in page
    response = client.post(
        f"/agent/deliveries/{waiting.public_id}/retry/", {"next": _issued_url(req)}
    )
    assert response["Location"] == _issued_url(req) + "#delivery"
    page = client.get(_issued_url(req)).content.decode()
    said = "Sent the certificate to ops@example.test."
    assert page.count(said) == 1
    # In the panel, where the page opens, not in the page's messages at the top.
    assert page.index('id="delivery"') < page.index(said)
    assert "(pending)" not in page
    assert len(smtp_server.messages) == 1


def test_a_deferred_send_now_says_it_is_sending(client, waiting, agent):
    """While the task has not run yet (a worker's queue), the message says it is on its way."""
    login_verified(client, agent)
    response = client.post(f"/agent/deliveries/{waiting.public_id}/retry/", follow=True)
    page = response.content.decode()  # the test's transaction holds back the task
    assert "Sending the certificate to ops@example.test now" in page
    assert response.redirect_chain[-1][0].endswith("#delivery")


@pytest.mark.django_db(transaction=True)
def test_a_failed_send_now_says_why_and_when_next(client, waiting, agent):
    """With the mail server still down the message gives the error and the next try."""
    login_verified(client, agent)
    page = client.post(f"/agent/deliveries/{waiting.public_id}/retry/", follow=True)
    page = page.content.decode()
    assert "Not sent yet: the certificate to ops@example.test failed (" in page
    assert "It is tried again at" in page


def test_the_view_refuses_a_sent_row_with_the_reason(client, waiting, agent):
    """Send now on a sent row answers with the refusal in the panel and changes nothing."""
    Delivery.objects.filter(pk=waiting.pk).update(status=Status.SENT)
    login_verified(client, agent)
    response = client.post(f"/agent/deliveries/{waiting.public_id}/retry/", follow=True)
    assert "is sent already" in response.content.decode()
    assert not AuditEvent.objects.filter(action=RETRY).exists()


@pytest.mark.parametrize("who", ["anonymous", "non_agent", "agent_without_second_factor"])
def test_send_now_needs_an_agent_past_the_second_factor(client, waiting, agent, who):
    """Anyone else's POST is refused with 403 and changes nothing."""
    if who == "non_agent":
        login_verified(client, User.objects.create_user("visitor", password="x" * 12))
    elif who == "agent_without_second_factor":
        client.force_login(agent)
    before = _snapshot(waiting)
    response = client.post(f"/agent/deliveries/{waiting.public_id}/retry/")
    assert response.status_code == 403
    assert _snapshot(waiting) == before
    assert not AuditEvent.objects.filter(action=RETRY).exists()


def test_send_now_needs_csrf_and_post(waiting, agent):
    """Without the CSRF token, or as a GET, the agent's own request changes nothing."""
    strict = login_verified(Client(enforce_csrf_checks=True), agent)
    before = _snapshot(waiting)
    assert strict.post(f"/agent/deliveries/{waiting.public_id}/retry/").status_code == 403
    assert strict.get(f"/agent/deliveries/{waiting.public_id}/retry/").status_code == 405
    assert _snapshot(waiting) == before
    assert not AuditEvent.objects.filter(action=RETRY).exists()


def test_next_elsewhere_is_ignored(client, waiting, agent):
    """A next URL on another host does not take the agent off the portal."""
    login_verified(client, agent)
    response = client.post(
        f"/agent/deliveries/{waiting.public_id}/retry/", {"next": "https://evil.example/"}
    )
    assert response["Location"] == waiting.request.get_agent_url() + "#delivery"


# --- the panel and its status fragment ----------------------------------------------------


def test_the_panel_comes_right_after_the_summary(client, issued, agent):
    """On the issued page the panel precedes the PEM, downloads and contents."""
    req, cert = issued
    login_verified(client, agent)
    page = client.get(_issued_url(req)).content.decode()
    assert page.index("Approved by") < page.index('id="delivery"')
    assert page.index('id="delivery"') < page.index("Base-64 encoded certificate")
    assert 'type="email" id="delivery-to"' in page


def test_a_pending_row_offers_refresh_and_the_static_script(client, waiting, agent):
    """Without JavaScript a Refresh link to the panel remains; the script is a static file."""
    login_verified(client, agent)
    page = client.get(_issued_url(waiting.request)).content.decode()
    assert f'href="{_issued_url(waiting.request)}#delivery">Refresh</a>' in page
    assert "/static/ca_portal/delivery_status.js" in page
    assert "<script>" not in page  # the CSP allows no inline script


def test_the_status_fragment_shows_the_table_to_agents(client, waiting, agent):
    """An agent gets the deliveries table, uncached, with the pending row and Send now."""
    login_verified(client, agent)
    response = client.get(
        f"/agent/deliveries/request/{waiting.request.public_id}/",
        {"next": _issued_url(waiting.request)},
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    assert "ops@example.test" in body and "pending" in body and "Send now" in body
    assert "data-in-flight" in body
    assert f'value="{_issued_url(waiting.request)}"' in body
    Delivery.objects.filter(request=waiting.request).update(status=Status.SENT)
    body = client.get(f"/agent/deliveries/request/{waiting.request.public_id}/").content.decode()
    assert "<strong>sent</strong>" in body and "data-in-flight" not in body
    assert client.post(f"/agent/deliveries/request/{waiting.request.public_id}/").status_code in (
        403,  # CSRF
        405,
    )


def test_the_status_fragment_ignores_a_foreign_next(client, waiting, agent):
    """A next on another host is not written into the fragment's forms."""
    login_verified(client, agent)
    body = client.get(
        f"/agent/deliveries/request/{waiting.request.public_id}/",
        {"next": "https://evil.example/x"},
    ).content.decode()
    assert "evil.example" not in body


@pytest.mark.parametrize("who", ["anonymous", "non_agent", "agent_without_second_factor"])
def test_the_status_fragment_reveals_nothing_to_others(client, waiting, agent, who):
    """Others get a redirect or 403 without the recipient, status or error, and an unknown
    request answers them exactly as a real one does."""
    if who == "non_agent":
        login_verified(client, User.objects.create_user("visitor", password="x" * 12))
    elif who == "agent_without_second_factor":
        client.force_login(agent)
    real = client.get(f"/agent/deliveries/request/{waiting.request.public_id}/")
    unknown = client.get("/agent/deliveries/request/RQ-NOPE-NOPE-NOPE/")
    for response in (real, unknown):
        body = response.content.decode()
        assert response.status_code in (302, 403)
        assert "ops@example.test" not in body and "pending" not in body
        assert waiting.last_error not in body
    assert real.status_code == unknown.status_code
    if real.status_code == 302:
        assert real["Location"].split("?")[0] == unknown["Location"].split("?")[0]
        assert "/accounts/" in real["Location"]


# --- PostgreSQL: clicks racing for real ---------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="concurrent writers are only real on PostgreSQL; CI runs this with DATABASE_URL set",
)
def test_eight_clicks_at_once_send_one_message(issued, agent, smtp_server):
    """Eight Send now clicks racing on one pending row: one audit row, one message, one
    "sent"; the others are told it is being sent or sent already."""
    req, cert = issued
    delivery = Delivery.objects.create(
        request=req,
        certificate=cert,
        backend="email_certificate",
        kind="certificate",
        recipient="race@example.test",
        attempts=3,
        last_error="cannot reach the mail server",
        next_attempt_at=timezone.now() + dt.timedelta(minutes=4),
    )
    results, errors = race(lambda: delivery_services.retry_delivery(delivery.pk, actor=agent), 8)
    assert all(isinstance(e, delivery_services.DeliveryRefused) for e in errors), errors
    assert len(results) + len(errors) == 8
    assert [m["To"] for m in smtp_server.messages] == ["race@example.test"]
    assert AuditEvent.objects.filter(action=RETRY).count() == 1
    assert (
        AuditEvent.objects.filter(action="delivery_sent", details__delivery=delivery.pk).count()
        == 1
    )
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Status.SENT, 1)
