"""Agent certificates for the certificate-login tests: issued through the queue (one agent
asks, another approves), backdated by the portal's own CA key, or from a stranger CA."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.contrib.auth import get_user_model

from requests_app import keys, pki, services
from requests_app.models import AgentCertificate, Certificate, CertificateAuthority
from tests.helpers import certs
from tests.helpers.csrs import make_csr


def make_agent(username: str, *, email: str | None = None):
    user = get_user_model().objects.create_user(
        username, email or f"{username}@example.test", "agent-pass-123", is_staff=True
    )
    user.groups.add(services.agents_group())
    return user


def issue_agent_certificate(owner, approver, *, key=None) -> tuple[Certificate, pki.PrivateKey]:
    """owner asks for an agent certificate with a CSR; approver approves (linked to owner)."""
    key = key or pki.generate_private_key("p256")
    req = services.request_agent_certificate(
        user=owner, csr=make_csr(cn=f"Agent {owner.get_username()}", key=key)
    )
    return services.approve_request(req, agent=approver), key


def backdated_agent_certificate(owner, *, key=None) -> tuple[Certificate, pki.PrivateKey]:
    """An agent certificate signed by the portal's default CA two days ago, valid one day, and
    linked to owner directly (the link service refuses expired certificates, as it should)."""
    key = key or pki.generate_private_key("p256")
    ca = CertificateAuthority.objects.default()
    now = pki.utcnow()
    # Built by hand: pki.certificate_builder never starts before the CA (made just now).
    builder = (
        x509.CertificateBuilder()
        .subject_name(pki.parse_dn(f"CN=Expired {owner.get_username()}"))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=2))
        .not_valid_after(now - dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(pki.key_usage_for(key.public_key(), encipherment=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([pki.EKU_OIDS["clientAuth"]]), critical=False)
        .add_extension(pki.authority_key_identifier(ca.certificate), critical=False)
    )
    signed = keys.backend_for(ca).sign_certificate(ca, builder)
    cert = Certificate.objects.create(
        ca=ca,
        serial=pki.serial_hex(signed.serial_number),
        subject=signed.subject.rfc4514_string(),
        not_before=signed.not_valid_before_utc,
        not_after=signed.not_valid_after_utc,
        profile="agent",
        pem=pki.to_pem(signed),
        fingerprint_sha256=pki.sha256_hex(signed),
    )
    AgentCertificate.objects.create(user=owner, certificate=cert)
    return cert, key


def stranger_certificate(*, key=None) -> tuple[x509.Certificate, pki.PrivateKey]:
    """A clientAuth certificate from a CA that is not this portal's (tests' own root)."""
    key = key or pki.generate_private_key("p256")
    cert = certs.issue(
        certs.root("p256"),
        key=key,
        subject=pki.parse_dn("CN=Agent From Elsewhere"),
        sans=[],
        extended_key_usages=["clientAuth"],
        key_encipherment=False,
    )
    return cert, key


def escaped(cert: x509.Certificate | Certificate) -> str:
    """The certificate as nginx's $ssl_client_escaped_cert passes it (URL-escaped PEM)."""
    pem = cert.pem if isinstance(cert, Certificate) else pki.to_pem(cert)
    return quote(pem, safe="")


def write_identity(directory: Path, name: str, cert, key) -> tuple[Path, Path]:
    """PEM files of a client identity (certificate, unencrypted key) for ssl/curl."""
    x = cert.x509 if isinstance(cert, Certificate) else cert
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_text(pki.to_pem(x))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
