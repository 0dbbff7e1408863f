"""Proof of the mailbox: a personal request reaches the agents only once its requester has
shown, with a mailed single-use code, that the address is theirs; and the portal's mail
cannot be turned against a stranger's mailbox."""

from __future__ import annotations

import datetime as dt
import io
import re
import xml.etree.ElementTree as ET

import pytest
from cryptography import x509
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from delivery import services as delivery_services
from delivery.models import Delivery
from requests_app import services, signals, throttle
from requests_app.models import AuditEvent, CertificateRequest, EmailConfirmation
from tests.helpers.csrs import make_csr
from tests.helpers.mailbox import (
    LINK,
    confirmation_mails,
    confirmed,
    mailed_code,
    mailed_link,
    submit_confirmed,
)
from tests.helpers.mfa import login_verified

Status = CertificateRequest.Status
Kind = Delivery.Kind

pytestmark = pytest.mark.usefixtures("empty_cache")


def _submit(email="ann@example.test", **kwargs) -> CertificateRequest:
    return services.submit_request(
        **{"profile": "user", "csr": make_csr(cn="Ann Example"), "requester_email": email} | kwargs
    )


def _queue_ids(client, **params) -> set[int]:
    response = client.get(reverse("agent:request_list"), params)
    assert response.status_code == 200
    return {r.pk for r in response.context["requests"]}


def _path(url: str) -> str:
    return url.removeprefix("http://testserver")


def _snapshot(req: CertificateRequest) -> tuple:
    req = CertificateRequest.objects.get(pk=req.pk)
    return (
        req.status,
        req.email_confirmed_at,
        req.email_confirmed_by,
        EmailConfirmation.objects.filter(request=req, used_at__isnull=False).count(),
        AuditEvent.objects.filter(request=req, action="email_confirmed").count(),
        services.status_counts(),
    )


# --- the service --------------------------------------------------------------------


def test_a_user_request_awaits_confirmation_and_tells_only_delivery(ca):
    """A user request is stored awaiting confirmation, counted apart, and announces nothing
    to agents: its signal asks for the confirmation mail instead."""
    sent = []

    def record(signal_name):
        return lambda sender, **kwargs: sent.append(signal_name)

    submitted, confirmation = record("request_submitted"), record("email_confirmation_requested")
    signals.request_submitted.connect(submitted)
    signals.email_confirmation_requested.connect(confirmation)
    try:
        req = _submit()
    finally:
        signals.request_submitted.disconnect(submitted)
        signals.email_confirmation_requested.disconnect(confirmation)
    assert req.status == Status.AWAITING_EMAIL
    assert sent == ["email_confirmation_requested"]
    counts = services.status_counts()
    assert (counts["awaiting_email"], counts["pending"]) == (1, 0)
    event = AuditEvent.objects.get(request=req, action="request_submitted")
    assert event.details["email_confirmation"] == "awaiting"
    (delivery,) = Delivery.objects.filter(request=req)
    assert (delivery.kind, delivery.recipient) == (Kind.EMAIL_CONFIRMATION, "ann@example.test")


def test_server_requests_need_no_confirmation(ca):
    """The server profile names no mailbox: its requests are pending at once."""
    req = services.submit_request(
        profile="server", csr=make_csr(cn="www.example.test"), requester_email="o@example.test"
    )
    assert req.status == Status.PENDING
    assert not Delivery.objects.filter(request=req, kind=Kind.EMAIL_CONFIRMATION).exists()


def test_the_code_exists_only_in_the_mail(ca, mailoutbox, django_capture_on_commit_callbacks):
    """The database keeps a hash bound to the request: the mailed code is in no row."""
    with django_capture_on_commit_callbacks(execute=True):
        req = _submit()
    code = mailed_code(mailoutbox, "ann@example.test").replace("-", "")
    row = EmailConfirmation.objects.get(request=req)
    assert code not in row.code_hash and len(row.code_hash) == 64
    assert row.expires_at == req.confirm_email_deadline()
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - our own tables
            assert code not in repr(cursor.fetchall()), table
    assert len(code) == 16


