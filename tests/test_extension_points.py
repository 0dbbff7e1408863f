"""The seam to delivery: explicit extension points; receivers never undo what they report."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest
from django.contrib import admin
from django.db import IntegrityError, connection
from django.urls import reverse

from delivery import panels
from delivery import services as delivery_services
from delivery.backends import BaseDeliveryBackend, SendResult
from delivery.models import Delivery, DeliveryEvent
from requests_app import extensions, services
from requests_app.admin import CertificateAdmin
from requests_app.models import AuditEvent, Certificate, CertificateRequest
from tests.conftest import make_csr
from tests.helpers.mailbox import submit_confirmed
from tests.helpers.mfa import login_verified

ROOT = Path(__file__).resolve().parent.parent
Status = Delivery.Status


@pytest.fixture(autouse=True)
def _no_ready_mail(settings):
    """These tests count the deliveries they make; the ready mail a server requester gets
    on approval is tested in test_mails."""
    settings.DELIVERY_READY_MAIL = False


class ExplodingRecipientBackend(BaseDeliveryBackend):
    """A plugin with a bug: asking it where an automatic delivery goes raises."""

    kinds = ("certificate",)

    def default_recipient(self, delivery_request, certificate):
        raise RuntimeError("plugin bug: no directory entry")

    def build_message(self, delivery):
        return delivery.certificate.pem

    def transmit(self, delivery, message):
        return SendResult()


class InjectingRecipientBackend(ExplodingRecipientBackend):
    """A plugin that answers with a recipient the outbox must refuse."""

    def default_recipient(self, delivery_request, certificate):
        return "ops@example.test\r\nBcc: evil@example.test"


def _with_backend(settings, alias: str, backend: type) -> None:
    settings.DELIVERY_BACKENDS = settings.DELIVERY_BACKENDS | {
        alias: {"BACKEND": f"{__name__}.{backend.__name__}"}
    }
    settings.DELIVERY_POLICY = {"server": [alias]}


def _submit(cn: str = "seam.example.test") -> CertificateRequest:
    return services.submit_request(
        profile="server", csr=make_csr(cn=cn), requester_email="ops@example.test"
    )


def _only_failed_delivery(req: CertificateRequest) -> Delivery:
    """The request's one certificate delivery, which must be a failed one never sent."""
    (delivery,) = Delivery.objects.filter(request=req, certificate__isnull=False)
    assert (delivery.status, delivery.attempts, delivery.sent_at) == (Status.FAILED, 0, None)
    return delivery


def _agent_sees(client, agent, req: CertificateRequest, *texts: str) -> None:
    login_verified(client, agent)
    page = client.get(req.get_agent_url()).content.decode()
    for text in ('id="delivery"', *texts):
        assert text in page, text
    queue = client.get(reverse("agent:request_list")).content.decode()
    assert "delivery-problem" in queue


# --- receiver faults: the change stands, the agent sees a failed delivery -------------


@pytest.mark.django_db(transaction=True)
def test_a_plugin_raising_in_default_recipient_does_not_undo_the_approval(
    ca, agent, client, settings, caplog
):
    """A policy backend whose default_recipient raises: issued, committed, failed row, log."""
    _with_backend(settings, "exploding", ExplodingRecipientBackend)
    req = _submit()
    with caplog.at_level(logging.ERROR, logger="delivery"):
        cert = services.approve_request(req.public_id, agent=agent)
    assert not connection.in_atomic_block  # the approval's transaction is over: committed
    req.refresh_from_db()
    assert (req.status, req.certificate_id) == (CertificateRequest.Status.COMPLETE, cert.pk)
    assert Certificate.objects.filter(pk=cert.pk).exists()
    delivery = _only_failed_delivery(req)
    assert (delivery.backend, delivery.certificate_id, delivery.recipient) == (
        "exploding",
        cert.pk,
        "",
    )
    assert "plugin bug: no directory entry" in delivery.last_error
    assert not delivery.retryable  # no recipient to try again with
    assert any(r.exc_info and "exploding" in r.getMessage() for r in caplog.records), caplog.records
    assert AuditEvent.objects.filter(action="delivery_failed", request=req).exists()
    _agent_sees(client, agent, req, "plugin bug: no directory entry", "Email certificate")


@pytest.mark.django_db(transaction=True)
def test_a_backend_alias_gone_after_start_up_does_not_undo_the_approval(
    ca, agent, client, settings, caplog
):
    """The user profile's email_link vanished from DELIVERY_BACKENDS: issued, failed row."""
    settings.DELIVERY_BACKENDS = {
        alias: config
        for alias, config in settings.DELIVERY_BACKENDS.items()
        if alias != "email_link"
    }
    req = submit_confirmed(
        profile="user", csr=make_csr(cn="Ann Example"), requester_email="ann@example.test"
    )
    with caplog.at_level(logging.ERROR, logger="delivery"):
        cert = services.approve_request(req.public_id, agent=agent)
    assert not connection.in_atomic_block
    req.refresh_from_db()
    assert req.certificate_id == cert.pk
    delivery = Delivery.objects.get(request=req, certificate=cert)
    assert (delivery.status, delivery.backend) == (Status.FAILED, "email_link")
    assert "no delivery backend 'email_link' in DELIVERY_BACKENDS" in delivery.last_error
    assert any(r.exc_info for r in caplog.records)
    _agent_sees(client, agent, req, "no delivery backend &#x27;email_link&#x27;")


