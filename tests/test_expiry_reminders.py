"""Expiry reminders and the agents' digest, sent by `send_expiry_reminders` through a real
SMTP server with the clock moved: each reminder once, none for revoked, renewed or expired
certificates, the digest once a day, and the mail's text per profile."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.core.management import CommandError, call_command

from delivery.models import Delivery, ExpiryDigest, ExpiryReminder
from requests_app import services
from requests_app.models import AuditEvent
from tests.helpers.expiry import at, days_before, issue, reminders, renew, subject, text

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """Run the command as cron would, with the outbox's on-commit sends really running."""

    def run_command(*args: str) -> str:
        from io import StringIO

        out = StringIO()
        with django_capture_on_commit_callbacks(execute=True):
            call_command("send_expiry_reminders", *args, stdout=out)
        return out.getvalue()

    return run_command


@pytest.fixture
def quiet(settings):
    """No automatic certificate mail and no digest, so the server holds only reminders."""
    settings.DELIVERY_AUTOMATIC = False
    settings.EXPIRY_DIGEST_DAYS = 0


def test_reminders_at_30_7_and_1_days_arrive_once_each(ca, agent, smtp_server, run, quiet, client):
    """Moving the clock through a certificate's last month mails it at 30, 7 and 1 days
    before expiry, once each, however often the command runs."""
    cert = issue(agent, cn="www.example.test")
    with days_before(cert, 45):
        run()
    assert reminders(smtp_server.messages) == []
    seen = []
    for days_left, threshold in [(29.5, 30), (20, 30), (6.5, 7), (3, 7), (0.5, 1), (0.1, 1)]:
        with days_before(cert, days_left):
            run()
            run()
            mails = reminders(smtp_server.messages)
            if threshold not in seen:
                seen.append(threshold)
                mail = mails[-1]
                # The link in the mail opens the certificate's page, here and now.
                link = re.search(r"http://testserver(/retrieve/\S+/)", text(mail))[1]
                page = client.get(link, follow=True)
                assert page.status_code == 200
                assert cert.serial_colons in page.content.decode()
            assert len(mails) == len(seen), (days_left, [m["Subject"] for m in mails])
    subjects = [subject(m) for m in reminders(smtp_server.messages)]
    assert [s.rsplit("(", 1)[1] for s in subjects] == [
        "in 29 days)",
        "in 6 days)",
        "in less than a day)",
    ]
    assert all(m["To"] == "ops@example.test" for m in reminders(smtp_server.messages))
    assert sorted(ExpiryReminder.objects.values_list("days", flat=True)) == [1, 7, 30]
    deliveries = Delivery.objects.filter(kind=Delivery.Kind.EXPIRY_REMINDER)
    assert [d.status for d in deliveries] == [Delivery.Status.SENT] * 3
    # Each reminder has its audit rows: queued (with the threshold) and sent.
    queued = AuditEvent.objects.filter(action="expiry_reminder_queued", certificate=cert)
    assert sorted(e.details["days"] for e in queued) == [1, 7, 30]
    assert AuditEvent.objects.filter(action="delivery_sent", certificate=cert).count() == 3
    with days_before(cert, -1):  # expired: nothing more
        run()
    assert len(reminders(smtp_server.messages)) == 3


