"""Management commands: each parses, calls one service and reports; refusals are CommandErrors."""

from __future__ import annotations

import io
import json
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError

from requests_app import services
from requests_app.models import AuditEvent, Certificate, CertificateRequest
from tests.helpers.csrs import make_csr, openssl_csr

Status = CertificateRequest.Status
# Spelled out rather than services.AGENTS_GROUP, so a renamed group fails these tests.
AGENTS_GROUP = "Certificate Manager Agents"


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(*args, stdout=None, **options) -> str:
    """Run a command and return its stdout."""
    out = stdout if stdout is not None else io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def last_line(output: str) -> str:
    return output.rstrip("\n").splitlines()[-1]


@pytest.fixture
def csr_file(tmp_path):
    path = tmp_path / "host.csr"
    path.write_text(make_csr(cn="www.example.test"))
    return path


def submit(cn: str = "www.example.test") -> CertificateRequest:
    return services.submit_request(
        profile="server", csr=make_csr(cn=cn), requester_email="admin@example.test"
    )


# --- create_agent -----------------------------------------------------------------------


def test_create_agent_with_password_from_environment(db, monkeypatch, django_user_model):
    """The new agent is staff, in the agents group, may approve, and an audit row says so."""
    monkeypatch.setenv("AGENT_PW", "a-long-unusual-passphrase")
    output = run("create_agent", "alice", email="alice@example.test", password_env="AGENT_PW")
    user = django_user_model.objects.get(username="alice")
    assert "Created agent alice" in output
    assert user.is_staff and not user.is_superuser
    assert user.groups.filter(name=AGENTS_GROUP).exists()
    assert user.check_password("a-long-unusual-passphrase")
    assert user.has_perm("requests_app.approve_certificaterequest")
    event = AuditEvent.objects.get(action="agent_created")
    assert (event.actor_label, event.details["username"]) == ("system", "alice")


def test_create_agent_prompts_twice_and_refuses_a_mismatch_then_a_weak_password(
    db, monkeypatch, django_user_model
):
    """A mismatch and a too-short password are refused; the third pair is accepted."""
    answers = iter(["one-long-password", "another-password", "short", "short", "good-pass-1234"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers, "good-pass-1234"))
    err = io.StringIO()
    call_command(
        "create_agent",
        "bob",
        email="bob@example.test",
        prompt_password=True,
        stdout=io.StringIO(),
        stderr=err,
    )
    assert "do not match" in err.getvalue()
    assert "too short" in err.getvalue()
    assert django_user_model.objects.get(username="bob").check_password("good-pass-1234")


def test_create_agent_gives_up_after_three_mismatches(db, monkeypatch, django_user_model):
    """Three mismatched pairs end with a CommandError and no user."""
    answers = iter(["first-password-1", "second-password-2"] * 3)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    with pytest.raises(CommandError, match="no acceptable password after 3 attempts"):
        run("create_agent", "carol", email="carol@example.test", prompt_password=True)
    assert not django_user_model.objects.filter(username="carol").exists()


def test_create_agent_refuses_an_existing_username(agent, monkeypatch):
    """An existing username is refused before any password is asked for."""
    monkeypatch.setattr("getpass.getpass", lambda prompt="": pytest.fail("prompted"))
    with pytest.raises(CommandError, match="a user named 'agent1' already exists"):
        run("create_agent", "agent1", email="other@example.test")


def test_create_agent_refuses_a_weak_password_from_the_environment(db, monkeypatch):
    """A password from the environment must pass Django's validators too."""
    monkeypatch.setenv("AGENT_PW", "password")
    with pytest.raises(CommandError, match="too common"):
        run("create_agent", "dave", email="dave@example.test", password_env="AGENT_PW")
    with pytest.raises(CommandError, match="NO_SUCH_VAR is not set"):
        run("create_agent", "dave", email="dave@example.test", password_env="NO_SUCH_VAR")
    assert not Group.objects.get(name=AGENTS_GROUP).user_set.exists()


# --- submit_request ---------------------------------------------------------------------


