"""Certificates to renew in tests: issued through the services, with the key kept."""

from __future__ import annotations

from cryptography import x509

from requests_app import pki, services
from requests_app.models import Certificate
from tests.helpers.csrs import make_csr
from tests.helpers.mailbox import submit_confirmed


def dns(*names: str) -> list[x509.GeneralName]:
    return [x509.DNSName(n) for n in names]


def issued_server(agent, *, names=("www.example.test", "api.example.test"), key=None):
    """A server certificate for names (CN the first), approved by agent; and its key."""
    key = key or pki.generate_private_key("p256")
    req = services.submit_request(
        profile="server",
        csr=make_csr(cn=names[0], sans=dns(*names), key=key),
        requester_email="ops@example.test",
        requester_name="Web Operations",
    )
    return services.approve_request(req, agent=agent), key


def issued_user(agent, *, email="ada@example.test", cn="Ada Lovelace", key=None):
    """A personal certificate for email (its address confirmed), approved by agent; its key."""
    key = key or pki.generate_private_key("p256")
    req = submit_confirmed(
        profile="user", csr=make_csr(cn=cn, key=key), requester_email=email, requester_name=cn
    )
    return services.approve_request(req, agent=agent), key


def fresh(cert: Certificate) -> Certificate:
    return Certificate.objects.get(pk=cert.pk)