def test_revoked_renewed_and_expired_certificates_get_none(ca, agent, smtp_server, run, quiet):
    """Of five certificates in their last week, the revoked, the renewed and the expired one
    get no reminder; the one with a renewal waiting gets one that says so."""
    plain = issue(agent, cn="plain.example.test", email="plain@example.test", validity_days=100)
    revoked = issue(agent, cn="revoked.example.test", email="revoked@example.test")
    renewed = issue(
        agent, cn="renewed.example.test", email="renewed@example.test", validity_days=100
    )
    waiting = issue(
        agent, cn="waiting.example.test", email="waiting@example.test", validity_days=100
    )
    short = issue(agent, cn="short.example.test", email="short@example.test", validity_days=3)
    services.revoke_certificate(revoked, reason="keyCompromise", actor=agent)
    renewal = renew(renewed, agent)
    assert renewal.certificate is not None
    pending = renew(waiting, agent, approve=False)
    with days_before(plain, 6.5):  # `short` expired long ago by then
        out = run()
    assert "2 reminder(s) queued (2 at 7 days)" in out
    mails = reminders(smtp_server.messages)
    assert sorted(m["To"] for m in mails) == ["plain@example.test", "waiting@example.test"]
    (to_waiting,) = reminders(smtp_server.messages, to="waiting@example.test")
    assert f"A renewal of it is already waiting ({pending.display_id}" in text(to_waiting)
    reminded = set(ExpiryReminder.objects.values_list("certificate_id", flat=True))
    assert reminded == {plain.pk, waiting.pk}
    assert short.pk not in reminded


def test_a_certificate_revoked_after_its_reminder_was_queued_gets_no_mail(
    ca, agent, smtp_server, quiet, django_capture_on_commit_callbacks
):
    """A reminder queued and then overtaken by a revocation fails for good, saying why,
    instead of mailing the holder about a revoked certificate."""
    from delivery import expiry as delivery_expiry
    from delivery import services as delivery_services

    cert = issue(agent)
    with days_before(cert, 6.5):
        now = dt.datetime.now(dt.UTC)
        delivery = delivery_expiry.queue_expiry_reminder(cert.pk, days=7, now=now)
        services.revoke_certificate(cert, reason="superseded", actor=agent)
        assert delivery_services.deliver(delivery.pk) == Delivery.Status.FAILED
    delivery.refresh_from_db()
    assert "was revoked after the reminder was queued" in delivery.last_error
    assert reminders(smtp_server.messages) == []


def test_a_short_lived_certificate_gets_no_reminder_for_a_threshold_before_its_start(
    ca, agent, smtp_server, run, quiet
):
    """A 20-day certificate gets no 30-day reminder the day it is issued, but its 7-day one."""
    cert = issue(agent, validity_days=20)
    with days_before(cert, 19.5):
        run()
    with days_before(cert, 6.5):
        run()
    assert list(ExpiryReminder.objects.values_list("days", flat=True)) == [7]
    assert len(reminders(smtp_server.messages)) == 1


def test_now_option_catches_up_with_the_reminder_due_then_only(ca, agent, smtp_server, run, quiet):
    """--now past the 30-day mark with no run before queues the 7-day reminder alone, never a
    stale 30-day one."""
    cert = issue(agent)
    when = (cert.not_after - dt.timedelta(days=5)).isoformat()
    out = run("--now", when)
    assert "1 reminder(s) queued (1 at 7 days)" in out
    assert list(ExpiryReminder.objects.values_list("days", flat=True)) == [7]
    run("--now", when)
    assert ExpiryReminder.objects.count() == 1


@pytest.mark.parametrize("bad", ["yesterday", "2027-13-01", "", "1' OR '1'='1"])
def test_now_option_refuses_what_is_not_a_date(db, bad):
    """--now takes an ISO 8601 date and time; anything else is a clear error that sends
    nothing."""
    with pytest.raises(CommandError, match="is not an ISO 8601 date"):
        call_command("send_expiry_reminders", "--now", bad)
    assert ExpiryReminder.objects.count() == 0


def test_thresholds_come_from_the_setting(ca, agent, smtp_server, run, quiet, settings):
    """EXPIRY_REMINDER_DAYS=[14] mails at 14 days and at no other step; [] mails nothing."""
    settings.EXPIRY_REMINDER_DAYS = [14]
    cert = issue(agent)
    with days_before(cert, 20):
        run()
    with days_before(cert, 13.5):
        run()
    with days_before(cert, 6):
        run()
    assert list(ExpiryReminder.objects.values_list("days", flat=True)) == [14]
    settings.EXPIRY_REMINDER_DAYS = []
    other = issue(agent, cn="other.example.test")
    with days_before(other, 0.5):
        run()
    assert ExpiryReminder.objects.filter(certificate=other).count() == 0