def test_confirm_moves_to_pending_consumes_the_code_and_announces(
    ca, agent, mailoutbox, django_capture_on_commit_callbacks
):
    """The right code queues the request, records when and how, and only now mails agents."""
    with django_capture_on_commit_callbacks(execute=True):
        req = _submit()
    assert not [m for m in mailoutbox if m.to == [agent.email]]
    code = mailed_code(mailoutbox, "ann@example.test")
    with django_capture_on_commit_callbacks(execute=True):
        req = services.confirm_email(req.public_id, code.lower(), via="code", ip="192.0.2.1")
    assert req.status == Status.PENDING
    assert req.email_confirmed_by == "the requester (mailed code)"
    assert req.email_confirmed_at is not None
    assert EmailConfirmation.objects.get(request=req).used_at == req.email_confirmed_at
    counts = services.status_counts()
    assert (counts["awaiting_email"], counts["pending"]) == (0, 1)
    event = AuditEvent.objects.get(request=req, action="email_confirmed")
    assert (event.actor_label, event.ip, event.details["via"]) == ("requester", "192.0.2.1", "code")
    waiting = [m for m in mailoutbox if m.to == [agent.email]]
    assert len(waiting) == 1 and req.display_id in waiting[0].body
    assert "confirmed" in waiting[0].body
    cert = services.approve_request(req, agent=agent)
    assert cert.sans == ["email:ann@example.test"]


@pytest.mark.parametrize("how", ["wrong", "other_request", "short", "empty"])
def test_a_wrong_code_changes_nothing(ca, how):
    """A code that is not this request's is refused as WrongCode and writes nothing."""
    req = _submit()
    other = _submit(email="bob@example.test")
    code = services.issue_email_confirmation_code(req)
    other_code = services.issue_email_confirmation_code(other)
    typed = {
        "wrong": code[:-1] + ("0" if code[-1] != "0" else "1"),
        "other_request": other_code,
        "short": code[:8],
        "empty": "",
    }[how]
    before = _snapshot(req)
    with pytest.raises(services.WrongCode):
        services.confirm_email(req.public_id, typed)
    assert _snapshot(req) == before


def test_a_used_code_is_refused_and_changes_nothing(ca):
    """A code works once; the second use says it was used, and changes nothing."""
    req = _submit()
    code = services.issue_email_confirmation_code(req)
    services.confirm_email(req, code)
    before = _snapshot(req)
    with pytest.raises(services.InvalidTransition, match="used already"):
        services.confirm_email(req, code)
    assert _snapshot(req) == before


def test_an_expired_code_is_refused_even_before_the_cleanup(ca, settings):
    """Past EMAIL_CONFIRMATION_DAYS the code no longer confirms, cleanup or not."""
    req = _submit()
    code = services.issue_email_confirmation_code(req)
    CertificateRequest.objects.filter(pk=req.pk).update(
        submitted_at=timezone.now() - dt.timedelta(days=settings.EMAIL_CONFIRMATION_DAYS, hours=1)
    )
    EmailConfirmation.objects.filter(request=req).update(expires_at=timezone.now())
    before = _snapshot(req)
    with pytest.raises(services.InvalidTransition, match="expired"):
        services.confirm_email(req, code)
    assert _snapshot(req) == before


def test_a_retried_mail_carries_a_new_code_and_either_works(ca):
    """Each mail gets a fresh code (nothing to re-read from the database); any unused one
    confirms, and then all are spent."""
    req = _submit()
    first = services.issue_email_confirmation_code(req)
    second = services.issue_email_confirmation_code(req)
    assert first != second
    services.confirm_email(req, first)
    with pytest.raises(services.InvalidTransition):
        services.confirm_email(req, second)


def test_no_code_for_a_request_that_waits_for_none(ca, pending_request):
    """A pending (or decided) request gets no code: a late mail retry sends nothing."""
    with pytest.raises(services.InvalidTransition, match="needs no confirmation"):
        services.issue_email_confirmation_code(pending_request)


def test_a_late_confirmation_mail_is_not_sent(ca, mailoutbox, django_capture_on_commit_callbacks):
    """A confirmation delivery that runs after the request was confirmed fails for good,
    with the reason, and mails nothing."""
    req = _submit()  # its delivery is queued, not yet sent (no on-commit here)
    confirmed(req)
    delivery = Delivery.objects.get(request=req, kind=Kind.EMAIL_CONFIRMATION)
    assert delivery_services.deliver(delivery.pk) == Delivery.Status.FAILED
    delivery.refresh_from_db()
    assert "no confirmation to send" in delivery.last_error
    assert confirmation_mails(mailoutbox, "ann@example.test") == []


