"""One token, many signers: threads of one process share its pooled session, and two
processes approving the same queue at once on PostgreSQL issue exactly one certificate
per request, all signed in the token."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from requests_app import keys, pki, services
from requests_app.models import Certificate, CertificateRequest
from tests.helpers.concurrency import race
from tests.helpers.csrs import make_csr
from tests.helpers.servers import portal_env
from tests.helpers.softhsm import init_token, needs_softhsm, use_token
from tests.test_pkcs11 import init_token_ca

ROOT = Path(__file__).resolve().parent.parent

pytestmark = needs_softhsm


@pytest.fixture
def token(tmp_path, monkeypatch, settings):
    made = init_token(tmp_path / "softhsm")
    use_token(made, monkeypatch, settings)
    return made


@pytest.mark.django_db
def test_threads_share_the_pooled_session(token):
    """Sixteen threads signing at once through one backend all get valid signatures (the
    session is used by one thread at a time) and the token was logged in once."""
    ca = init_token_ca("p256")
    backend = keys.backend_for(ca)
    builders = [
        pki.ocsp_responder_builder(
            ca_cert=ca.certificate,
            public_key=pki.generate_private_key("p256").public_key(),
            validity_days=1,
        )
        for _ in range(16)
    ]
    queue = list(builders)
    results, errors = race(lambda: backend.sign_certificate(ca, queue.pop()), len(builders))
    assert errors == []
    assert len(results) == 16
    assert all(pki.verify_signed_by(cert, ca.certificate) for cert in results)
    assert len(backend._sessions) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="two processes need a shared server database; CI runs this on PostgreSQL",
)
def test_two_processes_approve_the_same_queue_with_one_token(token, settings):
    """Two `approve_request --all-pending` at once, each logged in to the same token: every
    request gets exactly one certificate, signed by the token's key."""
    ca = init_token_ca("p256")
    requests = [
        services.submit_request(
            profile="server",
            csr=make_csr(cn=f"host{i}.example.test"),
            requester_email="ops@example.test",
        )
        for i in range(20)
    ]
    env = portal_env(settings, **token.env)
    command = [sys.executable, "manage.py", "approve_request", "--all-pending"]
    processes = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()[-2000:]
        assert token.pin.encode() not in out + err
    for req in requests:
        req.refresh_from_db()
        assert req.status == CertificateRequest.Status.COMPLETE
        assert req.certificate is not None
    certificates = Certificate.objects.filter(ca=ca)
    assert certificates.count() == len(requests)  # none signed twice, none left over
    assert all(pki.verify_signed_by(cert.x509, ca.certificate) for cert in certificates)