def test_submit_request_prints_the_request_id_last(db, csr_file):
    """The last line is the request ID; --san values become extra hostnames."""
    output = run(
        "submit_request",
        profile="server",
        csr=str(csr_file),
        email="admin@example.test",
        name="Server Admin",
        san=["alt.example.test", "192.0.2.7"],
    )
    req = CertificateRequest.objects.get()
    assert last_line(output) == req.display_id
    assert req.status == Status.PENDING
    assert req.requester_name == "Server Admin"
    assert sorted(req.requested_sans) == [
        "DNS:alt.example.test",
        "DNS:www.example.test",
        "IP:192.0.2.7",
    ]


def test_submit_request_refuses_a_missing_file_and_a_bad_csr(db, tmp_path):
    """A missing CSR file is named; a file that is not a CSR gets the service's message."""
    missing = tmp_path / "nope.csr"
    with pytest.raises(CommandError, match=f"cannot read {missing}"):
        run("submit_request", profile="server", csr=str(missing), email="a@example.test")
    junk = tmp_path / "junk.csr"
    junk.write_text("hello")
    with pytest.raises(CommandError) as refused:
        run("submit_request", profile="server", csr=str(junk), email="a@example.test")
    assert "Traceback" not in str(refused.value)
    with pytest.raises(CommandError, match="invalid choice: 'root'"):
        run("submit_request", profile="root", csr=str(junk), email="a@example.test")
    assert not CertificateRequest.objects.exists()


def test_submit_request_refuses_a_bad_email(db, csr_file):
    """The requester's email is checked by the service."""
    with pytest.raises(CommandError, match="'not-an-email' is not a valid email address"):
        run("submit_request", profile="server", csr=str(csr_file), email="not-an-email")


# --- list_requests and show_request -------------------------------------------------------


def test_list_requests_filters_and_prints_json(agent, ca):
    """--status filters, --json is a list of requests, newest first."""
    first, second = submit("a.example.test"), submit("b.example.test")
    services.reject_request(first.public_id, agent=agent, reason="No.")
    rows = json.loads(run("list_requests", json=True))
    assert [r["request_id"] for r in rows] == [second.display_id, first.display_id]
    rejected = json.loads(run("list_requests", status="rejected", json=True))
    assert [(r["request_id"], r["agent_note"]) for r in rejected] == [(first.display_id, "No.")]
    assert json.loads(run("list_requests", profile="user", json=True)) == []
    table = run("list_requests", status="pending")
    assert second.display_id in table and first.display_id not in table
    assert len(json.loads(run("list_requests", limit=1, json=True))) == 1


def test_list_requests_refuses_a_bad_limit_and_status(db):
    """--limit must be positive and --status one of the statuses."""
    with pytest.raises(CommandError, match="'0' must be at least 1"):
        run("list_requests", "--limit", "0")
    with pytest.raises(CommandError, match="invalid choice: 'done'"):
        run("list_requests", "--status", "done")


def test_show_request_includes_the_audit_history(agent, pending_request):
    """--json has every field and the history; the text form lists the history too."""
    services.approve_request(pending_request.public_id, agent=agent)
    typed = pending_request.display_id.lower()
    data = json.loads(run("show_request", typed, json=True))
    assert data["status"] == "complete"
    assert data["acted_by"] == "agent1"
    assert data["public_key_sha256"] == pending_request.public_key_sha256
    assert data["certificate_serial"] == Certificate.objects.get().serial
    actions = [event["action"] for event in data["history"]]
    assert actions[0] == "request_submitted"
    assert "request_approved" in actions
    text = run("show_request", pending_request.public_id)
    assert "request_approved" in text
    assert "BEGIN CERTIFICATE REQUEST" in text


def test_show_request_refuses_an_unknown_id(db):
    """An unknown ID is a CommandError naming it."""
    with pytest.raises(CommandError, match="no request has the ID NOPE"):
        run("show_request", "NOPE")


# --- approve_request ----------------------------------------------------------------------


def test_approve_request_prints_the_serial_last(agent, pending_request):
    """The last line is the serial; --agent is recorded as the approver."""
    output = run("approve_request", pending_request.display_id, validity_days=30, agent="agent1")
    cert = Certificate.objects.get()
    assert last_line(output) == cert.serial_colons
    pending_request.refresh_from_db()
    assert (pending_request.status, pending_request.acted_by) == (Status.COMPLETE, agent)
    assert (cert.not_after - cert.not_before).days == 30