def test_agents_cannot_approve_before_confirmation(ca, agent):
    """An awaiting request cannot be approved, one by one or in bulk."""
    req = _submit()
    with pytest.raises(services.InvalidTransition, match="awaiting email confirmation"):
        services.approve_request(req, agent=agent)
    result = services.approve_all_pending(agent=agent)
    assert result.approved == [] and result.refused == []
    assert CertificateRequest.objects.get(pk=req.pk).status == Status.AWAITING_EMAIL


def test_a_pending_user_request_never_confirmed_is_not_signed(ca, agent):
    """A user request that is pending without a confirmation (from before the feature, or
    written around the services) is refused at approval: the address was never proved."""
    req = _submit()
    CertificateRequest.objects.filter(pk=req.pk).update(status=Status.PENDING)
    with pytest.raises(services.InvalidTransition, match="never confirmed"):
        services.approve_request(req.public_id, agent=agent)
    result = services.approve_all_pending(agent=agent)
    assert result.approved == [] and "never confirmed" in result.refused[0][1]


def test_an_auto_approve_profile_issues_once_confirmed(ca, settings):
    """With auto_approve, the certificate is issued at confirmation, not at submission."""
    settings.CA_PROFILES = {"user": {"auto_approve": True}}
    req, cert = services.submit_enrollment(
        profile="user", csr=make_csr(cn="Ann"), requester_email="ann@example.test"
    )
    assert cert is None and req.status == Status.AWAITING_EMAIL
    req = confirmed(req)
    req.refresh_from_db()
    assert req.status == Status.COMPLETE
    assert req.certificate.sans == ["email:ann@example.test"]


def test_a_profile_can_turn_confirmation_off(ca, settings):
    """confirm_email is a profile field: CA_PROFILES can turn it off (or on for another)."""
    settings.CA_PROFILES = {"user": {"confirm_email": False}, "server": {"confirm_email": True}}
    assert _submit().status == Status.PENDING
    server = services.submit_request(
        profile="server", csr=make_csr(cn="www.example.test"), requester_email="o@example.test"
    )
    assert server.status == Status.AWAITING_EMAIL


def test_the_agent_profile_confirms_too(ca):
    """An agent login certificate names the address as well: it is proved the same way."""
    req = services.submit_request(
        profile="agent", csr=make_csr(cn="Agent Ann"), requester_email="ann@example.test"
    )
    assert req.status == Status.AWAITING_EMAIL


# --- expiry -------------------------------------------------------------------------


def test_expiry_cancels_unconfirmed_requests_audited_and_mails_nobody(
    ca, settings, mailoutbox, django_capture_on_commit_callbacks
):
    """The command cancels what was not confirmed in time, with an audit row, mailing
    nobody; newer ones stay; a late code then says it has expired."""
    settings.EMAIL_CONFIRMATION_DAYS = 3
    old, fresh = _submit(), _submit(email="bob@example.test")
    code = services.issue_email_confirmation_code(old)
    CertificateRequest.objects.filter(pk=old.pk).update(
        submitted_at=timezone.now() - dt.timedelta(days=3, minutes=1)
    )
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("expire_unconfirmed_requests", stdout=out)
    assert "Canceled 1 unconfirmed request (older than 3 days)." in out.getvalue()
    old.refresh_from_db()
    assert old.status == Status.CANCELED
    assert "not confirmed within 3 days" in old.agent_note
    event = AuditEvent.objects.get(request=old, action="request_expired")
    assert (event.actor_label, event.details["days"]) == ("system", 3)
    assert CertificateRequest.objects.get(pk=fresh.pk).status == Status.AWAITING_EMAIL
    counts = services.status_counts()
    assert (counts["awaiting_email"], counts["canceled"]) == (1, 1)
    assert mailoutbox == []
    with pytest.raises(services.InvalidTransition, match="expired"):
        services.confirm_email(old, code)
    assert services.expire_unconfirmed_requests() == 0  # a second run finds nothing


