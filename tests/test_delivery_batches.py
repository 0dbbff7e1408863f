"""The outbox sent in batches: one claim for many rows, one kept connection, one record;
the guarantees of one row at a time (claims, leases, retries, audit rows) hold per row."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import io
import threading
from collections import Counter
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from delivery import mime, sending
from delivery import services as delivery_services
from delivery.backends import get_backend
from delivery.models import Delivery
from requests_app import services
from requests_app.models import AuditEvent
from tests.helpers.csrs import make_csr
from tests.helpers.servers import SMTPServer

Status = Delivery.Status


@pytest.fixture
def issued(ca, settings):
    """A certificate issued for a request (nothing queued: notifications off)."""
    settings.DELIVERY_NOTIFICATIONS = False
    settings.DELIVERY_READY_MAIL = False  # the tests count only the deliveries they queue
    cert = services.issue_certificate(
        profile="server", csr=make_csr(cn="batch.example.test"), requester_email="o@example.test"
    )
    return cert.request, cert


def _queue(req, cert, count, *, prefix="r", backend="email_link", kind="link", due=None):
    due = due or timezone.now()
    return Delivery.objects.bulk_create(
        Delivery(
            request=req,
            certificate=cert,
            backend=backend,
            kind=kind,
            recipient=f"{prefix}{i}@example.test",
            next_attempt_at=due,
        )
        for i in range(count)
    )


def _use(settings, server):
    from ca_portal.settings import build_mailers

    settings.MAILERS = build_mailers(server.email_url, "")


class RefusingSMTPServer(SMTPServer):
    """Refuses recipients named bad... for good (550) and later... for now (451)."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("bad"):
            return "550 5.1.1 no such mailbox"
        if address.startswith("later"):
            return "451 4.2.0 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"


class DroppingSMTPServer(SMTPServer):
    """Accepts three messages, then closes the connection at the next MAIL command without
    answering (as a server that timed out an idle client does): nothing of the fourth
    message has been accepted when the client finds the connection gone."""

    dropped = False

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if len(self.messages) >= 3 and not self.dropped:
            self.dropped = True
            server.transport.close()
            return "421 4.4.2 closing the connection"
        envelope.mail_from = address
        return "250 OK"


# --- the claim ------------------------------------------------------------------------------


def test_one_statement_claims_a_batch_of_due_rows(settings, issued):
    """One UPDATE takes up to the batch size of due rows; rows not due or leased are left."""
    req, cert = issued
    settings.DELIVERY_BATCH_SIZE = 4
    due = _queue(req, cert, 6)
    later = _queue(req, cert, 2, prefix="later", due=timezone.now() + dt.timedelta(hours=1))
    with CaptureQueriesContext(connection) as queries:
        first = sending.claim_batch()
    assert len(queries.captured_queries) == 1
    assert first == [d.pk for d in due[:4]]
    second = sending.claim_batch()
    assert second == [d.pk for d in due[4:]]
    assert sending.claim_batch() == []  # the rest is leased or not due
    rows = Delivery.objects.filter(pk__in=first + second)
    assert set(rows.values_list("status", "attempts")) == {(Status.SENDING, 1)}
    assert set(
        Delivery.objects.filter(pk__in=[d.pk for d in later]).values_list("status", flat=True)
    ) == {Status.PENDING}
    # Named rows only: a row already claimed is not taken again, however it is asked for.
    assert sending.claim_batch([first[0], later[0].pk]) == []


