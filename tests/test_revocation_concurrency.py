"""Concurrent revocations and CRL signing on PostgreSQL, where select_for_update really locks."""

from __future__ import annotations

import pytest
from django.db import connection

from requests_app import services
from requests_app.models import AuditEvent, Certificate
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


def test_eight_agents_revoking_at_once_revoke_once(ca, agent):
    """Eight threads revoking one certificate: one revocation, seven AlreadyRevoked."""
    cert = services.issue_certificate(
        profile="server", csr=make_csr(cn="race.example.test"), requester_email="o@example.test"
    )
    results, errors = race(
        lambda: services.revoke_certificate(cert.serial, reason="keyCompromise", actor=agent), 8
    )
    assert len(results) == 1
    assert len(errors) == 7
    assert all(isinstance(e, services.AlreadyRevoked) for e in errors), errors
    assert AuditEvent.objects.filter(action="certificate_revoked").count() == 1
    assert Certificate.objects.get().status == Certificate.Status.REVOKED


def test_crls_signed_at_once_get_consecutive_numbers(ca):
    """Eight CRLs signed at the same instant are numbered 1 to 8, none twice."""
    results, errors = race(lambda: services.publish_crl(ca)[0].number, 8)
    assert errors == []
    assert sorted(results) == list(range(1, 9))


def test_processes_finding_the_crl_out_of_date_at_once_sign_one(ca):
    """Eight fetches racing to replace a missing CRL sign exactly one."""
    results, errors = race(lambda: services.current_crl(ca).number, 8)
    assert errors == []
    assert set(results) == {1}
    assert ca.crls.count() == 1