def test_server_reminder_text(ca, agent, smtp_server, run, quiet):
    """A server certificate's reminder names subject, SANs, serial and expiry, and says how
    to renew it here with a new CSR for the same names."""
    cert = issue(agent, cn="mail.example.test")
    with days_before(cert, 6.5):
        run()
    (mail,) = reminders(smtp_server.messages)
    assert subject(mail) == (
        f"Your certificate for mail.example.test expires on {cert.not_after:%Y-%m-%d} (in 6 days)"
    )
    body = text(mail)
    assert f"Serial number:  {cert.serial_colons}" in body
    assert "Names (SANs):   DNS:mail.example.test" in body
    assert f"Subject:        {cert.subject}" in body
    assert f"Expires:        {cert.not_after:%Y-%m-%d %H:%M}" in body
    assert "press Renew" in body
    assert "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes" in body
    assert '-subj "/CN=mail.example.test"' in body
    assert "http://testserver/retrieve/" in body
    html = mail.get_body(preferencelist=("html",)).get_content()
    assert cert.serial_colons in html and "press Renew" in html


def test_user_reminder_text(ca, agent, smtp_server, run, quiet):
    """A personal certificate's reminder says to renew on the page with a new CSR and to
    keep the old certificate for mail encrypted to it; no server instructions."""
    cert = issue(agent, profile="user", cn="Ann Example", email="ann@example.test")
    with days_before(cert, 29.5):
        run()
    (mail,) = reminders(smtp_server.messages, to="ann@example.test")
    body = text(mail)
    assert subject(mail).startswith("Your certificate for Ann Example expires on")
    assert "email:ann@example.test" in body
    assert "press Renew" in body
    assert "keep the old one until you no longer need to read mail encrypted to it" in body
    assert "openssl" not in body


def test_certmonger_reminder_text(ca, agent, smtp_server, run, quiet):
    """A certificate requested through the Dogtag adapter (certmonger) is said to renew
    through certmonger."""
    cert = issue(agent, cn="cm.example.test", channel="dogtag")
    with days_before(cert, 6.5):
        run()
    body = text(reminders(smtp_server.messages)[0])
    assert "certmonger asks\nthis portal to renew it" in body
    assert "getcert list" in body


def test_reminders_follow_delivery_notifications(ca, agent, smtp_server, run, quiet, settings):
    """With DELIVERY_NOTIFICATIONS off, the command mails and records nothing."""
    settings.DELIVERY_NOTIFICATIONS = False
    cert = issue(agent)
    with days_before(cert, 6.5):
        run()
    assert ExpiryReminder.objects.count() == 0
    assert reminders(smtp_server.messages) == []


# --- the agents' digest ---------------------------------------------------------------


def digests(messages) -> list:
    return [m for m in messages if subject(m).startswith("[ca-portal] ")]


def test_digest_once_a_day_lists_what_nobody_renewed(ca, agent, smtp_server, run, settings):
    """The agents get one digest a UTC day of the certificates expiring within
    EXPIRY_DIGEST_DAYS that nobody renewed; running again that day sends nothing."""
    settings.DELIVERY_AUTOMATIC = False
    settings.EXPIRY_REMINDER_DAYS = []
    settings.AGENT_NOTIFY_EMAIL = []
    soon = issue(agent, cn="soon.example.test", validity_days=100)
    renewed = issue(agent, cn="renewed.example.test", validity_days=100)
    revoked = issue(agent, cn="revoked.example.test", validity_days=100)
    renew(renewed, agent)
    services.revoke_certificate(revoked, reason="keyCompromise", actor=agent)
    with days_before(soon, 30):
        run()  # nothing within 14 days: no digest
    assert digests(smtp_server.messages) == []
    day = (soon.not_after - dt.timedelta(days=10)).date()
    with at(day, 8):
        run()
    with at(day, 20):
        run()
    (digest,) = digests(smtp_server.messages)
    assert digest["To"] == "agent1@example.test"  # the agents group's address
    assert subject(digest) == ("[ca-portal] 1 certificate expires within 14 days, not renewed")
    body = text(digest)
    assert soon.serial_colons in body and "soon.example.test" in body
    assert renewed.serial_colons not in body and revoked.serial_colons not in body
    assert "http://testserver/agent/expiring/?within=30" in body
    assert f"http://testserver/agent/certificates/{soon.serial_filename}/" in body
    with at(day + dt.timedelta(days=1), 0):  # the next UTC day
        run()
        run()
    assert len(digests(smtp_server.messages)) == 2
    assert ExpiryDigest.objects.filter(status=ExpiryDigest.Status.SENT).count() == 2
    assert AuditEvent.objects.filter(action="expiry_digest_sent").count() == 2


