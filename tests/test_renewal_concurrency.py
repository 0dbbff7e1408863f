"""Renewals at the same instant on PostgreSQL, where select_for_update really locks: one
renewal of a certificate reaches the queue, and one issuance supersedes it."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from requests_app import services
from requests_app.models import AuditEvent, Certificate, CertificateRequest
from tests.helpers.concurrency import race
from tests.helpers.csrs import make_csr
from tests.helpers.renewal import dns, fresh, issued_server

Status = CertificateRequest.Status

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("empty_cache"),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="row locks are only real on PostgreSQL; CI runs this with DATABASE_URL set",
    ),
]


def test_eight_same_key_renewals_at_once_queue_one(ca, agent):
    """Eight same-key renewals of one certificate at once: one request, seven refusals."""
    old, key = issued_server(agent)
    csr = make_csr(cn=None, key=key)
    results, errors = race(lambda: services.submit_web_renewal(old.serial, csr=csr), 8)
    assert len(results) == 1, errors
    assert len(errors) == 7
    assert all(isinstance(e, services.InvalidRequest) for e in errors), errors
    assert CertificateRequest.objects.filter(renewal_of=old).count() == 1


def test_eight_confirmations_at_once_let_one_renewal_into_the_queue(ca, agent):
    """Eight renewals with new keys, confirmed at the same instant: one reaches the agents."""
    old, _ = issued_server(agent)
    waiting = [services.submit_web_renewal(old, csr=make_csr(cn=None))[0] for _ in range(8)]
    codes = iter([(req, services.issue_email_confirmation_code(req)) for req in waiting])
    lock = threading.Lock()

    def confirm():
        with lock:
            req, code = next(codes)
        return services.confirm_email(req, code, via="code")

    results, errors = race(confirm, 8)
    assert len(results) == 1, errors
    assert all(isinstance(e, services.InvalidTransition) for e in errors), errors
    statuses = CertificateRequest.objects.filter(renewal_of=old).values_list("status", flat=True)
    assert sorted(statuses) == [Status.AWAITING_EMAIL] * 7 + [Status.PENDING]


def test_eight_auto_approved_renewals_at_once_issue_one(ca, agent, settings):
    """With the same-key rule on, eight identical renewals at once issue one certificate,
    and the old one is superseded once."""
    settings.CA_PROFILES = {"server": {"auto_approve_same_key_renewal": True}}
    old, key = issued_server(agent)
    csr = make_csr(cn="www.example.test", sans=dns("www.example.test", "api.example.test"), key=key)
    results, errors = race(lambda: services.submit_web_renewal(old.serial, csr=csr), 8)
    assert len(results) == 1, errors
    issued = results[0][1]
    assert issued is not None
    assert fresh(old).superseded_by == issued
    assert Certificate.objects.count() == 2
    assert AuditEvent.objects.filter(action="certificate_superseded").count() == 1
    assert AuditEvent.objects.filter(action="renewal_auto_approved").count() == 1
    assert len(errors) == 7
    assert all(isinstance(e, services.InvalidRequest) for e in errors), errors