def test_an_expired_request_with_a_portal_made_key_loses_the_key(ca, settings):
    """The sealed key of an expired request is erased by the key cleanup, like a canceled one."""
    settings.SERVER_KEY_TYPE = "p256"
    req = services.submit_request_with_server_key(
        profile="user",
        passphrase="correct horse battery staple",
        requester_email="ada@example.test",
        requester_name="Ada",
    )
    later = timezone.now() + dt.timedelta(days=settings.EMAIL_CONFIRMATION_DAYS, minutes=1)
    assert services.expire_unconfirmed_requests(now=later) == 1
    assert services.erase_expired_server_keys() == 1
    assert not CertificateRequest.objects.get(pk=req.pk).encrypted_private_key


# --- invisible to agents until confirmed ----------------------------------------------


def test_awaiting_requests_are_invisible_in_every_agent_list(client, ca, agent):
    """Queue, its counts, the admin (all and pending) and list_requests leave an awaiting
    request out; asked for by its status, it is there."""
    waiting = _submit()
    server = services.submit_request(
        profile="server", csr=make_csr(cn="www.example.test"), requester_email="o@example.test"
    )
    login_verified(client, agent)
    assert _queue_ids(client) == {server.pk}
    assert _queue_ids(client, status="pending") == {server.pk}
    assert _queue_ids(client, q="ann@example.test") == set()
    assert _queue_ids(client, status="awaiting_email") == {waiting.pk}
    html = client.get(reverse("agent:request_list")).content.decode()
    assert "Awaiting email confirmation (" not in html
    assert "Pending (1)" in html

    changelist = reverse("admin:requests_app_certificaterequest_changelist")
    for params in ({}, {"status__exact": "pending"}):
        response = client.get(changelist, params)
        assert [r.pk for r in response.context["cl"].result_list] == [server.pk]
        assert response.context["cl"].result_count == 1
    response = client.get(changelist, {"status__exact": "awaiting_email"})
    assert [r.pk for r in response.context["cl"].result_list] == [waiting.pk]

    out = io.StringIO()
    call_command("list_requests", stdout=out)
    assert server.display_id in out.getvalue() and waiting.display_id not in out.getvalue()
    out = io.StringIO()
    call_command("list_requests", "--status", "awaiting_email", stdout=out)
    assert waiting.display_id in out.getvalue()


def test_agents_see_that_and_when_the_address_was_confirmed(client, ca, agent):
    """Queue row, request page and admin show the confirmation and its time."""
    req = submit_confirmed(
        profile="user", csr=make_csr(cn="Ann"), requester_email="ann@example.test"
    )
    when = req.email_confirmed_at.strftime("%Y-%m-%d %H:%M")
    login_verified(client, agent)
    queue = client.get(reverse("agent:request_list")).content.decode()
    assert 'class="email-confirmed"' in queue and when in queue
    detail = client.get(req.get_agent_url()).content.decode()
    assert f"confirmed {when}" in detail and "the requester (mailed code)" in detail
    admin_page = client.get(
        reverse("admin:requests_app_certificaterequest_change", args=[req.pk])
    ).content.decode()
    assert "the requester (mailed code)" in admin_page
    changelist = client.get(reverse("admin:requests_app_certificaterequest_changelist"))
    assert f"{when} by the requester (mailed code)" in changelist.content.decode()


# --- the pages ----------------------------------------------------------------------


def test_a_mail_scanner_opening_the_link_confirms_nothing(
    client, ca, mailoutbox, django_capture_on_commit_callbacks
):
    """GET on the mailed link only shows a Confirm button: a link scanner at the victim's
    mail provider cannot confirm for them."""
    with django_capture_on_commit_callbacks(execute=True):
        req = _submit()
    link = _path(mailed_link(mailoutbox, "ann@example.test"))
    before = _snapshot(req)
    for _ in range(3):
        page = client.get(link)
        assert page.status_code == 200
        assert "Confirm" in page.content.decode()
    assert _snapshot(req) == before


def test_confirm_by_typing_the_code(client, ca, mailoutbox, django_capture_on_commit_callbacks):
    """The code page takes the code as mailed, in any case; the status page then says so."""
    with django_capture_on_commit_callbacks(execute=True):
        req = _submit()
    status_page = client.get(req.get_absolute_url()).content.decode()
    assert reverse("confirm_email", args=[req.public_id]) in status_page
    code = mailed_code(mailoutbox, "ann@example.test")
    response = client.post(
        reverse("confirm_email", args=[req.public_id]), {"code": f" {code.lower()} "}
    )
    assert response.status_code == 302 and response["Location"] == req.get_absolute_url()
    req.refresh_from_db()
    assert (req.status, req.email_confirmed_by) == (Status.PENDING, "the requester (mailed code)")
    page = client.get(response["Location"]).content.decode()
    assert "your email address is confirmed" in page