def test_approve_request_refuses_a_second_approval(pending_request):
    """A request that is already complete cannot be approved again."""
    run("approve_request", pending_request.public_id)
    with pytest.raises(CommandError, match="is complete, so it cannot be approved"):
        run("approve_request", pending_request.public_id)
    assert Certificate.objects.count() == 1


def test_approve_request_refuses_bad_agents_and_arguments(pending_request, django_user_model):
    """--agent must hold the permission; REQUEST_ID and --all-pending exclude each other."""
    django_user_model.objects.create_user("mallory", "m@example.test", "x")
    with pytest.raises(CommandError, match="user 'mallory' may not act on requests"):
        run("approve_request", pending_request.public_id, agent="mallory")
    with pytest.raises(CommandError, match="no user named 'ghost'"):
        run("approve_request", pending_request.public_id, agent="ghost")
    with pytest.raises(CommandError, match="one of the arguments REQUEST_ID --all-pending"):
        run("approve_request")
    with pytest.raises(CommandError, match="not allowed with argument"):
        run("approve_request", pending_request.public_id, "--all-pending")
    with pytest.raises(CommandError, match="validity must be between 1 and 200 days"):
        run("approve_request", pending_request.public_id, validity_days=365)
    pending_request.refresh_from_db()
    assert pending_request.status == Status.PENDING


def test_approve_all_pending_summarizes_and_shows_progress_on_a_terminal(agent, ca):
    """Every approvable request is approved; a refused one is reported with its reason."""
    good = [submit(f"h{i}.example.test") for i in range(3)]
    bad = submit("bad.example.test")
    # Bypass the services on purpose: a request whose names no longer fit its profile.
    CertificateRequest.objects.filter(pk=bad.pk).update(requested_sans=["email:x@example.test"])
    out = TTY()
    output = run("approve_request", "--all-pending", agent="agent1", stdout=out)
    assert "\r[" in output and "4/4" in output
    assert "Approved 3, refused 1 pending request." in output
    assert f"refused {bad.display_id}: a server certificate names only hostnames" in output
    assert (
        CertificateRequest.objects.filter(pk__in=[r.pk for r in good])
        .filter(status=Status.COMPLETE)
        .count()
        == 3
    )


def test_approve_all_pending_without_a_terminal_prints_no_progress_bar(pending_request):
    """Piped output gets only the summary."""
    output = run("approve_request", all_pending=True)
    assert "\r" not in output
    assert "Approved 1, refused 0 pending requests." in output
    with pytest.raises(CommandError, match="--validity-days applies to one request"):
        run("approve_request", all_pending=True, validity_days=10)


# --- reject_request and cancel_request -----------------------------------------------------


def test_reject_request_records_the_reason(agent, pending_request):
    """The reason is stored on the request and the agent recorded."""
    output = run(
        "reject_request", pending_request.public_id, reason="Unknown host.", agent="agent1"
    )
    assert "Rejected request" in output
    pending_request.refresh_from_db()
    assert (pending_request.status, pending_request.agent_note, pending_request.acted_by) == (
        Status.REJECTED,
        "Unknown host.",
        agent,
    )


def test_reject_request_refuses_a_blank_or_missing_reason(pending_request):
    """A reason is required, by argparse and by the service."""
    with pytest.raises(CommandError, match="a reason is required"):
        run("reject_request", pending_request.public_id, reason="   ")
    with pytest.raises(CommandError, match="the following arguments are required: --reason"):
        run("reject_request", pending_request.public_id)
    pending_request.refresh_from_db()
    assert pending_request.status == Status.PENDING


def test_cancel_request_cancels_once(pending_request):
    """Canceling works once; the second time is refused with the service's message."""
    assert "Canceled request" in run("cancel_request", pending_request.public_id)
    pending_request.refresh_from_db()
    assert pending_request.status == Status.CANCELED
    with pytest.raises(CommandError, match="is canceled, so it cannot be canceled"):
        run("cancel_request", pending_request.public_id)
    with pytest.raises(CommandError, match="no request has the ID"):
        run("cancel_request", "0000-0000-0000-0000-0000")


# --- issue_certificate, list_certificates, export_certificate ------------------------------


