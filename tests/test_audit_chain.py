"""The audit log's hash chain: verify_audit passes on an honest log and names the first row
of any edit, deletion, insertion or reordering made behind the portal's back (raw SQL)."""

from __future__ import annotations

import importlib
import itertools
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from requests_app import auditchain, services
from requests_app.models import AuditChainHead, AuditCheckpoint, AuditEvent
from tests.helpers.concurrency import race
from tests.helpers.csrs import make_csr

TABLE = AuditEvent._meta.db_table


def sql(statement: str, *params) -> None:
    """Run raw SQL on the audit table ({t} in statement), behind the ORM's back."""
    with connection.cursor() as cursor:
        cursor.execute(statement.replace("{t}", TABLE), params)


@pytest.fixture
def history(ca, agent):
    """A log of a dozen rows: a CA, submissions, an approval, a rejection, a bulk approval."""
    reqs = [
        services.submit_request(
            profile="server", csr=make_csr(cn=f"h{i}.example.test"), requester_email="o@e.test"
        )
        for i in range(5)
    ]
    services.approve_request(reqs[0].public_id, agent=agent, ip="2001:DB8::0:1")
    services.reject_request(reqs[1].public_id, agent=agent, reason="no", ip="192.0.2.7")
    services.approve_all_pending(agent=agent)
    return list(AuditEvent.objects.order_by("seq"))


def verify_fails() -> str:
    with pytest.raises(CommandError) as failure:
        call_command("verify_audit")
    return str(failure.value)


@pytest.mark.django_db
def test_an_honest_log_verifies(history, capsys):
    """Every row is chained in order, ids rise with seq, and verify_audit says so."""
    assert [row.seq for row in history] == list(range(1, len(history) + 1))
    assert [row.pk for row in history] == sorted(row.pk for row in history)
    assert history[0].prev_hash == auditchain.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(history))
    call_command("verify_audit")
    assert f"audit log intact: {len(history)} rows" in capsys.readouterr().out


@pytest.mark.django_db
def test_an_edited_row_is_named(history):
    """An UPDATE of one row's details is found at that row."""
    victim = history[4]
    sql("UPDATE {t} SET details = %s WHERE id = %s", '{"reason": "forged"}', victim.pk)
    message = verify_fails()
    assert f"first bad: audit row id={victim.pk} (seq {victim.seq}" in message
    assert "edited" in message


@pytest.mark.django_db
def test_an_edited_actor_or_time_is_named(history):
    """Changing who acted or when is an edit too."""
    victim = history[3]
    sql("UPDATE {t} SET actor_label = %s WHERE id = %s", "someone-else", victim.pk)
    assert f"first bad: audit row id={victim.pk} " in verify_fails()


@pytest.mark.django_db
def test_a_deleted_row_is_named_by_its_successor(history):
    """A DELETE in the middle leaves a gap, named at the row after it."""
    victim, successor = history[5], history[6]
    sql("DELETE FROM {t} WHERE id = %s", victim.pk)
    message = verify_fails()
    assert f"first bad: audit row id={successor.pk} (seq {successor.seq}" in message
    assert f"seq {victim.seq}) are missing" in message


@pytest.mark.django_db
def test_deleting_the_last_rows_is_found_by_the_head(history):
    """Cutting rows off the end is found by the signed head."""
    sql("DELETE FROM {t} WHERE seq > %s", history[-3].seq)
    message = verify_fails()
    assert "the chain head" in message
    assert f"chain ends at seq {history[-3].seq}" in message


@pytest.mark.django_db
def test_cutting_the_tail_and_moving_the_head_needs_the_key(history):
    """An attacker who also moves the head to the new last row cannot sign it."""
    last = history[-3]
    sql("DELETE FROM {t} WHERE seq > %s", last.seq)
    AuditChainHead.objects.filter(pk=1).update(seq=last.seq, hash=last.hash)
    assert "its signature does not match" in verify_fails()


@pytest.mark.django_db
def test_an_inserted_unchained_row_is_named(history):
    """A row INSERTed without a place in the chain is named."""
    sql(
        "INSERT INTO {t} (time, actor_label, action, details, prev_hash, hash) "
        "VALUES (%s, %s, %s, %s, '', '')",
        history[2].time,
        "agent1",
        "request_approved",
        "{}",
    )
    inserted = AuditEvent.objects.filter(seq__isnull=True).get()
    assert f"first bad: audit row id={inserted.pk}: not in the chain" in verify_fails()


@pytest.mark.django_db
def test_an_inserted_row_with_a_forged_place_is_named(history):
    """A row INSERTed between two others (the rest renumbered) does not link or hash."""
    at = history[6].seq
    sql("UPDATE {t} SET seq = seq + 1000 WHERE seq >= %s", at)
    sql("UPDATE {t} SET seq = seq - 999 WHERE seq >= %s", at + 1000)
    sql(
        "INSERT INTO {t} (time, actor_label, action, details, seq, prev_hash, hash) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        history[5].time,
        "agent1",
        "request_canceled",
        "{}",
        at,
        history[5].hash,
        "f" * 64,
    )
    inserted = AuditEvent.objects.get(seq=at)
    assert f"first bad: audit row id={inserted.pk} (seq {at}" in verify_fails()