@pytest.mark.parametrize("path", ["typed", "link"])
def test_wrong_used_and_expired_codes_get_a_clear_page(
    client, ca, settings, mailoutbox, django_capture_on_commit_callbacks, path
):
    """Each refusal is a 4xx page that says why, and changes nothing."""
    with django_capture_on_commit_callbacks(execute=True):
        req = _submit()
    code = mailed_code(mailoutbox, "ann@example.test").replace("-", "")
    wrong = "0" * 16 if code != "0" * 16 else "1" * 16

    def post(value):
        if path == "link":
            return client.post(reverse("confirm_email_link", args=[req.public_id, value]))
        return client.post(reverse("confirm_email", args=[req.public_id]), {"code": value})

    before = _snapshot(req)
    response = post(wrong)
    assert response.status_code == 400
    assert "not the one we mailed" in response.content.decode()
    assert _snapshot(req) == before

    later = timezone.now() - dt.timedelta(days=settings.EMAIL_CONFIRMATION_DAYS, minutes=1)
    CertificateRequest.objects.filter(pk=req.pk).update(submitted_at=later)
    response = post(code)
    assert response.status_code == 400 and "has expired" in response.content.decode()
    assert _snapshot(req) == before
    CertificateRequest.objects.filter(pk=req.pk).update(submitted_at=timezone.now())

    assert post(code).status_code == 302
    after = _snapshot(req)
    response = post(code)
    assert response.status_code == 400 and "used already" in response.content.decode()
    assert _snapshot(req) == after


def test_guessing_is_rate_limited(
    client, ca, settings, mailoutbox, django_capture_on_commit_callbacks
):
    """After EMAIL_CONFIRMATION_RATE_LIMIT wrong codes even the right one waits, per
    request and per address."""
    settings.EMAIL_CONFIRMATION_RATE_LIMIT = "3/3600"
    with django_capture_on_commit_callbacks(execute=True):
        req = _submit()
        other = _submit(email="bob@example.test")
    url = reverse("confirm_email", args=[req.public_id])
    for _ in range(3):
        assert client.post(url, {"code": "0000-0000-0000-0000"}).status_code == 400
    right = mailed_code(mailoutbox, "ann@example.test")
    response = client.post(url, {"code": right})
    assert response.status_code == 429
    assert "Too many wrong codes" in response.content.decode()
    assert CertificateRequest.objects.get(pk=req.pk).status == Status.AWAITING_EMAIL
    # The same address is held back on another request too; another address is not.
    other_url = reverse("confirm_email", args=[other.public_id])
    other_code = mailed_code(mailoutbox, "bob@example.test")
    assert client.post(other_url, {"code": other_code}).status_code == 429
    elsewhere = client.post(other_url, {"code": other_code}, REMOTE_ADDR="198.51.100.9")
    assert elsewhere.status_code == 302


def test_an_unknown_request_is_a_404(client, db):
    """A confirmation page for no request says so, nothing more."""
    response = client.get(reverse("confirm_email_link", args=["A" * 20, "B" * 16]))
    assert response.status_code == 404


# --- every surface ------------------------------------------------------------------


def test_web_enrollment_tells_the_requester_to_confirm(
    client, ca, mailoutbox, django_capture_on_commit_callbacks
):
    """The enrollment page stores an awaiting request and says where the mail went."""
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("enroll", args=["user"]),
            {"csr": make_csr(cn="Ada"), "requester_email": "ada@example.test"},
            follow=True,
        )
    req = CertificateRequest.objects.get()
    assert req.status == Status.AWAITING_EMAIL
    html = response.content.decode()
    assert "We sent a message to ada@example.test" in html
    assert "Confirm your email address" in html
    assert len(confirmation_mails(mailoutbox, "ada@example.test")) == 1


