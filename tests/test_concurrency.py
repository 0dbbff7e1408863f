"""Concurrent decisions on PostgreSQL, where select_for_update really locks."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from requests_app import services
from requests_app.models import Certificate, CertificateRequest
from tests.helpers.concurrency import race
from tests.helpers.csrs import make_csr

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="row locks are only real on PostgreSQL; CI runs this with DATABASE_URL set",
    ),
]


def test_eight_agents_approving_at_once_issue_one_certificate(ca, agent):
    """Eight threads approving one request yield one certificate and seven InvalidTransitions."""
    req = services.submit_request(
        profile="server", csr=make_csr(cn="race.example.test"), requester_email="o@example.test"
    )
    results, errors = race(lambda: services.approve_request(req.public_id, agent=agent), 8)
    assert len(results) == 1
    assert len(errors) == 7
    assert all(isinstance(e, services.InvalidTransition) for e in errors), errors
    assert Certificate.objects.count() == 1
    req.refresh_from_db()
    assert req.status == CertificateRequest.Status.COMPLETE
    assert req.audit_events.filter(action="request_approved").count() == 1
    assert services.status_counts() == {
        "awaiting_email": 0,
        "pending": 0,
        "complete": 1,
        "rejected": 0,
        "canceled": 0,
    }


def test_approve_and_reject_racing_leave_one_decision(ca, agent):
    """An approval and a rejection racing on one request leave exactly one decision."""
    req = services.submit_request(
        profile="server", csr=make_csr(cn="race2.example.test"), requester_email="o@example.test"
    )
    flip = iter(range(8))
    lock = threading.Lock()

    def decide():
        with lock:
            n = next(flip)
        if n % 2:
            return services.reject_request(req.public_id, agent=agent, reason="no")
        return services.approve_request(req.public_id, agent=agent)

    results, errors = race(decide, 8)
    assert len(results) == 1
    assert all(isinstance(e, services.InvalidTransition) for e in errors), errors
    req.refresh_from_db()
    decisions = req.audit_events.filter(action__in=["request_approved", "request_rejected"])
    assert decisions.count() == 1
    counts = services.status_counts()
    assert counts["pending"] == 0
    assert counts["complete"] + counts["rejected"] == 1