def test_issue_certificate_prints_the_serial_last(ca, csr_file):
    """Submit and approve in one step: a complete request and a valid certificate."""
    output = run(
        "issue_certificate",
        profile="server",
        csr=str(csr_file),
        email="admin@example.test",
        san=["alt.example.test"],
        validity_days=10,
    )
    cert = Certificate.objects.get()
    assert last_line(output) == cert.serial_colons
    assert sorted(cert.sans) == ["DNS:alt.example.test", "DNS:www.example.test"]
    assert cert.request.status == Status.COMPLETE


def test_issue_certificate_refuses_too_long_a_validity_and_stores_nothing(ca, csr_file):
    """The profile maximum is enforced, and the refused request is not left in the queue."""
    with pytest.raises(CommandError, match="validity must be between 1 and 200 days"):
        run(
            "issue_certificate",
            profile="server",
            csr=str(csr_file),
            email="admin@example.test",
            validity_days=1000,
        )
    assert not CertificateRequest.objects.exists()


def test_issue_certificate_without_a_ca_is_refused(db, csr_file):
    """Without a CA the administrator is told to create one."""
    with pytest.raises(CommandError, match="no CA exists yet"):
        run("issue_certificate", profile="server", csr=str(csr_file), email="a@example.test")


def test_list_certificates_json_and_profile_filter(agent, pending_request):
    """--json lists issued certificates; --profile filters them."""
    cert = services.approve_request(pending_request.public_id, agent=agent)
    rows = json.loads(run("list_certificates", json=True))
    assert [(r["serial"], r["subject"], r["status"]) for r in rows] == [
        (cert.serial, cert.subject, "valid")
    ]
    assert json.loads(run("list_certificates", profile="user", json=True)) == []
    assert cert.serial_colons in run("list_certificates")


def test_export_certificate_formats(agent, pending_request, tmp_path):
    """PEM goes to stdout as text, DER as bytes; the serial is accepted as people type it."""
    cert = services.approve_request(pending_request.public_id, agent=agent)
    pem = run("export_certificate", cert.serial_colons)
    assert pem.strip() == cert.pem.strip()
    raw = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    call_command("export_certificate", cert.serial.upper(), format="der", stdout=raw)
    raw.flush()
    assert x509.load_der_x509_certificate(raw.buffer.getvalue()) == cert.x509
    p7b = tmp_path / "cert.p7b"
    run("export_certificate", cert.serial, format="p7b", output=str(p7b))
    assert len(pkcs7.load_der_pkcs7_certificates(p7b.read_bytes())) == 2


def test_export_certificate_refusals(agent, pending_request, tmp_path):
    """Unknown serials and formats, unwritable paths and DER to a terminal are refused."""
    cert = services.approve_request(pending_request.public_id, agent=agent)
    with pytest.raises(CommandError, match="no certificate has the serial number ab:cd"):
        run("export_certificate", "ab:cd")
    target = tmp_path / "missing-dir" / "cert.pem"
    with pytest.raises(CommandError, match=f"cannot write {target}"):
        run("export_certificate", cert.serial, output=str(target))
    with pytest.raises(CommandError, match="invalid choice: 'pfx'"):
        run("export_certificate", cert.serial, "--format", "pfx")
    with pytest.raises(CommandError, match="der is binary"):
        run("export_certificate", cert.serial, format="der", stdout=TTY())


def test_end_to_end_openssl_request_to_verified_chain(ca, tmp_path):
    """A CSR from `openssl req`, submitted, approved and exported, verifies against the CA."""
    csr = openssl_csr(
        tmp_path, subject="/CN=e2e.example.test/O=Example", sans="DNS:e2e.example.test"
    )
    request_id = last_line(
        run("submit_request", profile="server", csr=str(csr), email="ops@example.test")
    )
    serial = last_line(run("approve_request", request_id))
    chain = tmp_path / "fullchain.pem"
    run("export_certificate", serial, format="chain", output=str(chain))
    ca_pem = tmp_path / "ca.pem"
    ca_pem.write_text(ca.certificate_pem)
    result = subprocess.run(
        ["openssl", "verify", "-purpose", "sslserver", "-CAfile", str(ca_pem), str(chain)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("OK")