def test_server_key_enrollment_awaits_confirmation(
    client, ca, settings, mailoutbox, django_capture_on_commit_callbacks
):
    """The form where the portal makes the key awaits the confirmation too."""
    settings.SERVER_KEY_TYPE = "p256"
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("enroll_server_key", args=["user"]),
            {
                "requester_name": "Ada Lovelace",
                "requester_email": "ada@example.test",
                "passphrase": "correct horse battery staple",
                "passphrase_confirm": "correct horse battery staple",
            },
        )
    req = CertificateRequest.objects.get()
    assert req.status == Status.AWAITING_EMAIL and req.encrypted_private_key
    assert len(confirmation_mails(mailoutbox, "ada@example.test")) == 1


def test_dogtag_user_enrollment_awaits_and_stays_pending_to_certmonger(
    client, ca, mailoutbox, django_capture_on_commit_callbacks
):
    """profileSubmit for caUserCert defers (status 2) and checkRequest keeps answering
    "pending" while the address waits; after confirmation it is an ordinary pending one."""
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/ca/ee/ca/profileSubmit",
            {
                "profileId": "caUserCert",
                "cert_request_type": "pkcs10",
                "cert_request": make_csr(cn="Ann"),
                "requestor_email": "ann@example.test",
                "xml": "true",
            },
        )
    root = ET.fromstring(response.content)  # noqa: S314 - our own reply
    assert root.findtext("Status") == "2"
    req = CertificateRequest.objects.get()
    assert req.status == Status.AWAITING_EMAIL and req.channel == "dogtag"
    check = client.get("/ca/ee/ca/checkRequest", {"requestId": req.public_id, "xml": "true"})
    assert ET.fromstring(check.content).findtext("header/status") == "pending"  # noqa: S314
    assert len(confirmation_mails(mailoutbox, "ann@example.test")) == 1


def test_dogtag_renewal_of_a_user_certificate_proves_the_address_again(ca, agent):
    """A renewal by serial names the address once more, so it is confirmed again; a second
    renewal while one waits returns the waiting one."""
    cert = services.approve_request(confirmed(_submit()), agent=agent)
    renewal = services.submit_renewal(cert)
    assert renewal.status == Status.AWAITING_EMAIL
    assert services.submit_renewal(cert).pk == renewal.pk
    assert Delivery.objects.filter(request=renewal, kind=Kind.EMAIL_CONFIRMATION).exists()
    renewal = confirmed(renewal)
    assert services.approve_request(renewal, agent=agent).sans == ["email:ann@example.test"]


def test_submit_request_command_is_confirmed_by_the_administrator(ca, tmp_path, mailoutbox):
    """An administrator's submit_request vouches for the address: pending at once, no
    confirmation mail, and the audit row names the administrator."""
    csr = tmp_path / "ann.csr"
    csr.write_text(make_csr(cn="Ann"))
    out = io.StringIO()
    call_command(
        "submit_request", profile="user", csr=str(csr), email="ann@example.test", stdout=out
    )
    req = CertificateRequest.objects.get()
    assert req.status == Status.PENDING and req.channel == "command"
    assert re.fullmatch(r"administrator .+ \(manage\.py submit_request\)", req.email_confirmed_by)
    event = AuditEvent.objects.get(request=req, action="request_submitted")
    assert event.actor_label == "administrator"
    assert event.details["email_confirmed_by"] == req.email_confirmed_by
    assert not Delivery.objects.filter(kind=Kind.EMAIL_CONFIRMATION).exists()


def test_issue_certificate_command_is_confirmed_by_the_administrator(ca, tmp_path):
    """issue_certificate issues a user certificate at once, vouched for likewise."""
    csr = tmp_path / "ann.csr"
    csr.write_text(make_csr(cn="Ann"))
    call_command(
        "issue_certificate",
        profile="user",
        csr=str(csr),
        email="ann@example.test",
        stdout=io.StringIO(),
    )
    req = CertificateRequest.objects.get()
    assert req.status == Status.COMPLETE
    assert "(manage.py issue_certificate)" in req.email_confirmed_by


# --- the real thing: SMTP -------------------------------------------------------------