@pytest.mark.django_db(transaction=True)
def test_a_database_error_in_the_receiver_rolls_back_only_the_receivers_work(
    ca, agent, client, settings, monkeypatch
):
    """An IntegrityError after the outbox row was written: that row goes, the approval stays."""
    settings.DELIVERY_POLICY = {"server": ["test"]}
    DeliveryEvent.objects.create(provider="seam", event_id="taken")
    real_audit = delivery_services.audit

    def audit_hitting_a_unique_constraint(action, **kwargs):
        if action == "delivery_queued":
            DeliveryEvent.objects.create(provider="seam", event_id="taken")
        return real_audit(action, **kwargs)

    monkeypatch.setattr(delivery_services, "audit", audit_hitting_a_unique_constraint)
    req = _submit()
    cert = services.approve_request(req.public_id, agent=agent)
    assert not connection.in_atomic_block
    req.refresh_from_db()
    assert req.certificate_id == cert.pk
    assert AuditEvent.objects.filter(action="request_approved", request=req).exists()
    delivery = _only_failed_delivery(req)  # the pending row written before the error is gone
    assert delivery.backend == "test"
    assert delivery.recipient == "ops@example.test"
    assert "IntegrityError" in delivery.last_error
    assert delivery.retryable
    _agent_sees(client, agent, req, "IntegrityError", "Retry")


@pytest.mark.django_db(transaction=True)
def test_when_even_the_failed_row_cannot_be_written_the_approval_stands(
    ca, agent, settings, monkeypatch, caplog
):
    """Every outbox write fails: the receiver logs twice and the certificate is still issued."""
    settings.DELIVERY_POLICY = {"server": ["test"]}
    req = _submit()

    def broken_create(*args, **kwargs):
        raise IntegrityError("outbox table is broken")

    monkeypatch.setattr(Delivery.objects, "create", broken_create)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="delivery"):
        cert = services.approve_request(req.public_id, agent=agent)
    assert not connection.in_atomic_block
    req.refresh_from_db()
    assert req.certificate_id == cert.pk
    assert not Delivery.objects.filter(certificate=cert).exists()
    errors = [r for r in caplog.records if r.exc_info]
    assert len(errors) == 2 and "either" in errors[1].getMessage()


@pytest.mark.django_db(transaction=True)
def test_a_bad_recipient_from_a_plugin_becomes_a_failed_delivery(ca, agent, settings):
    """A header-injecting default recipient is refused, recorded blank, and never retried."""
    _with_backend(settings, "injecting", InjectingRecipientBackend)
    req = _submit()
    cert = services.approve_request(req.public_id, agent=agent)
    delivery = _only_failed_delivery(req)
    assert delivery.certificate_id == cert.pk
    assert delivery.recipient == ""
    assert "not a single valid recipient" in delivery.last_error
    with pytest.raises(delivery_services.DeliveryRefused, match="no recipient"):
        delivery_services.retry_delivery(delivery.pk, actor=agent)
    assert Delivery.objects.get(pk=delivery.pk).status == Status.FAILED


@pytest.mark.django_db(transaction=True)
def test_notification_faults_undo_no_submission_rejection_or_revocation(
    ca, agent, client, settings
):
    """Without the notify backend, submit, reject and revoke still commit, with failed rows."""
    settings.DELIVERY_NOTIFICATIONS = True
    settings.DELIVERY_BACKENDS = {
        alias: config for alias, config in settings.DELIVERY_BACKENDS.items() if alias != "notify"
    }
    rejected = _submit("rejected.example.test")
    services.reject_request(rejected.public_id, agent=agent, reason="Not our host")
    issued = _submit("issued.example.test")
    cert = services.approve_request(issued.public_id, agent=agent)
    services.revoke_certificate(cert.serial, reason="superseded", actor=agent)
    assert not connection.in_atomic_block
    rejected.refresh_from_db()
    assert rejected.status == CertificateRequest.Status.REJECTED
    cert.refresh_from_db()
    assert cert.status == Certificate.Status.REVOKED
    kinds = set(Delivery.objects.filter(status=Status.FAILED).values_list("request_id", "kind"))
    assert {
        (rejected.pk, "request_received"),
        (rejected.pk, "request_waiting"),
        (rejected.pk, "request_rejected"),
        (issued.pk, "certificate_revoked"),
    } <= kinds
    assert not Delivery.objects.exclude(status=Status.FAILED).exists()
    assert all(
        "no delivery backend 'notify'" in error
        for error in Delivery.objects.values_list("last_error", flat=True)
    )
    # A pending or decided request without a certificate shows its failed notifications too.
    _agent_sees(client, agent, rejected, "request rejected (to the requester)")