def test_digest_goes_to_agent_notify_email_and_is_retried_after_a_failure(ca, agent, settings, run):
    """With AGENT_NOTIFY_EMAIL set the digest goes there; a mail server that is down makes a
    retry, and the next run after it is due sends the digest once."""
    from ca_portal.settings import build_mailers
    from tests.helpers.servers import SMTPServer, free_port

    settings.DELIVERY_AUTOMATIC = False
    settings.EXPIRY_REMINDER_DAYS = []
    settings.AGENT_NOTIFY_EMAIL = ["ca-team@example.test"]
    cert = issue(agent)
    port = free_port()
    settings.MAILERS = build_mailers(f"smtp://127.0.0.1:{port}?timeout=2", "")
    day = (cert.not_after - dt.timedelta(days=5)).date()
    with at(day, 8):
        out = run()
    assert "0 digest(s) sent, 1 to retry" in out
    digest = ExpiryDigest.objects.get()
    assert (digest.status, digest.attempts, digest.recipient) == (
        ExpiryDigest.Status.PENDING,
        1,
        "ca-team@example.test",
    )
    assert digest.last_error
    server = SMTPServer(port).start()
    try:
        base = dt.datetime.combine(day, dt.time(8), tzinfo=dt.UTC)
        with time_machine.travel(base + dt.timedelta(seconds=5), tick=False):
            run()  # the retry is not due yet (the outbox's backoff): nothing
        assert server.messages == []
        with time_machine.travel(base + dt.timedelta(minutes=10), tick=False):
            run()
            run()
    finally:
        server.stop()
    assert len(digests(server.messages)) == 1
    assert server.messages[0]["To"] == "ca-team@example.test"
    digest.refresh_from_db()
    assert digest.status == ExpiryDigest.Status.SENT


def test_reminders_count_against_the_daily_mail_limit(
    ca, agent, smtp_server, run, quiet, settings, empty_cache
):
    """Reminders cannot flood a mailbox: with MAIL_PER_RECIPIENT_PER_DAY=1, the second
    reminder to one address that day is held (pending, with the reason), not sent or lost."""
    from django.core.cache import cache

    first = issue(agent, cn="a.example.test", email="same@example.test")
    issue(agent, cn="b.example.test", email="same@example.test")
    cache.clear()  # the enrollments' count: this test is about the reminders' day
    settings.MAIL_PER_RECIPIENT_PER_DAY = 1
    with days_before(first, 6.5):
        run()
    assert len(reminders(smtp_server.messages, to="same@example.test")) == 1
    held = Delivery.objects.get(kind=Delivery.Kind.EXPIRY_REMINDER, status=Delivery.Status.PENDING)
    assert "MAIL_PER_RECIPIENT_PER_DAY" in held.last_error
    assert ExpiryReminder.objects.count() == 2


def test_now_option_takes_a_time_zone(ca, agent, smtp_server, run, quiet):
    """--now with an offset means that instant: 6.5 days before expiry written in +02:00."""
    cert = issue(agent)
    when = (cert.not_after - dt.timedelta(days=6.5)).astimezone(dt.timezone(dt.timedelta(hours=2)))
    assert "1 reminder(s) queued (1 at 7 days)" in run("--now", when.isoformat())