def test_named_rows_come_first_and_fill_tops_the_batch_up(settings, issued):
    req, cert = issued
    rows = [d.pk for d in _queue(req, cert, 5)]
    assert sending.claim_batch([rows[4]], limit=3, fill=False) == [rows[4]]
    assert sending.claim_batch([rows[3]], limit=3, fill=True) == [rows[3], rows[0], rows[1]]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SKIP LOCKED between connections: PostgreSQL"
)
def test_concurrent_batch_claims_never_take_a_row_twice(settings, ca):
    """Six threads, each on its own connection, claim batches of 7 until nothing is due:
    every row is claimed once, and by the claims together."""
    settings.DELIVERY_NOTIFICATIONS = False
    cert = services.issue_certificate(
        profile="server", csr=make_csr(cn="race.example.test"), requester_email="o@example.test"
    )
    ids = {d.pk for d in _queue(cert.request, cert, 600)}
    claims: list[list[int]] = []
    start = threading.Barrier(6)

    def claimer():
        try:
            start.wait()
            while batch := sending.claim_batch(limit=7):
                claims.append(batch)
        finally:
            connection.close()

    threads = [threading.Thread(target=claimer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = Counter(pk for batch in claims for pk in batch)
    assert set(claimed) == ids
    assert set(claimed.values()) == {1}
    assert max(len(batch) for batch in claims) == 7
    assert set(Delivery.objects.values_list("attempts", flat=True)) == {1}


# --- sending and recording ------------------------------------------------------------------


def test_a_batch_over_a_real_server_sends_each_once_on_one_connection(
    settings, issued, monkeypatch
):
    """120 link mails in batches of 50: each arrives once, over one kept connection, with its
    own Message-ID; the batch writes a handful of statements, not several per message."""
    req, cert = issued
    monkeypatch.setattr(sending, "RECORD_EVERY_SECONDS", 600.0)  # however loaded the machine
    settings.DELIVERY_BATCH_SIZE = 50
    server = SMTPServer().start()
    _use(settings, server)
    deliveries = _queue(req, cert, 120)
    try:
        with CaptureQueriesContext(connection) as queries:
            statuses = delivery_services.deliver_many([d.pk for d in deliveries])
    finally:
        server.stop()
    assert set(statuses.values()) == {Status.SENT} and len(statuses) == 120
    assert Counter(m["To"] for m in server.messages) == {d.recipient: 1 for d in deliveries}
    assert {m["Message-ID"] for m in server.messages} == {d.rfc_message_id for d in deliveries}
    assert len(set(server.peers)) == 1
    # Per batch: claim, load, and a record (savepoint-free transaction: update, audit chain).
    assert len(queries.captured_queries) < 40
    rows = Delivery.objects.filter(pk__in=statuses)
    assert set(rows.values_list("status", "attempts")) == {(Status.SENT, 1)}
    sent_audit = AuditEvent.objects.filter(action="delivery_sent")
    assert Counter(e.details["delivery"] for e in sent_audit) == dict.fromkeys(statuses, 1)
    assert services.verify_audit().intact


def test_a_refused_recipient_fails_alone_and_the_rest_are_sent(settings, issued):
    """In one batch: a 550 recipient fails for good, a 451 one is retried with backoff, the
    others are sent, all over the same connection, each with its own audit row."""
    req, cert = issued
    server = RefusingSMTPServer().start()
    _use(settings, server)
    good = _queue(req, cert, 4, prefix="good")
    bad = _queue(req, cert, 1, prefix="bad")[0]
    later = _queue(req, cert, 1, prefix="later")[0]
    ids = [good[0].pk, bad.pk, good[1].pk, later.pk, good[2].pk, good[3].pk]
    before = timezone.now()
    try:
        statuses = delivery_services.deliver_many(ids)
    finally:
        server.stop()
    assert statuses == {
        **{d.pk: Status.SENT for d in good},
        bad.pk: Status.FAILED,
        later.pk: Status.PENDING,
    }
    assert sorted(m["To"] for m in server.messages) == sorted(d.recipient for d in good)
    assert len(set(server.peers)) == 1
    bad.refresh_from_db()
    later.refresh_from_db()
    assert "550" in bad.last_error and bad.next_attempt_at is None
    assert "451" in later.last_error and later.attempts == 1
    assert later.next_attempt_at >= before + delivery_services.backoff(1)
    actions = Counter(
        (e.details["delivery"], e.action)
        for e in AuditEvent.objects.filter(action__startswith="delivery_")
    )
    assert actions == {
        **{(d.pk, "delivery_sent"): 1 for d in good},
        (bad.pk, "delivery_failed"): 1,
        (later.pk, "delivery_retry_scheduled"): 1,
    }
    # The retried row is due again after its backoff, and then sent alone.
    assert delivery_services.deliver(later.pk) == "not-claimed"


def test_a_connection_the_server_drops_mid_batch_is_reopened(settings, issued):
    """The server drops the kept connection after the third message: the fourth reconnects,
    and every message of the batch arrives once."""
    req, cert = issued
    server = DroppingSMTPServer().start()
    _use(settings, server)
    deliveries = _queue(req, cert, 8)
    try:
        statuses = delivery_services.deliver_many([d.pk for d in deliveries])
    finally:
        server.stop()
    assert set(statuses.values()) == {Status.SENT}
    assert Counter(m["To"] for m in server.messages) == {d.recipient: 1 for d in deliveries}
    assert len(set(server.peers)) == 2


def test_a_worker_that_dies_mid_batch_leaves_leases_the_sweeper_returns(settings, issued):
    """Rows claimed by a worker that then died stay leased (nobody else takes them) until
    the lease expires; retry_deliveries then sends each, as a second attempt."""
    req, cert = issued
    server = SMTPServer().start()
    _use(settings, server)
    deliveries = _queue(req, cert, 5)
    ids = [d.pk for d in deliveries]
    assert sending.claim_batch(ids) == ids  # ...and the worker is gone
    assert delivery_services.deliver(ids[0]) == "not-claimed"
    assert delivery_services.due_delivery_ids() == []
    # Time passes: the lease runs out.
    Delivery.objects.filter(pk__in=ids).update(lease_until=timezone.now() - dt.timedelta(seconds=1))
    assert delivery_services.due_delivery_ids() == ids
    try:
        out = io.StringIO()
        call_command("retry_deliveries", "--sync", stdout=out)
    finally:
        server.stop()
    assert "5 sent" in out.getvalue()
    assert Counter(m["To"] for m in server.messages) == {d.recipient: 1 for d in deliveries}
    assert set(Delivery.objects.filter(pk__in=ids).values_list("status", "attempts")) == {
        (Status.SENT, 2)
    }


def test_a_batch_past_half_its_lease_gives_the_rest_back(settings, issued, monkeypatch):
    """A slow server: once half the lease is gone no further row of the batch is sent; the
    rest go back to pending with their attempt given back, and are enqueued at once."""
    req, cert = issued
    deliveries = _queue(req, cert, 3, backend="test", kind="request_received")
    # The batch's clock: claimed at 0 s, the first row sent at 0 s, then 1000 s have passed.
    clock = iter([0, 0])
    real_now = timezone.now()
    monkeypatch.setattr(
        sending,
        "timezone",
        SimpleNamespace(now=lambda: real_now + dt.timedelta(seconds=next(clock, 1000))),
    )
    statuses = delivery_services.deliver_many([d.pk for d in deliveries])
    assert list(statuses.values()) == [Status.SENT, Status.PENDING, Status.PENDING]
    # Their tasks were enqueued at once (the immediate backend in tests ran them): each was
    # claimed again and sent as its first attempt, the given-back one not counted.
    rest = Delivery.objects.filter(pk__in=[d.pk for d in deliveries[1:]])
    assert set(rest.values_list("status", "attempts")) == {(Status.SENT, 1)}
    assert not AuditEvent.objects.filter(action="delivery_failed").exists()


def test_a_slow_batch_records_what_it_sent_as_it_goes(settings, issued, monkeypatch):
    """When a batch takes longer than RECORD_EVERY_SECONDS, the rows sent so far are
    recorded before the next is tried: a worker dying later repeats none of them."""
    req, cert = issued
    monkeypatch.setattr(sending, "RECORD_EVERY_SECONDS", 0.0)
    ids = [d.pk for d in _queue(req, cert, 3, backend="test", kind="request_received")]
    sent_before_each = []
    send_one = sending._send_one

    def counting(delivery, outcomes):
        sent_before_each.append(Delivery.objects.filter(pk__in=ids, status=Status.SENT).count())
        send_one(delivery, outcomes)

    monkeypatch.setattr(sending, "_send_one", counting)
    statuses = delivery_services.deliver_many(ids)
    assert statuses == dict.fromkeys(ids, Status.SENT)
    assert sent_before_each == [0, 1, 2]
    sent = AuditEvent.objects.filter(action="delivery_sent")
    assert sorted(e.details["delivery"] for e in sent) == ids


# --- the cheaper MIME path ------------------------------------------------------------------


def _parts(data: bytes) -> list:
    message = email.message_from_bytes(data, policy=email.policy.default)
    parts = []
    for part in message.walk():
        if part.is_multipart():
            parts.append((part.get_content_type(), None, None))
        else:
            payload = part.get_payload(decode=True)
            if part.get_content_maintype() == "text":
                payload = payload.decode(part.get_content_charset()).replace("\r\n", "\n")
            parts.append((part.get_content_type(), part.get_filename(), payload))
    # Stripped: Django folds a long subject onto the next line, which a parser gives back
    # with a leading space.
    headers = {name: str(message[name]).strip() for name in ("Subject", "From", "To", "Message-ID")}
    headers["X-CA-Portal-Delivery"] = str(message["X-CA-Portal-Delivery"])
    return [headers, *parts]


@pytest.mark.parametrize(
    ("backend", "kind"),
    [
        ("email_link", "link"),
        ("email_certificate", "certificate"),
        ("notify", "request_received"),
        ("notify", "certificate_revoked"),
    ],
)
def test_the_cheaper_mime_is_the_same_message_as_djangos(settings, issued, backend, kind):
    """Headers, the structure of parts, each part's type, filename and decoded content: the
    same from delivery.mime as from Django's message(), and valid for a strict parser."""
    req, cert = issued
    delivery = _queue(req, cert, 1, backend=backend, kind=kind)[0]
    message = get_backend(backend).build_message(delivery)
    fast = mime.smtp_bytes(message)
    assert fast is not None
    django = message.message(policy=email.policy.SMTP).as_bytes()
    assert _parts(fast) == _parts(django)
    assert all(len(line) <= 998 for line in fast.split(b"\r\n"))
    assert b"\n" not in fast.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(fast, policy=email.policy.strict)
    assert not [d for part in parsed.walk() for d in part.defects]


def test_a_message_outside_the_plain_shape_takes_djangos_path(settings, issued):
    """A non-ASCII subject, a second recipient or a header injection attempt: None."""
    req, cert = issued
    delivery = _queue(req, cert, 1)[0]
    backend = get_backend("email_link")
    for change in (
        lambda m: setattr(m, "subject", "Zertifikat für Jürgen"),
        lambda m: setattr(m, "to", ["a@example.test", "b@example.test"]),
        lambda m: setattr(m, "to", ["Jürgen <j@example.test>"]),
        lambda m: m.extra_headers.update({"X-Evil": "a\r\nBcc: x@example.test"}),
        lambda m: setattr(m, "cc", ["c@example.test"]),
    ):
        message = backend.build_message(delivery)
        change(message)
        assert mime.smtp_bytes(message) is None


def test_a_unicode_body_survives_the_cheaper_path(settings, issued):
    req, cert = issued
    delivery = _queue(req, cert, 1)[0]
    message = get_backend("email_link").build_message(delivery)
    message.body = "Grüße, " + "ä" * 200 + " \n.\nend with trailing space \n"
    fast = mime.smtp_bytes(message)
    assert _parts(fast) == _parts(message.message(policy=email.policy.SMTP).as_bytes())
