"""The one write path: every transition, every refusal, the audit rows and the signals."""

from __future__ import annotations

import pytest
from cryptography import x509
from django.contrib.auth.models import Group
from django.db import connection

from requests_app import pki, services, signals
from requests_app.models import (
    AuditEvent,
    Certificate,
    CertificateAuthority,
    CertificateRequest,
    format_public_id,
    normalize_public_id,
)
from tests.helpers.csrs import make_csr
from tests.helpers.keys import key_path
from tests.helpers.mailbox import submit_confirmed

Status = CertificateRequest.Status


def _snapshot():
    return (
        CertificateRequest.objects.count(),
        Certificate.objects.count(),
        AuditEvent.objects.count(),
        services.status_counts(),
        list(CertificateRequest.objects.values_list("status", "agent_note", "certificate_id")),
    )


@pytest.fixture
def received():
    """Record every signal with whether it was sent inside a transaction."""
    log = []

    def make_receiver(name):
        def receiver(sender, **kwargs):
            log.append((name, connection.in_atomic_block, kwargs))

        return receiver

    receivers = {
        name: make_receiver(name)
        for name in (
            "request_submitted",
            "certificate_issued",
            "request_rejected",
            "request_canceled",
        )
    }
    for name, receiver in receivers.items():
        getattr(signals, name).connect(receiver)
    yield log
    for name, receiver in receivers.items():
        getattr(signals, name).disconnect(receiver)


# --- submit -------------------------------------------------------------------------


def test_submit_puts_a_pending_request_with_its_parsed_csr(ca, received):
    """A submitted request is pending, with the CSR's subject, key and SANs read out."""
    req = services.submit_request(
        profile="server",
        csr=make_csr(cn="www.example.test", sans=[x509.DNSName("alt.example.test")]),
        requester_email="admin@example.test",
        requester_name="Server Admin",
        note="for the web farm",
        extra_hostnames=["extra.example.test"],
        ip="192.0.2.7",
    )
    req.refresh_from_db()
    assert req.status == Status.PENDING
    assert req.subject == "CN=www.example.test"
    assert (req.key_type, req.key_size) == ("p256", 256)
    assert req.requested_sans == [
        "DNS:alt.example.test",
        "DNS:extra.example.test",
        "DNS:www.example.test",
    ]
    assert len(req.public_key_sha256) == 64
    assert req.requester_note == "for the web farm"
    assert req.submitter_ip == "192.0.2.7"
    event = AuditEvent.objects.get(request=req, action="request_submitted")
    assert (event.action, event.actor_label, event.ip) == (
        "request_submitted",
        "requester",
        "192.0.2.7",
    )
    assert [(name, atomic) for name, atomic, _ in received] == [("request_submitted", True)]
    assert services.status_counts()["pending"] == 1


def test_public_ids_are_random_and_read_back_leniently(ca):
    """Request IDs are 20 base32 characters, unique, and accepted in any case with hyphens."""
    ids = {
        services.submit_request(
            profile="user", csr=make_csr(cn="Ann"), requester_email="ann@example.test"
        ).public_id
        for _ in range(5)
    }
    assert len(ids) == 5
    some = ids.pop()
    assert len(some) == 20
    assert normalize_public_id(format_public_id(some).lower()) == some


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"profile": "nope"}, "profile", "unknown profile 'nope'"),
        ({"requester_email": "not-an-email"}, "requester_email", "not a valid email"),
        ({"requester_email": "a@example.test\nBcc: x@evil.test"}, "requester_email", "not a valid"),
        ({"requester_name": "Ann\r\nX-Header: 1"}, "requester_name", "one line"),
        ({"csr": "garbage"}, "csr", "not a certificate signing request"),
        ({"csr": make_csr(cn="Not a hostname at all")}, "csr", "at least one hostname"),
        ({"extra_hostnames": ["bad..example.test"]}, "extra_hostnames", "empty label"),
    ],
)
def test_submit_refuses_bad_input_and_writes_nothing(ca, kwargs, field, message):
    """Each kind of bad input is an InvalidRequest naming its field, and nothing is stored."""
    before = _snapshot()
    args = {
        "profile": "server",
        "csr": make_csr(cn="www.example.test"),
        "requester_email": "admin@example.test",
    } | kwargs
    with pytest.raises(services.InvalidRequest) as info:
        services.submit_request(**args)
    assert info.value.field == field
    assert message in info.value.message
    assert _snapshot() == before