def test_the_whole_flow_over_smtp(
    client, ca, agent, smtp_server, settings, django_capture_on_commit_callbacks
):
    """Enroll; the mail arrives over SMTP and agents hear nothing; the request is in no
    agent list; the mailed link confirms it; then it is pending, marked confirmed, agents
    are told, and the certificate names the confirmed address and nothing else."""
    settings.AGENT_NOTIFY_EMAIL = ["agents@example.test"]
    csr = make_csr(
        cn="Ada Lovelace",
        sans=[x509.RFC822Name("ceo@example.test"), x509.DNSName("evil.example.test")],
    )
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("enroll", args=["user"]),
            {"csr": csr, "requester_email": "ada@example.test"},
        )
    req = CertificateRequest.objects.get()
    assert [m["To"] for m in smtp_server.messages] == ["ada@example.test"]
    mail = smtp_server.messages[0]
    assert req.display_id in mail["Subject"]
    text = mail.get_body(("plain",)).get_content()
    assert text.splitlines()[0] == "Hello,"
    link = LINK.search(text)[0]
    assert link.startswith(f"{settings.SITE_URL}/requests/{req.public_id}/confirm/")
    html = mail.get_body(("html",)).get_content()
    assert link in html

    agents = client_for(agent)
    assert _queue_ids(agents) == set()
    with pytest.raises(services.InvalidTransition):
        services.approve_request(req, agent=agent)

    page = client.get(_path(link))
    assert page.status_code == 200
    assert CertificateRequest.objects.get(pk=req.pk).status == Status.AWAITING_EMAIL
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_path(link))
    assert response.status_code == 302
    req.refresh_from_db()
    assert req.status == Status.PENDING
    assert req.email_confirmed_by == "the requester (mailed link)"
    to_agents = [m for m in smtp_server.messages if m["To"] == "agents@example.test"]
    assert len(to_agents) == 1 and req.display_id in to_agents[0]["Subject"]
    assert _queue_ids(agents) == {req.pk}

    cert = services.approve_request(req, agent=agent)
    assert cert.sans == ["email:ada@example.test"]
    names = cert.x509.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.RFC822Name) == ["ada@example.test"]
    assert names.get_values_for_type(x509.DNSName) == []


def client_for(user):
    from django.test import Client

    other = Client()
    login_verified(other, user)
    return other


# --- the portal's mail against a stranger's mailbox --------------------------------------


HOSTILE_NAMES = [
    "Your mailbox is full: log in at http://evil.example/ now",
    "IT Security Team",
    "<b>Action required</b>",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_no_mail_greets_or_names_the_requester(
    ca, agent, mailoutbox, django_capture_on_commit_callbacks, name
):
    """What the requester typed as their name is in no mail to the requester: every one
    starts "Hello," (received, confirmation, link, rejected, canceled, revoked)."""
    with django_capture_on_commit_callbacks(execute=True):
        req = services.submit_request(
            profile="user",
            csr=make_csr(cn="Ann"),
            requester_email="ann@example.test",
            requester_name=name,
        )
        req = confirmed(req)
        cert = services.approve_request(req, agent=agent)
        services.revoke_certificate(cert, reason="superseded", actor=agent)
        for outcome in ("reject", "cancel"):
            other = confirmed(
                services.submit_request(
                    profile="user",
                    csr=make_csr(cn="Ann"),
                    requester_email="ann@example.test",
                    requester_name=name,
                )
            )
            if outcome == "reject":
                services.reject_request(other, agent=agent, reason="no")
            else:
                services.cancel_request(other, agent=agent)
    to_requester = [m for m in mailoutbox if m.to == ["ann@example.test"]]
    kinds = set(
        Delivery.objects.filter(recipient="ann@example.test").values_list("kind", flat=True)
    )
    assert kinds >= {
        Kind.EMAIL_CONFIRMATION,
        Kind.REQUEST_RECEIVED,
        Kind.LINK,
        Kind.CERTIFICATE_REVOKED,
        Kind.REQUEST_REJECTED,
        Kind.REQUEST_CANCELED,
    }
    assert len(to_requester) >= 6
    for message in to_requester:
        html = message.alternatives[0][0] if message.alternatives else ""
        assert message.body.startswith("Hello,\n"), message.subject
        for part in (message.subject, message.body, html):
            assert name not in part
            assert "Action required" not in part


def test_enrollment_naming_an_address_over_its_day_is_refused(
    client, ca, settings, mailoutbox, django_capture_on_commit_callbacks
):
    """Past MAIL_PER_RECIPIENT_PER_DAY enrollments naming one address are refused at once,
    with a message that says why, and nothing is stored; another address still works."""
    settings.MAIL_PER_RECIPIENT_PER_DAY = 2
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                reverse("enroll", args=["user"]),
                {"csr": make_csr(cn="V"), "requester_email": "victim@example.test"},
            )
        assert response.status_code == 302
    before = (CertificateRequest.objects.count(), AuditEvent.objects.count())
    response = client.post(
        reverse("enroll", args=["user"]),
        {"csr": make_csr(cn="V"), "requester_email": "Victim@Example.test"},
    )
    assert response.status_code == 400
    assert "as many messages to Victim@Example.test today" in response.content.decode()
    assert (CertificateRequest.objects.count(), AuditEvent.objects.count()) == before
    assert len(confirmation_mails(mailoutbox, "victim@example.test")) == 2
    with pytest.raises(services.InvalidRequest, match="Try again tomorrow") as refused:
        services.submit_enrollment(
            profile="server",
            csr=make_csr(cn="www.example.test"),
            requester_email="victim@example.test",
            channel="dogtag",
        )
    assert refused.value.field == "requester_email"
    assert _submit(email="someone.else@example.test").status == Status.AWAITING_EMAIL