@pytest.mark.django_db
def test_swapped_times_are_named(history):
    """Swapping two rows' times (to reorder the log as shown) breaks both hashes."""
    a, b = history[3], history[7]
    sql("UPDATE {t} SET time = %s WHERE id = %s", b.time, a.pk)
    sql("UPDATE {t} SET time = %s WHERE id = %s", a.time, b.pk)
    assert f"first bad: audit row id={a.pk} (seq {a.seq}" in verify_fails()


@pytest.mark.django_db
def test_swapped_ids_are_named(history):
    """Swapping two rows' ids puts the ids against the chain's order."""
    a, b = history[3], history[4]
    sql("UPDATE {t} SET id = %s WHERE id = %s", -1, a.pk)
    sql("UPDATE {t} SET id = %s WHERE id = %s", a.pk, b.pk)
    sql("UPDATE {t} SET id = %s WHERE id = %s", b.pk, -1)
    message = verify_fails()
    assert f"first bad: audit row id={b.pk} (seq {a.seq}" in message
    assert "reordered" in message


@pytest.mark.django_db
def test_a_rewritten_chain_is_caught_by_the_signed_checkpoint(history, settings):
    """Recomputing every hash after an edit, head included, still fails the checkpoint."""
    settings.AUDIT_CHECKPOINT_ROWS = 3
    services.write_audit_checkpoint()
    assert AuditCheckpoint.objects.exists()
    victim = AuditEvent.objects.get(seq=2)
    sql("UPDATE {t} SET actor_label = %s WHERE id = %s", "nobody", victim.pk)
    previous = auditchain.GENESIS
    for row in AuditEvent.objects.order_by("seq"):
        digest = auditchain.row_digest(row, seq=row.seq, prev_hash=previous)
        sql("UPDATE {t} SET prev_hash = %s, hash = %s WHERE id = %s", previous, digest, row.pk)
        previous = digest
    # Without the key the head's signature cannot be redone; say the attacker had it there.
    last = AuditEvent.objects.order_by("-seq").first()
    AuditChainHead.objects.filter(pk=1).update(
        hash=previous, mac=auditchain.head_mac(last.seq, previous)
    )
    message = verify_fails()
    assert "differs from the signed checkpoint" in message


@pytest.mark.django_db
def test_checkpoints_are_written_as_rows_accumulate(ca, settings):
    """Every AUDIT_CHECKPOINT_ROWS rows a signed checkpoint pins the chain."""
    settings.AUDIT_CHECKPOINT_ROWS = 4
    for i in range(9):
        services.submit_request(
            profile="server", csr=make_csr(cn=f"c{i}.example.test"), requester_email="o@e.test"
        )
    checkpoints = list(AuditCheckpoint.objects.all())
    assert len(checkpoints) >= 2
    for checkpoint in checkpoints:
        assert AuditEvent.objects.get(seq=checkpoint.seq).hash == checkpoint.hash
    call_command("verify_audit")


@pytest.mark.django_db
def test_the_checkpoint_command_signs_the_head(history, capsys):
    """audit_checkpoint writes an audit row and a checkpoint at it, and prints the line."""
    call_command("audit_checkpoint")
    last = AuditEvent.objects.order_by("-seq").first()
    assert last.action == "audit_checkpoint"
    assert f"seq={last.seq} hash={last.hash}" in capsys.readouterr().out
    call_command("verify_audit")


@pytest.mark.django_db
def test_a_forged_checkpoint_is_named(history):
    """A checkpoint whose signature does not hold is reported."""
    services.write_audit_checkpoint()
    AuditCheckpoint.objects.update(mac="0" * 64)
    assert "checkpoint at seq" in verify_fails()


@pytest.mark.django_db
def test_the_audit_model_refuses_updates_and_deletes(history):
    """The ORM refuses to rewrite the log (raw SQL is what verify_audit is for)."""
    with pytest.raises(TypeError):
        history[0].save()
    with pytest.raises(TypeError):
        AuditEvent.objects.filter(pk=history[0].pk).delete()


@pytest.mark.django_db
def test_the_migration_chains_rows_written_before_it(history):
    """Rows from before the chain are hashed in id order by the data migration."""
    sql("UPDATE {t} SET seq = NULL, prev_hash = '', hash = ''")
    AuditChainHead.objects.all().delete()
    AuditCheckpoint.objects.all().delete()
    migration = importlib.import_module("requests_app.migrations.0009_audit_chain")
    state = MigrationExecutor(connection).loader.project_state(("requests_app", "0009_audit_chain"))
    # RunPython's function reads only the connection of its schema editor.
    migration.chain_existing_rows(state.apps, SimpleNamespace(connection=connection))
    call_command("verify_audit")
    assert AuditCheckpoint.objects.get().seq == len(history)


needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="row locks are only real on PostgreSQL; CI runs this with DATABASE_URL set",
)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@needs_postgres
def test_concurrent_approvals_keep_one_unbroken_chain(ca, agent):
    """Twelve threads approving, rejecting and submitting at once leave one chain that verifies."""
    reqs = [
        services.submit_request(
            profile="server", csr=make_csr(cn=f"p{i}.example.test"), requester_email="o@e.test"
        )
        for i in range(12)
    ]
    queue = iter(reqs)

    def act():
        req = next(queue)  # next() on a shared iterator is atomic under the GIL
        if req.pk % 3 == 0:
            return services.reject_request(req.public_id, agent=agent, reason="no")
        return services.approve_request(req.public_id, agent=agent)

    results, errors = race(act, 12)
    assert not errors, errors
    assert len(results) == 12
    report = services.verify_audit()
    assert report.intact, [str(p) for p in report.problems]
    seqs = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