def test_user_profile_names_the_requester_email(ca, agent):
    """A user certificate's only SAN is the requester's email address."""
    req = submit_confirmed(
        profile="user", csr=make_csr(cn="Ann Example"), requester_email="ann@example.test"
    )
    cert = services.approve_request(req.public_id, agent=agent)
    assert cert.sans == ["email:ann@example.test"]


# --- approve ------------------------------------------------------------------------


def test_approve_issues_stores_audits_and_signals(pending_request, agent, received):
    """Approval stores the certificate, completes the request, audits, and signals in one go."""
    cert = services.approve_request(
        format_public_id(pending_request.public_id), agent=agent, note="ok", ip="198.51.100.1"
    )
    req = CertificateRequest.objects.get(pk=pending_request.pk)
    assert req.status == Status.COMPLETE
    assert req.certificate == cert
    assert req.acted_by == agent
    assert req.agent_note == "ok"
    assert cert.ca == CertificateAuthority.objects.get(is_default=True)
    assert cert.serial == format(cert.x509.serial_number, "x")
    assert (
        cert.fingerprint_sha256 == cert.x509.fingerprint(cert.x509.signature_hash_algorithm).hex()
    )
    assert (cert.not_after - cert.not_before).days == 198
    event = AuditEvent.objects.get(request=req, action="request_approved")
    assert (event.actor, event.certificate, event.ip) == (agent, cert, "198.51.100.1")
    assert event.details["serial"] == cert.serial
    issued = [entry for entry in received if entry[0] == "certificate_issued"]
    assert len(issued) == 1
    _, atomic, kwargs = issued[0]
    assert atomic
    assert kwargs["certificate"] == cert
    assert kwargs["request"].pk == req.pk
    assert kwargs["actor"] == agent
    assert services.status_counts() == {
        "awaiting_email": 0,
        "pending": 0,
        "complete": 1,
        "rejected": 0,
        "canceled": 0,
    }


def test_approve_with_agent_edits(pending_request, agent):
    """An agent may shorten the validity and change the hostnames within the profile's rules."""
    cert = services.approve_request(
        pending_request.public_id,
        agent=agent,
        validity_days=30,
        sans=["DNS:www.example.test", "IP:192.0.2.10"],
    )
    assert (cert.not_after - cert.not_before).days == 30
    assert cert.sans == ["DNS:www.example.test", "IP:192.0.2.10"]
    event = AuditEvent.objects.get(action="request_approved")
    assert event.details["edited_sans"] is True
    assert event.details["validity_days"] == 30


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        ({"validity_days": 201}, "between 1 and 200 days"),
        ({"validity_days": 0}, "between 1 and 200 days"),
        ({"sans": []}, "at least one DNS name"),
        ({"sans": ["email:x@example.test"]}, "only hostnames and IPs"),
        ({"sans": ["DNS:*.com"]}, "wildcard"),
        ({"sans": ["nonsense"]}, "cannot read"),
    ],
)
def test_approve_refuses_edits_outside_the_profile(pending_request, agent, edits, message):
    """Edits outside the profile's rules are refused and the request stays pending."""
    before = _snapshot()
    with pytest.raises(services.InvalidRequest, match=message):
        services.approve_request(pending_request.public_id, agent=agent, **edits)
    assert _snapshot() == before


def test_user_sans_cannot_be_edited_to_another_address(ca, agent):
    """A user certificate cannot be made out to an address other than the requester's."""
    req = submit_confirmed(
        profile="user", csr=make_csr(cn="Ann"), requester_email="ann@example.test"
    )
    with pytest.raises(services.InvalidRequest, match="only the requester's email"):
        services.approve_request(req.public_id, agent=agent, sans=["email:boss@example.test"])


def test_second_approval_is_refused_and_changes_nothing(pending_request, agent):
    """Approving a request twice raises InvalidTransition and issues nothing more."""
    services.approve_request(pending_request.public_id, agent=agent)
    before = _snapshot()
    with pytest.raises(services.InvalidTransition, match="is complete, so it cannot be approved"):
        services.approve_request(pending_request.public_id, agent=agent)
    assert _snapshot() == before


