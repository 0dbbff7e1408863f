"""The outbox: rows written with the approval, claimed once, retried with backoff, swept."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from delivery import services as delivery_services
from delivery.backends import test as test_backend
from delivery.models import Delivery
from requests_app import services
from requests_app.models import AuditEvent
from tests.helpers.csrs import make_csr
from tests.helpers.mailbox import confirmed, submit_confirmed

Status = Delivery.Status


@pytest.fixture(autouse=True)
def _empty_test_outbox():
    test_backend.outbox.clear()
    yield
    test_backend.outbox.clear()


@pytest.fixture
def user_request(ca):
    return submit_confirmed(
        profile="user", csr=make_csr(cn="Ann Example"), requester_email="ann@example.test"
    )


def _approve(req, agent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return services.approve_request(req.public_id, agent=agent)


def test_approval_writes_the_outbox_row_in_its_transaction(
    user_request, agent, django_capture_on_commit_callbacks, mailoutbox
):
    """Approving a user request writes one link delivery, sent after commit."""
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        cert = services.approve_request(user_request.public_id, agent=agent)
        delivery = Delivery.objects.get(certificate=cert)
        assert (delivery.kind, delivery.backend, delivery.status) == (
            "link",
            "email_link",
            "pending",
        )
        assert delivery.recipient == "ann@example.test"
    assert mailoutbox == []  # nothing is sent before the approval commits
    for callback in callbacks:
        callback()
    delivery.refresh_from_db()
    assert delivery.status == Status.SENT
    assert delivery.attempts == 1
    assert [m.to for m in mailoutbox] == [["ann@example.test"]]
    assert "Your certificate is ready" in mailoutbox[0].subject


def test_a_rolled_back_approval_mails_nobody(
    user_request, agent, django_capture_on_commit_callbacks
):
    """When the approval fails after the receiver ran, its outbox rows vanish with it."""
    from requests_app import signals

    def explode(sender, **kwargs):
        raise RuntimeError("later receiver failed")

    signals.certificate_issued.connect(explode)
    try:
        with pytest.raises(RuntimeError), django_capture_on_commit_callbacks(execute=True):
            services.approve_request(user_request.public_id, agent=agent)
    finally:
        signals.certificate_issued.disconnect(explode)
    assert not Delivery.objects.filter(kind="link").exists()


@pytest.mark.parametrize(
    ("policy", "automatic", "profile", "expected"),
    [
        (None, True, "server", []),
        (None, True, "user", ["email_link"]),
        (None, True, "agent", ["email_link"]),
        ({"server": ["email_certificate"]}, True, "server", ["email_certificate"]),
        (None, False, "user", []),
    ],
)
def test_delivery_policy(settings, policy, automatic, profile, expected):
    """DELIVERY_POLICY picks the automatic backends per profile; one switch turns them all off."""
    settings.DELIVERY_POLICY = policy
    settings.DELIVERY_AUTOMATIC = automatic
    assert delivery_services.automatic_backends(profile) == expected


def test_server_certificates_are_not_sent_automatically(
    pending_request, agent, django_capture_on_commit_callbacks
):
    """By default a server certificate is neither attached nor posted: its requester gets
    one "ready" mail with the link, and the certificate waits on the end-entity pages."""
    cert = _approve(pending_request, agent, django_capture_on_commit_callbacks)
    (ready,) = Delivery.objects.filter(certificate=cert)
    assert (ready.kind, ready.backend, ready.recipient) == (
        "link",
        "email_link",
        "admin@example.test",
    )


def test_notifications_on_submit_reject_and_cancel(
    ca, agent, django_capture_on_commit_callbacks, mailoutbox
):
    """The requester hears of receipt, rejection and cancellation; agents hear of new requests."""
    with django_capture_on_commit_callbacks(execute=True):
        first = services.submit_request(
            profile="server", csr=make_csr(cn="a.example.test"), requester_email="ops@example.test"
        )
    subjects = sorted((m.to[0], m.subject) for m in mailoutbox)
    assert subjects == [
        ("agent1@example.test", f"Request {first.display_id} (server) is waiting for approval"),
        ("ops@example.test", f"Certificate request {first.display_id} received"),
    ]
    waiting = next(m for m in mailoutbox if m.to == ["agent1@example.test"])
    assert f"http://testserver/agent/requests/{first.public_id}/" in waiting.body
    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.reject_request(first.public_id, agent=agent, reason="Hostname not ours")
    assert [m.subject for m in mailoutbox] == [
        f"Certificate request {first.display_id} was rejected"
    ]
    assert "Hostname not ours" in mailoutbox[0].body
    assert "Hostname not ours" in mailoutbox[0].alternatives[0].content
    with django_capture_on_commit_callbacks(execute=True):
        second = services.submit_request(
            profile="server", csr=make_csr(cn="b.example.test"), requester_email="ops@example.test"
        )
    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.cancel_request(second.public_id, agent=agent)
    assert [m.subject for m in mailoutbox] == [
        f"Certificate request {second.display_id} was canceled"
    ]


def test_agent_notify_email_overrides_the_agents(
    settings, ca, agent, django_capture_on_commit_callbacks, mailoutbox
):
    """AGENT_NOTIFY_EMAIL receives the waiting notice instead of each agent."""
    settings.AGENT_NOTIFY_EMAIL = ["ca-team@example.test"]
    with django_capture_on_commit_callbacks(execute=True):
        services.submit_request(
            profile="server", csr=make_csr(cn="a.example.test"), requester_email="ops@example.test"
        )
    assert sorted(m.to[0] for m in mailoutbox) == ["ca-team@example.test", "ops@example.test"]


# --- claiming and retrying -----------------------------------------------------------


def _queued(req, *, backend="test", kind="request_received"):
    delivery = Delivery.objects.create(
        request=req,
        backend=backend,
        kind=kind,
        recipient=req.requester_email,
        next_attempt_at=timezone.now(),
    )
    return delivery


def test_a_delivery_is_claimed_once(pending_request):
    """Two claims of the same due row: the first wins, the second sends nothing."""
    delivery = _queued(pending_request)
    assert delivery_services.deliver(delivery.pk) == Status.SENT
    assert delivery_services.deliver(delivery.pk) == "not-claimed"
    assert len(test_backend.outbox) == 1
    delivery.refresh_from_db()
    assert delivery.message_id == "test-1"
    assert (
        AuditEvent.objects.filter(action="delivery_sent", details__delivery=delivery.pk).count()
        == 1
    )


def test_a_crashed_workers_lease_expires(pending_request):
    """A row left 'sending' by a dead worker is claimed again once its lease has passed."""
    delivery = _queued(pending_request)
    assert delivery_services.claim(delivery.pk)
    assert not delivery_services.claim(delivery.pk)  # the lease holds
    later = timezone.now() + delivery_services.lease() + dt.timedelta(seconds=1)
    assert delivery_services.claim(delivery.pk, now=later)
    delivery.refresh_from_db()
    assert delivery.attempts == 2


def test_temporary_failure_schedules_a_retry_with_backoff(settings, pending_request):
    """A temporary failure leaves the row pending with the error and the next attempt time."""
    settings.DELIVERY_BACKENDS = settings.DELIVERY_BACKENDS | {
        "test": {"BACKEND": "delivery.backends.test.TestBackend", "OPTIONS": {"fail": "temporary"}}
    }
    delivery = _queued(pending_request)
    before = timezone.now()
    assert delivery_services.deliver(delivery.pk) == Status.PENDING
    delivery.refresh_from_db()
    assert delivery.status == Status.PENDING
    assert "told to fail (temporary)" in delivery.last_error
    assert (
        before + dt.timedelta(seconds=29)
        < delivery.next_attempt_at
        < before + dt.timedelta(seconds=61)
    )
    assert AuditEvent.objects.filter(action="delivery_retry_scheduled").count() == 1


def test_backoff_grows_to_its_ceiling(settings):
    """The first retry comes within a minute and later ones back off up to an hour."""
    delays = [delivery_services.backoff(n).total_seconds() for n in range(1, 10)]
    assert delays[:4] == [30, 60, 120, 240]
    assert delays[-1] == 3600
    assert delays == sorted(delays)


def test_permanent_failure_and_exhausted_attempts_fail(settings, pending_request):
    """A permanent failure, or the last attempt, marks the delivery failed for an agent to see."""
    settings.DELIVERY_BACKENDS = settings.DELIVERY_BACKENDS | {
        "test": {"BACKEND": "delivery.backends.test.TestBackend", "OPTIONS": {"fail": "permanent"}},
        "flaky": {
            "BACKEND": "delivery.backends.test.TestBackend",
            "OPTIONS": {"fail": "temporary"},
        },
    }
    permanent = _queued(pending_request)
    assert delivery_services.deliver(permanent.pk) == Status.FAILED
    settings.DELIVERY_MAX_ATTEMPTS = 2
    flaky = _queued(pending_request, backend="flaky")
    assert delivery_services.deliver(flaky.pk) == Status.PENDING
    Delivery.objects.filter(pk=flaky.pk).update(next_attempt_at=timezone.now())
    assert delivery_services.deliver(flaky.pk) == Status.FAILED
    flaky.refresh_from_db()
    assert (flaky.attempts, flaky.next_attempt_at) == (2, None)
    assert AuditEvent.objects.filter(action="delivery_failed").count() == 2


def test_retry_deliveries_sweeps_due_rows_and_expired_leases(pending_request):
    """retry_deliveries sends due rows and stuck leases, and leaves future ones alone."""
    Delivery.objects.all().delete()  # the submission's own notices are not part of this test
    due = _queued(pending_request)
    stuck = _queued(pending_request)
    Delivery.objects.filter(pk=stuck.pk).update(
        status=Status.SENDING, lease_until=timezone.now() - dt.timedelta(seconds=1)
    )
    future = _queued(pending_request)
    Delivery.objects.filter(pk=future.pk).update(
        next_attempt_at=timezone.now() + dt.timedelta(hours=1)
    )
    out = io.StringIO()
    call_command("retry_deliveries", stdout=out)
    assert "2 due deliveries" in out.getvalue()
    statuses = dict(Delivery.objects.values_list("pk", "status"))
    assert (statuses[due.pk], statuses[stuck.pk], statuses[future.pk]) == (
        "sent",
        "sent",
        "pending",
    )
    call_command("retry_deliveries", "--now", stdout=out)
    assert Delivery.objects.get(pk=future.pk).status == Status.SENT
    assert len(test_backend.outbox) == 3


# --- manual delivery -----------------------------------------------------------------


def test_send_certificate_by_hand(
    pending_request, agent, django_capture_on_commit_callbacks, mailoutbox
):
    """An agent mails a server certificate with a note to another address; it is audited."""
    cert = _approve(pending_request, agent, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        delivery = delivery_services.send_certificate(
            cert.serial.upper(),
            method="certificate",
            to="web-team@example.test",
            note="Install before Friday",
            actor=agent,
        )
    delivery.refresh_from_db()
    assert (delivery.status, delivery.requested_by) == (Status.SENT, agent)
    message = mailoutbox[-1]
    assert message.to == ["web-team@example.test"]
    assert "Install before Friday" in message.body
    assert [a.filename for a in message.attachments] == [
        f"{cert.serial_filename}.pem",
        f"{cert.serial_filename}-fullchain.pem",
        f"{cert.serial_filename}-chain.p7b",
    ]
    event = AuditEvent.objects.get(action="delivery_queued", details__delivery=delivery.pk)
    assert event.actor == agent


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "pigeon"}, "unknown method"),
        (
            {"method": "link", "to": "a@example.test\nBcc: b@example.test"},
            "not a single valid recipient",
        ),
        (
            {"method": "link", "to": "a@example.test, b@example.test"},
            "not a single valid recipient",
        ),
        ({"method": "link", "to": "not-an-address"}, "not a valid email address"),
    ],
)
def test_send_certificate_refusals(pending_request, agent, kwargs, message):
    """A bad method or recipient is refused and queues nothing."""
    cert = services.approve_request(pending_request.public_id, agent=agent)
    before = Delivery.objects.filter(certificate=cert).count()  # the ready mail
    with pytest.raises(delivery_services.DeliveryRefused, match=message):
        delivery_services.send_certificate(cert, actor=agent, **kwargs)
    assert Delivery.objects.filter(certificate=cert).count() == before


def test_send_certificate_unknown_serial(ca, agent):
    """An unknown serial is refused clearly."""
    with pytest.raises(
        delivery_services.DeliveryRefused, match="no certificate has the serial number abc"
    ):
        delivery_services.send_certificate("abc", method="link", actor=agent)


def test_retry_a_failed_delivery(
    settings, pending_request, agent, django_capture_on_commit_callbacks
):
    """An agent's retry puts a failed delivery back in the queue and it is sent."""
    delivery = _queued(pending_request)
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Status.FAILED, last_error="550 no such user"
    )
    with django_capture_on_commit_callbacks(execute=True):
        delivery_services.retry_delivery(delivery.pk, actor=agent)
    delivery.refresh_from_db()
    assert delivery.status == Status.SENT
    assert AuditEvent.objects.filter(action="delivery_retry_requested", actor=agent).count() == 1
    with pytest.raises(delivery_services.DeliveryRefused, match="is sent"):
        delivery_services.retry_delivery(delivery.pk, actor=agent)


