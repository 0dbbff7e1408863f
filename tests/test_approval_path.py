"""The approval's hot path: read unlocked, sign, compare-and-swap; its statement count,
the certificate row made from data at hand, the counters, and the loser of a race."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext

from delivery.models import Delivery
from requests_app import pki, services, signals
from requests_app.models import AuditEvent, Certificate, CertificateRequest, StatusCount
from requests_app.services import decisions
from tests.helpers.concurrency import race
from tests.helpers.csrs import make_csr

Status = CertificateRequest.Status

#: Statements one approval may send, BEGIN and COMMIT included (issue 20): SQLite runs
#: them one by one (read, certificate, swap, counters, head read and move, audit row);
#: PostgreSQL reads, swaps with the counters, locks the head and writes the rest in one.
MAX_STATEMENTS = {"sqlite": 9, "postgresql": 6}
#: With the ready mail; the tests' immediate task backend also sends it within the count.
MAX_STATEMENTS_WITH_MAIL = {"sqlite": 23, "postgresql": 20}


def _submit(cn: str, email: str = "o@example.test") -> CertificateRequest:
    return services.submit_request(
        profile="server", csr=make_csr(cn=cn), requester_email=email, channel="command"
    )


def _recount() -> dict[str, int]:
    counts = dict.fromkeys(Status.values, 0)
    counts.update(
        CertificateRequest.objects.values("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    return counts


@pytest.fixture
def issued_signals():
    """Every certificate_issued the services send, from any thread."""
    sent, lock = [], threading.Lock()

    def receiver(sender, *, certificate, request, **kwargs):
        with lock:
            sent.append((request.pk, certificate.pk))

    signals.certificate_issued.connect(receiver, dispatch_uid="test-approval-path")
    yield sent
    signals.certificate_issued.disconnect(dispatch_uid="test-approval-path")


@pytest.mark.django_db(transaction=True)
def test_one_approval_sends_a_fixed_number_of_statements(ca, agent, settings):
    """An approval stays within its statement budget on either database (no silent regress)."""
    settings.AUDIT_CHECKPOINT_ROWS = 10**6  # a due checkpoint adds its own INSERT
    settings.AUDIT_CHECKPOINT_SECONDS = 10**6
    settings.DELIVERY_READY_MAIL = False  # the approval alone; its mail is budgeted below
    first, second = _submit("warm.example.test"), _submit("count.example.test")
    services.approve_request(first.public_id, agent=agent)  # opens the CA key once
    with CaptureQueriesContext(connection) as queries:
        cert = services.approve_request(second.public_id, agent=agent)
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) <= MAX_STATEMENTS[connection.vendor], statements
    assert not any("FOR UPDATE" in sql and "certificaterequest" in sql for sql in statements)
    second.refresh_from_db()
    assert second.status == Status.COMPLETE and second.certificate_id == cert.pk
    assert services.verify_audit().intact


@pytest.mark.django_db(transaction=True)
def test_the_ready_mail_adds_a_fixed_number_of_statements(ca, agent, settings):
    """With the "certificate ready" mail (a delivery row, its audit row, its task), an
    approval stays within a budget too."""
    settings.AUDIT_CHECKPOINT_ROWS = 10**6
    settings.AUDIT_CHECKPOINT_SECONDS = 10**6
    settings.DELIVERY_READY_MAIL = True
    first, second = _submit("warm.example.test"), _submit("mailed.example.test")
    services.approve_request(first.public_id, agent=agent)
    with CaptureQueriesContext(connection) as queries:
        services.approve_request(second.public_id, agent=agent)
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) <= MAX_STATEMENTS_WITH_MAIL[connection.vendor], statements


def test_the_certificate_row_matches_the_signed_certificate(ca, agent):
    """PEM, fingerprint, subject and search key, made without re-parsing, equal the parsed ones."""
    req = _submit("Row.Example.test")
    issued = services.approve_request(req.public_id, agent=agent)
    stored = Certificate.objects.get(pk=issued.pk)
    parsed = pki.load_pem(stored.pem)
    assert stored.pem == pki.to_pem(parsed)
    assert stored.fingerprint_sha256 == pki.sha256_hex(parsed)
    assert stored.subject == parsed.subject.rfc4514_string()
    assert stored.subject_search == pki.subject_search_key(stored.subject)
    assert stored.serial == pki.serial_hex(parsed.serial_number)
    assert stored.not_after == parsed.not_valid_after_utc
    assert issued.x509 is not None and issued.x509.serial_number == parsed.serial_number
    assert stored.created is not None


def test_counters_match_a_recount_after_every_kind_of_decision(ca, agent):
    """Approve, reject, cancel, a refused second approval and the bulk path keep the counters
    equal to a COUNT of the table."""
    reqs = [_submit(f"c{i}.example.test", f"o{i}@example.test") for i in range(7)]
    services.approve_request(reqs[0].public_id, agent=agent)
    with pytest.raises(services.InvalidTransition, match="is complete, so it cannot be approved"):
        services.approve_request(reqs[0].public_id, agent=agent)
    services.reject_request(reqs[1].public_id, agent=agent, reason="no")
    with pytest.raises(services.InvalidTransition, match="is rejected"):
        services.approve_request(reqs[1].public_id, agent=agent)
    services.cancel_request(reqs[2].public_id, agent=agent)
    assert services.status_counts() == _recount()
    result = services.approve_all_pending(agent=agent, chunk_size=3)
    assert len(result.approved) == 4
    assert (
        services.status_counts()
        == _recount()
        == {
            "awaiting_email": 0,
            "pending": 0,
            "complete": 5,
            "rejected": 1,
            "canceled": 1,
        }
    )
    assert AuditEvent.objects.filter(action="request_approved").count() == 5
    assert services.verify_audit().intact


def test_a_key_backend_failure_stores_nothing(ca, agent, monkeypatch, issued_signals):
    """A signature that fails leaves the request pending: no row, no audit, no signal."""
    req = _submit("fail.example.test")

    def broken(*args, **kwargs):
        raise pki.PKIError("the token is gone")

    from requests_app.keys.files import EncryptedFileBackend

    monkeypatch.setattr(EncryptedFileBackend, "sign_certificate", broken)
    with pytest.raises(services.CAUnavailable, match="the token is gone"):
        services.approve_request(req.public_id, agent=agent)
    req.refresh_from_db()
    assert req.status == Status.PENDING and req.certificate_id is None
    assert not Certificate.objects.exists()
    assert not AuditEvent.objects.filter(action="request_approved").exists()
    assert issued_signals == []
    assert services.status_counts() == _recount()


needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="a compare-and-swap can only lose where writers run at once (PostgreSQL)",
)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@needs_postgres
def test_the_loser_of_a_swap_stores_nothing(ca, agent, monkeypatch, settings, issued_signals):
    """An approval that read the request pending, signed, and then lost the swap to another
    approval is refused as today and leaves one certificate, one audit row, one outbox row."""
    settings.DELIVERY_POLICY = {"server": ["email_link"]}
    req = _submit("lose.example.test")
    signed, go_on = threading.Event(), threading.Event()
    real_sign = decisions.sign

    def slow_sign(*args, **kwargs):
        cert = real_sign(*args, **kwargs)
        if threading.current_thread().name == "loser":
            signed.set()
            assert go_on.wait(30)
        return cert

    monkeypatch.setattr(decisions, "sign", slow_sign)
    outcome = {}

    def lose():
        try:
            services.approve_request(req.public_id, agent=agent)
        except Exception as exc:
            outcome["error"] = exc
        finally:
            connection.close()

    loser = threading.Thread(target=lose, name="loser")
    loser.start()
    try:
        assert signed.wait(30)  # the loser has read the request pending and signed
        winner = services.approve_request(req.public_id, agent=agent)
    finally:
        go_on.set()
        loser.join(60)
    assert isinstance(outcome.get("error"), services.InvalidTransition), outcome
    assert "is complete, so it cannot be approved" in str(outcome["error"])
    assert list(Certificate.objects.values_list("pk", flat=True)) == [winner.pk]
    req.refresh_from_db()
    assert req.certificate_id == winner.pk
    assert AuditEvent.objects.filter(action="request_approved").count() == 1
    assert issued_signals == [(req.pk, winner.pk)]
    assert Delivery.objects.exclude(certificate=None).count() == 1  # one outbox row
    assert services.status_counts() == _recount()
    assert services.verify_audit().intact


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@needs_postgres
def test_approvals_racing_on_many_requests_keep_counters_and_chain(ca, agent, issued_signals):
    """Twelve threads, four requests: four certificates, one signal each, counters and chain
    right, and every loser refused as not pending (no deadlock between swap, counters, head)."""
    # The counter rows, as the migrations make them (a flushed test database has none, and
    # rows made on first use by racing threads would not count every move).
    for status in Status.values:
        StatusCount.objects.get_or_create(status=status)
    reqs = [_submit(f"m{i}.example.test", f"m{i}@example.test") for i in range(4)]
    turn = iter(range(12))
    lock = threading.Lock()

    def act():
        with lock:
            n = next(turn)
        req = reqs[n % 4]
        if n == 5:
            return services.reject_request(req.public_id, agent=agent, reason="no")
        return services.approve_request(req.public_id, agent=agent)

    results, errors = race(act, 12)
    assert all(isinstance(e, services.InvalidTransition) for e in errors), errors
    assert len(results) == 4
    issued = Certificate.objects.count()
    assert issued == len(issued_signals) == sum(isinstance(r, Certificate) for r in results)
    assert sorted(pk for pk, _ in issued_signals) == sorted(
        CertificateRequest.objects.filter(status=Status.COMPLETE).values_list("pk", flat=True)
    )
    assert services.status_counts() == _recount()
    assert services.verify_audit().intact


@pytest.fixture
def database_tasks(settings):
    """django-tasks-db as the task backend (tests run with ImmediateBackend); Django resets
    its task backends when TASKS changes."""
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}


def test_the_delivery_task_is_enqueued_in_the_approvals_transaction(
    ca, agent, settings, database_tasks, django_capture_on_commit_callbacks
):
    """With django-tasks-db the task row is written with the outbox row, not on commit; a
    rolled-back approval leaves neither."""
    from django.db import transaction
    from django_tasks_db.models import DBTaskResult

    settings.DELIVERY_POLICY = {"server": ["email_link"]}
    settings.DELIVERY_NOTIFICATIONS = False  # only the certificate's delivery
    req, other = _submit("task.example.test"), _submit("gone.example.test")
    assert not DBTaskResult.objects.exists()
    with django_capture_on_commit_callbacks() as callbacks:
        cert = services.approve_request(req.public_id, agent=agent)
    delivery = Delivery.objects.get(certificate=cert)
    task = DBTaskResult.objects.get()
    assert task.args_kwargs["args"] == [delivery.pk]
    assert callbacks == []  # nothing left for after the commit

    class Undo(Exception):
        pass

    with pytest.raises(Undo), transaction.atomic():
        services.approve_request(other.public_id, agent=agent)
        assert DBTaskResult.objects.count() == 2
        raise Undo
    assert DBTaskResult.objects.count() == 1
    assert not Delivery.objects.filter(request=other).exists()