def test_unknown_request_id(ca, agent):
    """An ID that names no request raises RequestNotFound for every action."""
    for action in (
        lambda: services.approve_request("ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ", agent=agent),
        lambda: services.reject_request("ZZZZ", agent=agent, reason="x"),
        lambda: services.cancel_request("ZZZZ", agent=agent),
    ):
        with pytest.raises(services.RequestNotFound):
            action()


def test_approve_without_a_usable_ca_key_keeps_the_request_pending(pending_request, agent):
    """A missing CA key file refuses the approval clearly and rolls everything back."""
    ca = CertificateAuthority.objects.get()
    key_path(ca).unlink()
    before = _snapshot()
    with pytest.raises(services.CAUnavailable, match="key of CA 'Test Root CA' is missing"):
        services.approve_request(pending_request.public_id, agent=agent)
    assert _snapshot() == before


def test_a_failing_receiver_rolls_the_approval_back(pending_request, agent):
    """If a certificate_issued receiver fails, the approval is undone: nothing is half-done."""

    def broken(sender, **kwargs):
        raise RuntimeError("outbox unavailable")

    signals.certificate_issued.connect(broken)
    before = _snapshot()
    try:
        with pytest.raises(RuntimeError):
            services.approve_request(pending_request.public_id, agent=agent)
    finally:
        signals.certificate_issued.disconnect(broken)
    assert _snapshot() == before


# --- reject and cancel --------------------------------------------------------------


def test_reject_needs_a_reason(pending_request, agent):
    """Rejection without a reason is refused before anything is locked or written."""
    before = _snapshot()
    with pytest.raises(services.InvalidRequest, match="reason is required"):
        services.reject_request(pending_request.public_id, agent=agent, reason="  ")
    assert _snapshot() == before


def test_reject(pending_request, agent, received):
    """A rejected request keeps the reason, audits it and signals it."""
    services.reject_request(pending_request.public_id, agent=agent, reason="Unknown host")
    req = CertificateRequest.objects.get(pk=pending_request.pk)
    assert (req.status, req.agent_note, req.acted_by) == (Status.REJECTED, "Unknown host", agent)
    event = AuditEvent.objects.get(request=req, action="request_rejected")
    assert event.details == {"reason": "Unknown host"}
    assert ("request_rejected", True) in [(n, a) for n, a, _ in received]
    assert services.status_counts()["rejected"] == 1


def test_cancel(pending_request, agent, received):
    """A canceled request is audited and signaled."""
    services.cancel_request(pending_request.public_id, agent=agent, note="duplicate")
    req = CertificateRequest.objects.get(pk=pending_request.pk)
    assert req.status == Status.CANCELED
    assert AuditEvent.objects.filter(request=req, action="request_canceled").count() == 1
    assert ("request_canceled", True) in [(n, a) for n, a, _ in received]


@pytest.mark.parametrize("first", ["approve", "reject", "cancel"])
@pytest.mark.parametrize("then", ["approve", "reject", "cancel"])
def test_finished_requests_accept_no_further_action(pending_request, agent, first, then):
    """Once decided, a request refuses every other action with InvalidTransition."""
    actions = {
        "approve": lambda: services.approve_request(pending_request.public_id, agent=agent),
        "reject": lambda: services.reject_request(
            pending_request.public_id, agent=agent, reason="r"
        ),
        "cancel": lambda: services.cancel_request(pending_request.public_id, agent=agent),
    }
    actions[first]()
    before = _snapshot()
    with pytest.raises(services.InvalidTransition):
        actions[then]()
    assert _snapshot() == before


# --- one-step and bulk ---------------------------------------------------------------


def test_issue_certificate_submits_and_approves(ca):
    """issue_certificate leaves a complete request and two audit rows, acted on by the system."""
    cert = services.issue_certificate(
        profile="server", csr=make_csr(cn="api.example.test"), requester_email="ops@example.test"
    )
    req = cert.request
    assert req.status == Status.COMPLETE
    assert list(
        req.audit_events.filter(action__startswith="request_").values_list("action", "actor_label")
    ) == [
        ("request_submitted", "administrator"),
        ("request_approved", "system"),
    ]