def test_mail_over_the_day_is_held_not_dropped(
    ca, agent, settings, mailoutbox, django_capture_on_commit_callbacks, monkeypatch
):
    """Mail past the recipient's day waits, pending with the reason an agent sees and no
    attempt used, and goes out the next day."""
    settings.MAIL_PER_RECIPIENT_PER_DAY = 1
    settings.AGENT_NOTIFY_EMAIL = ["agents@example.test"]
    req = submit_confirmed(
        profile="user", csr=make_csr(cn="Ann"), requester_email="ann@example.test"
    )
    assert throttle.take_mail_allowance("ann@example.test")  # the day's one message, used
    with django_capture_on_commit_callbacks(execute=True):
        cert = services.approve_request(req, agent=agent)
    delivery = Delivery.objects.get(certificate=cert)
    assert delivery.status == Delivery.Status.PENDING
    assert delivery.attempts == 0
    assert delivery.last_error.startswith("held: ann@example.test had its 1 messages for today")
    assert delivery.next_attempt_at > timezone.now()
    assert AuditEvent.objects.filter(action="delivery_held", request=req).exists()
    assert not [m for m in mailoutbox if "/retrieve/" in m.body]

    client = client_for(agent)
    assert "held: ann@example.test" in client.get(req.get_agent_url()).content.decode()

    tomorrow = throttle.next_mail_day() + 60
    monkeypatch.setattr(throttle, "clock", lambda: tomorrow)
    assert delivery_services.deliver(delivery.pk) == "not-claimed"  # not due yet by the DB
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert delivery_services.deliver(delivery.pk) == Delivery.Status.SENT
    assert [m for m in mailoutbox if "/retrieve/" in m.body and m.to == ["ann@example.test"]]


def test_agent_mail_and_mail_an_agent_sends_are_not_counted(
    ca, agent, settings, mailoutbox, django_capture_on_commit_callbacks
):
    """The limit guards addresses a requester typed: the agents' notifications and a
    certificate an agent mails by hand go out whatever the count."""
    settings.MAIL_PER_RECIPIENT_PER_DAY = 1
    settings.AGENT_NOTIFY_EMAIL = ["agents@example.test"]
    with django_capture_on_commit_callbacks(execute=True):
        for i in range(3):
            services.submit_request(
                profile="server",
                csr=make_csr(cn=f"h{i}.example.test"),
                requester_email=f"ops{i}@example.test",
            )
    assert len([m for m in mailoutbox if m.to == ["agents@example.test"]]) == 3
    req = submit_confirmed(
        profile="user", csr=make_csr(cn="Ann"), requester_email="ann@example.test"
    )
    cert = services.approve_request(req, agent=agent)
    throttle.take_mail_allowance("ann@example.test")
    with django_capture_on_commit_callbacks(execute=True):
        delivery_services.send_certificate(cert, method="link", actor=agent)
    manual = Delivery.objects.get(certificate=cert, requested_by=agent)
    assert manual.status == Delivery.Status.SENT