def test_the_system_check_still_refuses_an_unknown_alias_at_start_up(settings):
    """Receivers survive a vanished alias, but start-up still refuses a policy naming one."""
    from django.core import checks

    settings.DELIVERY_POLICY = {"server": ["vanished"]}
    assert any(e.id == "delivery.E003" for e in checks.run_checks())


# --- the registries ------------------------------------------------------------------


def test_delivery_fills_the_registries_in_ready():
    """The delivery panel, the queue mark and the two send actions are registered."""
    assert extensions._agent_panels["delivery"].context is panels.delivery_panel
    assert (
        extensions._queue_marks["delivery_problem"].mark is panels.requests_with_delivery_problems
    )
    actions = {a.__name__: a for a in extensions.certificate_admin_actions()}
    assert {
        name: (action.short_description, action.allowed_permissions)
        for name, action in actions.items()
    } == {
        "send_certificate_selected": ("Send certificate to requester (attached)", ["approve"]),
        "send_link_selected": ("Send retrieval link to requester", ["approve"]),
    }


def test_the_certificate_admin_is_registered_once_with_the_registered_actions(rf, agent):
    """Certificate's admin is requests_app's own class; its actions include delivery's."""
    model_admin = admin.site._registry[Certificate]
    assert type(model_admin) is CertificateAdmin
    request = rf.get("/admin/requests_app/certificate/")
    request.user = agent
    names = list(model_admin.get_actions(request))
    assert names[-2:] == ["send_certificate_selected", "send_link_selected"]
    assert {"revoke_selected", "release_hold_selected"} <= set(names)


@pytest.fixture
def own_registries(monkeypatch):
    """Registries that a test may add to without leaking into other tests."""
    for name in ("_agent_panels", "_queue_marks", "_certificate_admin_actions"):
        monkeypatch.setattr(extensions, name, dict(getattr(extensions, name)))


@pytest.fixture
def extra_templates(settings, tmp_path):
    """A template directory a test can write a third app's templates into."""
    engine = settings.TEMPLATES[0]
    settings.TEMPLATES = [{**engine, "DIRS": [tmp_path, *engine.get("DIRS", [])]}]
    return tmp_path


def test_another_app_adds_a_panel_and_a_queue_mark(
    own_registries, extra_templates, client, agent, pending_request
):
    """A third app's panel and row mark appear on the agent pages, with one mark query."""
    (extra_templates / "audit_panel.html").write_text(
        '<section id="third">{{ label }} {{ csrf_token }}</section>'
    )
    (extra_templates / "mark.html").write_text('<small class="third">{{ req.profile }}</small>')
    calls = []

    def mark(cert_requests):
        calls.append(len(cert_requests))
        return {r.pk for r in cert_requests}

    extensions.register_agent_panel(
        "third",
        template="audit_panel.html",
        context=lambda request, cert_request, certificate: {"label": cert_request.display_id},
    )
    extensions.register_agent_panel(
        "silent", template="missing.html", context=lambda request, cert_request, cert: None
    )
    extensions.register_queue_mark("third", template="mark.html", mark=mark)
    login_verified(client, agent)
    page = client.get(pending_request.get_agent_url()).content.decode()
    assert f'<section id="third">{pending_request.display_id} ' in page
    assert 'id="delivery"' not in page  # no certificate and no failed notification
    queue = client.get(reverse("agent:request_list")).content.decode()
    assert '<small class="third">server</small>' in queue
    assert calls == [1]


def test_another_app_adds_a_certificate_admin_action(own_registries, client, agent, ca):
    """A registered action shows in the certificate admin and runs on the selection."""
    ran = []

    @extensions.register_certificate_admin_action
    @admin.action(description="Count them", permissions=["approve"])
    def count_selected(modeladmin, request, queryset):
        ran.append(queryset.count())

    req = _submit()
    cert = services.approve_request(req.public_id, agent=agent)
    login_verified(client, agent)
    page = client.get("/admin/requests_app/certificate/").content.decode()
    assert "Count them" in page
    client.post(
        "/admin/requests_app/certificate/",
        {"action": "count_selected", "_selected_action": [cert.pk]},
    )
    assert ran == [1]


# --- the seam holds -------------------------------------------------------------------


def test_requests_app_never_imports_delivery():
    """No module of requests_app imports the delivery package."""
    offenders = []
    for path in (ROOT / "requests_app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path}: {n}" for n in names if n.split(".")[0] == "delivery"]
    assert offenders == []


def test_requests_app_templates_name_no_delivery_tags():
    """The agent templates load no delivery template tags and include no delivery template."""
    for path in (ROOT / "templates" / "agent").glob("*.html"):
        text = path.read_text()
        assert "delivery" not in text, path