def test_issue_certificate_with_bad_input_writes_nothing(ca):
    """A refused one-step issue leaves neither a request nor a certificate."""
    before = _snapshot()
    with pytest.raises(services.InvalidRequest):
        services.issue_certificate(
            profile="server",
            csr=make_csr(cn="x.example.test"),
            requester_email="ops@example.test",
            validity_days=999,
        )
    assert _snapshot() == before


def test_approve_all_pending(ca, agent):
    """The bulk path approves every pending request and reports progress."""
    for i in range(3):
        services.submit_request(
            profile="server",
            csr=make_csr(cn=f"h{i}.example.test"),
            requester_email="o@example.test",
        )
    seen = []
    result = services.approve_all_pending(
        agent=agent, progress=lambda done, total: seen.append((done, total)), chunk_size=2
    )
    assert len(result.approved) == 3
    assert result.refused == []
    assert seen == [(2, 3), (3, 3)]
    assert services.status_counts()["complete"] == 3


# --- audit log ----------------------------------------------------------------------


def test_audit_events_are_append_only(pending_request):
    """Audit rows cannot be changed or deleted through the ORM."""
    event = AuditEvent.objects.get(request=pending_request, action="request_submitted")
    event.action = "tampered"
    with pytest.raises(TypeError):
        event.save()
    with pytest.raises(TypeError):
        event.delete()
    with pytest.raises(TypeError):
        AuditEvent.objects.all().update(action="tampered")
    with pytest.raises(TypeError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.filter(request=pending_request, action="tampered").count() == 0


# --- CAs and agents -------------------------------------------------------------------


def test_a_second_ca_needs_force(ca):
    """A second CA is refused unless forced; the old one stays for its certificates."""
    with pytest.raises(services.CARefused, match="already exists"):
        services.create_ca("CN=Second CA")
    second = services.create_ca("CN=Second CA", force=True)
    assert list(CertificateAuthority.objects.filter(is_default=True)) == [second]
    assert CertificateAuthority.objects.count() == 2
    assert AuditEvent.objects.filter(action="ca_created").count() == 2


def test_create_agent(db):
    """create_agent makes a staff user in the agents group with the approve permission."""
    user = services.create_agent("ann", email="ann@example.test", password="correct horse 42")
    assert user.is_staff
    assert user.groups.filter(name=services.AGENTS_GROUP).exists()
    assert user.has_perm("requests_app.approve_certificaterequest")
    assert AuditEvent.objects.filter(action="agent_created", details__username="ann").exists()


@pytest.mark.parametrize(
    ("username", "email", "password", "message"),
    [
        ("ann", "ann@example.test", "correct horse 42", "already exists"),
        ("bob", "not-an-email", "correct horse 42", "not a valid email"),
        ("bob", "bob@example.test", "short", "too short"),
    ],
)
def test_create_agent_refusals(db, username, email, password, message):
    """A taken name, a bad email or a weak password is refused clearly."""
    services.create_agent("ann", email="ann@example.test", password="correct horse 42")
    with pytest.raises(services.InvalidRequest, match=message):
        services.create_agent(username, email=email, password=password)
    assert Group.objects.get(name=services.AGENTS_GROUP).user_set.count() == 1


def _sub_ca(name: str, issuer_cert, issuer_key):
    """A CA certificate for a new P-256 key, signed by the issuer."""
    import datetime as dt

    from cryptography.x509.oid import NameOID

    key = pki.generate_private_key("p256")
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(issuer_key, pki.signature_hash(issuer_key))
    )
    return key, cert


def test_import_ca_puts_a_shuffled_chain_in_issuer_order(db):
    """A chain file listed root first is reordered issuer by issuer up to the root."""
    root_key, root = pki.create_ca("CN=Offline Root", key_type="p256")
    mid_key, mid = _sub_ca("Policy CA", root, root_key)
    leaf_key, issuing = _sub_ca("Issuing CA", mid, mid_key)
    pem = pki.to_pem
    ca = services.import_ca(
        pem(issuing).encode(),
        pki.encrypt_private_key(leaf_key, "import-pass"),
        chain_data=(pem(root) + pem(mid)).encode(),
        key_passphrase="import-pass",
    )
    assert [c.subject for c in ca.chain] == [mid.subject, root.subject]
    assert AuditEvent.objects.filter(action="ca_imported", ca=ca, details__chain_length=2).exists()