def test_send_certificate_command(
    pending_request, agent, django_capture_on_commit_callbacks, mailoutbox
):
    """manage.py send_certificate queues and reports the delivery; bad input is a CommandError."""
    cert = services.approve_request(pending_request.public_id, agent=agent)
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("send_certificate", cert.serial, "--method", "link", stdout=out)
    assert "a retrieval link to admin@example.test" in out.getvalue()
    assert len(mailoutbox) == 1
    with pytest.raises(CommandError, match="no certificate has the serial number"):
        call_command("send_certificate", "ffff", stdout=out)
    with pytest.raises(CommandError, match="not a valid email address"):
        call_command("send_certificate", cert.serial, "--to", "nobody", stdout=out)


def test_link_mail_for_a_portal_made_key_explains_the_p12(
    ca, agent, django_capture_on_commit_callbacks, mailoutbox
):
    """When the portal made the key, the link mail tells the holder to fetch the .p12."""
    with django_capture_on_commit_callbacks(execute=True):
        req = services.submit_request_with_server_key(
            profile="user",
            requester_name="Ann Example",
            requester_email="ann@example.test",
            passphrase="correct horse battery staple",
        )
        services.approve_request(confirmed(req).public_id, agent=agent)
    link_mail = next(m for m in mailoutbox if "/retrieve/" in m.body)
    assert "The portal made your private key" in link_mail.body
    assert "the private key you made with your request" not in link_mail.body
