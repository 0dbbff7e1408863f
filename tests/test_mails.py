"""Each mail a requester gets when their certificate is issued, read as they would read it:
for every profile and key type (RSA, P-256, a key the portal made) the message that
arrives at a real SMTP server, its subject, greeting, what it says the page offers, its
true dates, its attachments, and the page its link opens."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import re
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from django.utils import timezone

from delivery import services as delivery_services
from delivery.models import Delivery
from requests_app import profiles, services
from tests.conftest import SERVER_KEY_PASSPHRASE
from tests.helpers.csrs import make_csr
from tests.helpers.mailbox import confirmed

#: Set MAIL_DUMP_DIR to read the mails as they go out (the tests write each there).
DUMP = Path(os.environ["MAIL_DUMP_DIR"]) if os.environ.get("MAIL_DUMP_DIR") else None
KEY_TYPES = ["rsa2048", "p256", "server-made"]
PROFILES = ["server", "user", "agent"]
LINK = re.compile(r"http://testserver(/retrieve/[^\s<\"]+/)")
#: What each page offers, in the words both the page and the mail use.
IMPORT = "Import into this browser"
P12 = "Download certificate and key (.p12)"
FULL_CHAIN = "Download full chain (PEM)"


@pytest.fixture(autouse=True)
def _mail_settings(settings):
    settings.DELIVERY_NOTIFICATIONS = False  # the requester's issue mail alone
    settings.SERVER_KEY_TYPE = "p256"  # for speed; the mail does not depend on it
    settings.SERVER_KEY_PROFILES = ["user", "agent"]


def _approve(profile: str, key_type: str, agent, capture, *, cn: str | None = None):
    """Submit (and confirm) a request as a requester would, approve it, run the outbox."""
    if key_type == "server-made":
        req = services.submit_request_with_server_key(
            profile=profile,
            passphrase=SERVER_KEY_PASSPHRASE,
            requester_email="req@example.test",
            requester_name="Ops Team",
        )
    else:
        name = cn or ("www.example.test" if profile == "server" else "Ann Example")
        req = services.submit_request(
            profile=profile,
            csr=make_csr(cn=name, key_type=key_type),
            requester_email="req@example.test",
            requester_name="Ops Team",
        )
    req = confirmed(req)
    with capture(execute=True):
        cert = services.approve_request(req.public_id, agent=agent)
    req.refresh_from_db()
    return req, cert


def _to_requester(server) -> list[email.message.EmailMessage]:
    return [m for m in server.messages if m["To"] == "req@example.test"]


def _text(message) -> str:
    return message.get_body(("plain",)).get_content().replace("\r\n", "\n")


def _html(message) -> str:
    return message.get_body(("html",)).get_content().replace("\r\n", "\n")


def _raw_subject_lines(server, message) -> list[str]:
    """The Subject header as it travelled, folded lines and all."""
    raw = server.envelopes[server.messages.index(message)].original_content.decode()
    lines = raw.split("\r\n") if "\r\n" in raw else raw.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("Subject:"))
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith((" ", "\t")):
            break
        block.append(line)
    return block


def _expected_offer(profile: str, key_type: str) -> str:
    if key_type == "server-made":
        return "pkcs12"
    return "server" if profiles.get_profile(profile).takes_hostnames else "import"


CASES = [
    (profile, key_type)
    for profile in PROFILES
    for key_type in KEY_TYPES
    if not (profile == "server" and key_type == "server-made")  # no such enrollment
]


@pytest.mark.parametrize(("profile", "key_type"), CASES)
def test_the_issue_mail_says_what_its_page_offers(
    smtp_server, ca, agent, client, settings, django_capture_on_commit_callbacks, profile, key_type
):
    """One mail per requester on issue (server requesters too), whose words match the page."""
    req, cert = _approve(profile, key_type, agent, django_capture_on_commit_callbacks)
    mails = _to_requester(smtp_server)
    assert len(mails) == 1, [m["Subject"] for m in mails]  # one mail, never two
    (mail,) = mails
    text, html = _text(mail), _html(mail)
    offer = _expected_offer(profile, key_type)

    # The subject: short (nothing the requester typed), never folded after "Subject:".
    assert mail["Subject"] == f"Your certificate is ready: request {req.display_id}"
    header = _raw_subject_lines(smtp_server, mail)
    assert header[0] != "Subject:" and len(header) == 1

    # The greeting, then a capitalised sentence; nothing the requester typed as their name.
    assert text.startswith(f"Hello,\n\nYour certificate request {req.display_id} has been")
    assert "<p>Hello,</p>\n<p>Your certificate request" in html
    assert "Ops Team" not in text.split("\n", 1)[0]

    # The status link as pages show the ID, with hyphens, and it opens.
    status_url = f"http://testserver/requests/{req.display_id}/"
    assert status_url in text and status_url in html
    assert client.get(status_url.removeprefix("http://testserver")).status_code == 200

    # The link opens the certificate's page, which offers exactly what the mail says.
    (link,) = set(LINK.findall(text))
    assert link in html
    page = client.get(link, follow=True)
    assert page.status_code == 200
    content = page.content.decode()
    assert cert.serial_colons in content.replace("<wbr>", "")
    if offer == "server":
        assert "has no Import" in text and IMPORT not in text and IMPORT not in content
        assert f"{cert.serial_filename}-fullchain.pem" in text and FULL_CHAIN in content
        for fmt in ("pem", "chain", "der", "p7b"):
            assert f"/certificates/{cert.serial_filename}/download/{fmt}/" in content or fmt
        assert "nginx (ssl_certificate)" in text and "SSLCertificateChainFile" in text
        assert ".p12" not in text and P12 not in content
    elif offer == "import":
        assert IMPORT in text and IMPORT in content
        assert "Download: the certificate as .pem, .cer or .p7b" in text
        assert "has no Import" not in text and P12 not in content
    else:
        assert P12 in content and IMPORT not in content and IMPORT not in text
        assert "download one .p12 file holding your key and certificate" in text
        assert "passphrase" in text
        # The true dates, from the settings: the key goes before the link does.
        deadline = cert.created + dt.timedelta(days=settings.SERVER_KEY_RETENTION_DAYS)
        link_end = timezone.now() + dt.timedelta(days=settings.RETRIEVAL_LINK_MAX_AGE_DAYS)
        assert f"Download it before\n{deadline:%Y-%m-%d %H:%M} UTC" in text
        assert f"({settings.SERVER_KEY_RETENTION_DAYS} days after" in text
        assert f"The link works until {link_end:%Y-%m-%d}" in text
        assert f"from {deadline:%Y-%m-%d} on it shows\nonly the certificate" in text
        # The page the link opens has the request ID filled in: only the passphrase is asked.
        assert f'value="{req.public_id}"' in content or req.display_id in content
    assert not list(mail.iter_attachments())
    if DUMP is not None:
        DUMP.joinpath(f"{profile}-{key_type}.txt").write_text(f"{mail['Subject']}\n\n{text}")


def x509_cn(cert) -> str:
    return cert.x509.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value


def test_the_link_dates_follow_the_settings(
    smtp_server, ca, agent, settings, django_capture_on_commit_callbacks
):
    """With the link shorter-lived than the key, the mail says so and no "shows only" line."""
    settings.RETRIEVAL_LINK_MAX_AGE_DAYS = 7
    settings.SERVER_KEY_RETENTION_DAYS = 10
    req, cert = _approve("user", "server-made", agent, django_capture_on_commit_callbacks)
    (mail,) = _to_requester(smtp_server)
    text = _text(mail)
    link_end = timezone.now() + dt.timedelta(days=7)
    assert f"The link works until {link_end:%Y-%m-%d} (7 days)." in text
    assert "(10 days after\nissue)" in text
    assert "shows\nonly the certificate" not in text


@pytest.mark.parametrize(("profile", "key_type"), CASES)
def test_the_certificate_mail_attaches_what_it_names(
    smtp_server,
    ca,
    agent,
    tmp_path,
    settings,
    django_capture_on_commit_callbacks,
    profile,
    key_type,
):
    """Email certificate: the attachments the text lists, with their types; a server
    certificate's full chain verifies with openssl; a server-made key is not attached."""
    req, cert = _approve(profile, key_type, agent, django_capture_on_commit_callbacks)
    smtp_server.messages.clear()
    smtp_server.envelopes.clear()
    with django_capture_on_commit_callbacks(execute=True):
        delivery_services.send_certificate(cert, method="certificate", actor=agent)
    (mail,) = _to_requester(smtp_server)
    assert mail["Subject"] == f"Your certificate for request {req.display_id} is attached"
    assert _raw_subject_lines(smtp_server, mail)[0] != "Subject:"
    text = _text(mail)
    assert text.startswith(f"Hello,\n\nYour certificate request {req.display_id} has been")
    files = {
        part.get_filename(): (part.get_content_type(), part.get_content())
        for part in mail.iter_attachments()
    }
    offer = _expected_offer(profile, key_type)
    expected = {
        f"{cert.serial_filename}.pem": "application/x-pem-file",
        f"{cert.serial_filename}-chain.p7b": "application/pkcs7-mime",
    }
    if offer == "server":
        expected[f"{cert.serial_filename}-fullchain.pem"] = "application/x-pem-file"
    assert {name: kind for name, (kind, _) in files.items()} == expected
    for name in expected:
        assert name in text  # every attachment is named in the text, and only those
    if offer == "server":
        assert (
            f"ssl_certificate to the full chain ({cert.serial_filename}-fullchain.pem, attached)"
            in text
        )
        full = files[f"{cert.serial_filename}-fullchain.pem"][1]
        full = full if isinstance(full, bytes) else full.encode()
        chain = x509.load_pem_x509_certificates(full)
        assert [c.serial_number for c in chain] == [
            int(cert.serial, 16),
            cert.ca.certificate.serial_number,
        ]
        (tmp_path / "fullchain.pem").write_bytes(full)
        (tmp_path / "ca.pem").write_text(cert.ca.certificate_pem)
        result = subprocess.run(
            [
                "openssl",
                "verify",
                "-CAfile",
                tmp_path / "ca.pem",
                "-untrusted",
                tmp_path / "fullchain.pem",
                tmp_path / "fullchain.pem",
            ],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0 and ": OK" in result.stdout, result.stderr
    else:
        assert "fullchain" not in text
    if offer == "pkcs12":
        assert "Your private key is not in this mail" in text
        assert req.display_id in text and ".p12" in text
        assert not any(name.endswith(".p12") for name in files)


@pytest.mark.parametrize(
    ("policy", "kinds"),
    [
        (None, ["link"]),  # the default: nothing for servers, so the ready mail
        ({"server": ["email_link"]}, ["link"]),
        ({"server": ["email_certificate"]}, ["certificate"]),
        ({"server": ["email_certificate", "email_link"]}, ["certificate", "link"]),
        ({"server": ["webhook"]}, ["certificate", "link"]),  # the webhook, then the mail
    ],
)
def test_one_ready_mail_whatever_the_policy(
    smtp_server, ca, agent, settings, django_capture_on_commit_callbacks, policy, kinds
):
    """The ready mail goes only where the policy mails the requester nothing."""
    settings.DELIVERY_POLICY = policy
    settings.DELIVERY_BACKENDS = settings.DELIVERY_BACKENDS | {
        "webhook": {
            "BACKEND": "delivery.backends.webhook.Webhook",
            "OPTIONS": {"url": "http://127.0.0.1:9/", "secret": "s" * 16, "timeout": 1},
        }
    }
    req, cert = _approve("server", "p256", agent, django_capture_on_commit_callbacks)
    deliveries = Delivery.objects.filter(certificate=cert).order_by("pk")
    assert [d.kind for d in deliveries] == kinds
    mailed = [d for d in deliveries if d.recipient == "req@example.test"]
    assert len(_to_requester(smtp_server)) == len(mailed)


def test_no_ready_mail_when_turned_off(
    smtp_server, ca, agent, client, settings, django_capture_on_commit_callbacks
):
    """DELIVERY_READY_MAIL off: a server requester gets nothing, and the status page
    does not promise a mail."""
    settings.DELIVERY_READY_MAIL = False
    req = services.submit_request(
        profile="server", csr=make_csr(cn="www.example.test"), requester_email="req@example.test"
    )
    page = client.get(f"/requests/{req.display_id}/").content.decode()
    assert "Come back to this page later." in page and "we mail a link" not in page
    with django_capture_on_commit_callbacks(execute=True):
        services.approve_request(req.public_id, agent=agent)
    assert _to_requester(smtp_server) == []


def test_the_status_page_promises_the_mail_that_comes(
    smtp_server, ca, agent, client, django_capture_on_commit_callbacks
):
    """A pending server request's page says a link will be mailed; on approval it is."""
    req = services.submit_request(
        profile="server", csr=make_csr(cn="www.example.test"), requester_email="req@example.test"
    )
    page = client.get(f"/requests/{req.display_id}/").content.decode()
    assert "When the certificate is issued, we mail a link to it to the address you gave" in page
    with django_capture_on_commit_callbacks(execute=True):
        services.approve_request(req.public_id, agent=agent)
    assert len(_to_requester(smtp_server)) == 1


def test_an_acme_order_gets_no_ready_mail(ca, agent, settings):
    """ACME clients fetch their certificates themselves: no ready mail for that channel."""
    req = services.submit_request(
        profile="server", csr=make_csr(cn="www.example.test"), requester_email="req@example.test"
    )
    req.channel = "acme"
    req.save(update_fields=["channel"])
    cert = services.approve_request(req.public_id, agent=agent)
    assert not Delivery.objects.filter(certificate=cert).exists()


LONG_CN = "a-very-long-host-name-for-a-subject-line.internal.example.test"


def test_a_long_name_is_cut_with_an_ellipsis(ca, agent):
    """The name a subject line gives a certificate (expiry reminders) is cut at 30
    characters with an ellipsis; a short one stays whole."""
    from delivery.backends.email import short_name

    long_req = services.submit_request(
        profile="server", csr=make_csr(cn=LONG_CN), requester_email="req@example.test"
    )
    assert short_name(services.approve_request(long_req, agent=agent)) == (
        f"{LONG_CN[:29]}\N{HORIZONTAL ELLIPSIS}"
    )
    short_req = services.submit_request(
        profile="server", csr=make_csr(cn="www.example.test"), requester_email="req@example.test"
    )
    assert short_name(services.approve_request(short_req, agent=agent)) == "www.example.test"


def test_every_subject_fits_on_its_line_or_folds_at_a_space(
    smtp_server, ca, agent, settings, django_capture_on_commit_callbacks
):
    """Each requester mail about a certificate with a long name (ready, attached,
    revoked): none has an empty first Subject line or a line over 78 characters."""
    settings.DELIVERY_NOTIFICATIONS = True
    req, cert = _approve("server", "p256", agent, django_capture_on_commit_callbacks, cn=LONG_CN)
    with django_capture_on_commit_callbacks(execute=True):
        delivery_services.send_certificate(cert, method="certificate", actor=agent)
        services.revoke_certificate(cert, reason="superseded", actor=agent)
    mails = _to_requester(smtp_server)
    assert len(mails) == 3  # ready, attached, revoked
    assert LONG_CN in _text(mails[0])  # whole in the body
    for mail in mails:
        header = _raw_subject_lines(smtp_server, mail)
        assert header[0] != "Subject:", header
        assert all(len(line) <= 78 for line in header), header


@pytest.mark.parametrize(
    "subject",
    [
        # 73 characters: Python's policy would move all of it to the line after "Subject:".
        "Your certificate 535ff2a0c3b1d9e8f7a6b5c4d3e2f1a0b9c8e13d1 has been issued",
        "Your certificate 05:35:F2:A0:C3:B1:D9:E8:F7:A6:B5:C4:D3:E2:F1:A0:B9:C8:E1:3D "
        "was put on hold",
    ],
)
def test_a_long_subject_folds_at_a_space(subject):
    """A subject too long for its line folds between words, and reads back unchanged."""
    from delivery.backends.email import PortalEmailMessage

    message = PortalEmailMessage(subject, "x", "a@example.test", ["b@example.test"])
    raw = message.message(policy=email.policy.SMTP).as_bytes().decode()
    lines = raw.split("\r\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("Subject:"))
    assert lines[start].startswith("Subject: Your certificate")
    assert all(len(line) <= 78 for line in lines[start : start + 3])
    parsed = email.message_from_string(raw, policy=email.policy.default)
    assert " ".join(str(parsed["Subject"]).split()) == subject
