"""Manual delivery by agents: the issued page's buttons, retry, and the admin actions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from delivery.models import Delivery
from requests_app import services
from requests_app.models import AuditEvent
from tests.helpers.csrs import make_csr
from tests.helpers.mailbox import submit_confirmed
from tests.helpers.mfa import login_verified

Status = Delivery.Status


@pytest.fixture(autouse=True)
def _no_ready_mail(settings):
    """These tests count the deliveries they make; the ready mail a server requester gets
    on approval is tested in test_mails."""
    settings.DELIVERY_READY_MAIL = False


@pytest.fixture
def issued_server(pending_request, agent):
    cert = services.approve_request(pending_request.public_id, agent=agent)
    pending_request.refresh_from_db()
    return pending_request, cert


def test_issued_page_offers_manual_delivery(client, agent, issued_server):
    """The certificate-issued page has Email certificate, Email retrieval link and Copy link."""
    req, cert = issued_server
    login_verified(client, agent)
    page = client.get(f"/agent/requests/{req.public_id}/issued/").content.decode()
    for text in (
        "Email certificate",
        "Email retrieval link",
        "Copy link",
        "/retrieve/",
        req.requester_email,
    ):
        assert text in page


def test_agent_sends_a_certificate_by_hand(
    client, agent, issued_server, mailoutbox, django_capture_on_commit_callbacks
):
    """Email certificate on the issued page mails it to the chosen address with the note."""
    req, cert = issued_server
    login_verified(client, agent)
    issued_url = f"/agent/requests/{req.public_id}/issued/"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/agent/deliveries/send/{cert.serial}/",
            {
                "method": "certificate",
                "to": "web@example.test",
                "note": "For the load balancer",
                "next": issued_url,
            },
        )
    assert response.status_code == 302 and response["Location"] == issued_url + "#delivery"
    assert mailoutbox[-1].to == ["web@example.test"]
    assert "For the load balancer" in mailoutbox[-1].body
    delivery = Delivery.objects.get(certificate=cert)
    assert (delivery.status, delivery.requested_by) == (Status.SENT, agent)
    page = client.get(issued_url).content.decode()
    assert "web@example.test" in page and "sent" in page


def test_a_bad_recipient_is_refused_on_the_page(client, agent, issued_server):
    """A recipient with a header injection is refused with a message and nothing is queued."""
    req, cert = issued_server
    login_verified(client, agent)
    response = client.post(
        f"/agent/deliveries/send/{cert.serial}/",
        {"method": "link", "to": "a@example.test\r\nBcc: evil@example.test"},
        follow=True,
    )
    assert "Not sent" in response.content.decode()
    assert not Delivery.objects.filter(certificate=cert).exists()


def test_agent_retries_a_failed_delivery(
    client, agent, issued_server, django_capture_on_commit_callbacks, mailoutbox
):
    """Retry on a failed delivery sends it again and the page shows it sent."""
    req, cert = issued_server
    delivery = Delivery.objects.create(
        request=req,
        certificate=cert,
        backend="email_link",
        kind="link",
        recipient=req.requester_email,
        status=Status.FAILED,
        last_error="550 mailbox unavailable",
    )
    login_verified(client, agent)
    page = client.get(f"/agent/requests/{req.public_id}/issued/").content.decode()
    assert "550 mailbox unavailable" in page and "Retry" in page
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/agent/deliveries/{delivery.public_id}/retry/")
    delivery.refresh_from_db()
    assert delivery.status == Status.SENT
    assert len(mailoutbox) == 1


@pytest.mark.parametrize("who", ["anonymous", "non_agent"])
def test_delivery_actions_need_the_agent_permission(client, db, issued_server, who):
    """Without the agent permission the send and retry actions are refused and change nothing."""
    req, cert = issued_server
    if who == "non_agent":
        login_verified(client, User.objects.create_user("visitor", password="x" * 12))
    delivery = Delivery.objects.create(
        request=req,
        certificate=cert,
        backend="email_link",
        kind="link",
        recipient=req.requester_email,
        status=Status.FAILED,
    )
    assert (
        client.post(f"/agent/deliveries/send/{cert.serial}/", {"method": "link"}).status_code == 403
    )
    assert client.post(f"/agent/deliveries/{delivery.public_id}/retry/").status_code == 403
    assert Delivery.objects.get(pk=delivery.pk).status == Status.FAILED
    assert Delivery.objects.filter(certificate=cert).count() == 1


def test_bounces_are_flagged_on_the_queue(client, agent, issued_server):
    """A request whose delivery bounced is marked in the agent's list."""
    req, cert = issued_server
    Delivery.objects.create(
        request=req,
        certificate=cert,
        backend="email_link",
        kind="link",
        recipient=req.requester_email,
        status=Status.BOUNCED,
    )
    login_verified(client, agent)
    page = client.get("/agent/").content.decode()
    assert "delivery-problem" in page


def test_admin_send_and_retry_actions(
    client, agent, issued_server, django_capture_on_commit_callbacks, mailoutbox
):
    """The certificate admin sends to the requester; the delivery admin retries a failed one."""
    req, cert = issued_server
    login_verified(client, agent)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/admin/requests_app/certificate/",
            {"action": "send_certificate_selected", "_selected_action": [cert.pk]},
            follow=True,
        )
    shown = [str(m) for m in response.context["messages"]]
    assert shown == [f"{cert.serial_colons}: queued to {req.requester_email}."], (
        response.redirect_chain,
        shown,
    )
    assert mailoutbox[-1].attachments
    delivery = Delivery.objects.get(certificate=cert)
    Delivery.objects.filter(pk=delivery.pk).update(status=Status.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            "/admin/delivery/delivery/",
            {"action": "retry_selected", "_selected_action": [delivery.pk]},
        )
    delivery.refresh_from_db()
    assert delivery.status == Status.SENT
    assert AuditEvent.objects.filter(action="delivery_retry_requested", actor=agent).exists()


def test_admin_delivery_actions_hidden_without_permission(client, db, issued_server):
    """A staff user without the agent permission cannot run the send action."""
    req, cert = issued_server
    staff = User.objects.create_user("staff", password="x" * 12, is_staff=True)
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(Permission.objects.get(codename="view_certificate"))
    login_verified(client, staff)
    client.post(
        "/admin/requests_app/certificate/",
        {"action": "send_certificate_selected", "_selected_action": [cert.pk]},
    )
    assert not Delivery.objects.filter(certificate=cert).exists()


def test_user_certificate_gets_its_link_automatically(
    ca, agent, django_capture_on_commit_callbacks, mailoutbox
):
    """A user certificate is mailed as a link on approval without an agent lifting a finger."""
    req = submit_confirmed(profile="user", csr=make_csr(cn="Bo"), requester_email="bo@example.test")
    with django_capture_on_commit_callbacks(execute=True):
        services.approve_request(req.public_id, agent=agent)
    assert any("/retrieve/" in m.body for m in mailoutbox if m.to == ["bo@example.test"])
