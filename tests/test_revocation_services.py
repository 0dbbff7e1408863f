"""Revocation services: each reason, hold and release, every refusal, the signal and the mail."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from delivery.models import Delivery
from requests_app import services, signals
from requests_app.models import AuditEvent, Certificate, CertificateRevocationList

Status = Certificate.Status


@pytest.fixture
def issued(pending_request, agent) -> Certificate:
    """The certificate of the pending request, approved."""
    return services.approve_request(pending_request, agent=agent)


@pytest.fixture
def sent_signals():
    """Every certificate_revoked signal sent during the test, as (serial, reason, actor)."""
    seen = []

    def receiver(sender, *, certificate, reason, actor, **kwargs):
        seen.append((certificate.serial, reason, actor))

    signals.certificate_revoked.connect(receiver, dispatch_uid="test-revoked")
    yield seen
    signals.certificate_revoked.disconnect(dispatch_uid="test-revoked")


@pytest.mark.parametrize("reason", services.REVOCATION_REASONS)
def test_each_reason_revokes_audits_and_signals(issued, agent, sent_signals, reason):
    """Every RFC 5280 reason revokes the certificate, with an audit row and the signal."""
    cert = services.revoke_certificate(issued.serial, reason=reason, actor=agent, ip="10.0.0.9")
    cert.refresh_from_db()
    assert cert.status == Status.REVOKED
    assert cert.revocation_reason == reason
    assert cert.revoked_at is not None
    event = AuditEvent.objects.get(action="certificate_revoked", certificate=cert)
    assert event.details["reason"] == reason
    assert event.actor == agent
    assert event.ip == "10.0.0.9"
    assert event.request == cert.request
    assert sent_signals == [(cert.serial, reason, agent)]


def test_the_nine_reasons_are_rfc_5280s():
    """The reasons offered are RFC 5280's, without removeFromCRL."""
    assert set(services.REVOCATION_REASONS) == {
        "unspecified",
        "keyCompromise",
        "cACompromise",
        "affiliationChanged",
        "superseded",
        "cessationOfOperation",
        "certificateHold",
        "privilegeWithdrawn",
        "aACompromise",
    }


def test_serial_may_be_typed_with_colons_and_capitals(issued):
    """A serial number written as on a certificate finds it."""
    services.revoke_certificate(issued.serial_colons, reason="superseded", actor=None)
    issued.refresh_from_db()
    assert issued.status == Status.REVOKED
    assert AuditEvent.objects.get(action="certificate_revoked").actor_label == "system"


def test_invalidity_date_is_stored(issued, agent):
    """The invalidity date is kept, and a naive one is read as UTC."""
    cert = services.revoke_certificate(
        issued, reason="keyCompromise", actor=agent, invalidity_date=dt.datetime(2025, 1, 31, 12)
    )
    cert.refresh_from_db()
    assert cert.invalidity_date == dt.datetime(2025, 1, 31, 12, tzinfo=dt.UTC)


def test_future_invalidity_date_is_refused(issued, agent):
    """An invalidity date in the future is refused and nothing is written."""
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    with pytest.raises(services.InvalidRequest) as refused:
        services.revoke_certificate(
            issued, reason="keyCompromise", actor=agent, invalidity_date=future
        )
    assert refused.value.field == "invalidity_date"
    issued.refresh_from_db()
    assert issued.status == Status.VALID


@pytest.mark.parametrize("reason", ["removeFromCRL", "compromised", ""])
def test_unknown_reason_is_refused(issued, agent, reason):
    """A reason that is not RFC 5280's (removeFromCRL included) is refused."""
    with pytest.raises(services.InvalidRequest) as refused:
        services.revoke_certificate(issued, reason=reason, actor=agent)
    assert refused.value.field == "reason"
    assert not AuditEvent.objects.filter(action="certificate_revoked").exists()


def test_unknown_serial_is_refused(ca, agent):
    """A serial no certificate has is refused with CertificateNotFound."""
    with pytest.raises(services.CertificateNotFound, match="no certificate has the serial"):
        services.revoke_certificate("abcdef", reason="superseded", actor=agent)
    with pytest.raises(services.CertificateNotFound):
        services.release_hold("abcdef", actor=agent)


@pytest.mark.parametrize("second", ["keyCompromise", "certificateHold", "unspecified"])
def test_revoking_a_revoked_certificate_is_refused(issued, agent, sent_signals, second):
    """A certificate revoked for a final reason cannot be revoked again, for any reason."""
    services.revoke_certificate(issued, reason="superseded", actor=agent)
    with pytest.raises(services.AlreadyRevoked, match="already revoked"):
        services.revoke_certificate(issued, reason=second, actor=agent)
    issued.refresh_from_db()
    assert issued.revocation_reason == "superseded"
    assert AuditEvent.objects.filter(action="certificate_revoked").count() == 1
    assert len(sent_signals) == 1


def test_holding_a_held_certificate_is_refused(issued, agent):
    """A certificate on hold cannot be put on hold again."""
    services.revoke_certificate(issued, reason="certificateHold", actor=agent)
    with pytest.raises(services.AlreadyRevoked, match="already on hold"):
        services.revoke_certificate(issued, reason="certificateHold", actor=agent)


def test_a_held_certificate_can_be_revoked_for_good(issued, agent):
    """A hold becomes a final revocation that keeps the time of the hold."""
    held = services.revoke_certificate(issued, reason="certificateHold", actor=agent)
    held_at = held.revoked_at
    cert = services.revoke_certificate(issued, reason="keyCompromise", actor=agent)
    cert.refresh_from_db()
    assert cert.revocation_reason == "keyCompromise"
    assert cert.revoked_at == held_at
    final = AuditEvent.objects.filter(action="certificate_revoked").last()
    assert final.details["previous_reason"] == "certificateHold"
    with pytest.raises(services.NotOnHold, match="final"):
        services.release_hold(issued, actor=agent)


def test_release_hold_makes_the_certificate_valid_again(issued, agent, sent_signals):
    """Releasing a hold clears the revocation, audits it and signals removeFromCRL."""
    services.revoke_certificate(issued, reason="certificateHold", actor=agent)
    cert = services.release_hold(issued.serial, actor=agent, ip="10.0.0.9")
    cert.refresh_from_db()
    assert cert.status == Status.VALID
    assert (cert.revoked_at, cert.revocation_reason, cert.invalidity_date) == (None, "", None)
    event = AuditEvent.objects.get(action="certificate_hold_released")
    assert event.certificate == cert
    assert event.details["held_since"]
    assert sent_signals[-1] == (cert.serial, "removeFromCRL", agent)


def test_release_of_a_valid_certificate_is_refused(issued, agent):
    """Only a certificate on hold can be released."""
    with pytest.raises(services.NotOnHold, match="not on hold: it is valid"):
        services.release_hold(issued, actor=agent)
    assert isinstance(services.NotOnHold("x"), services.InvalidTransition)


def test_issued_certificates_name_the_ocsp_responder(issued, settings):
    """The authorityInfoAccess of an issued certificate names REVOCATION_BASE_URL/ocsp and
    the CRL DP."""
    aia = issued.x509.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    ocsp_urls = [
        d.access_location.value
        for d in aia
        if d.access_method == x509.AuthorityInformationAccessOID.OCSP
    ]
    assert ocsp_urls == [f"{settings.REVOCATION_BASE_URL}/ocsp"]
    dp = issued.x509.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert dp[0].full_name[0].value == f"{settings.REVOCATION_BASE_URL}/ca/{issued.ca_id}/crl.crl"


def test_holder_is_told_of_the_revocation(
    issued, agent, mailoutbox, django_capture_on_commit_callbacks
):
    """After commit, the requester gets a mail with the reason and the date."""
    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        cert = services.revoke_certificate(
            issued,
            reason="keyCompromise",
            actor=agent,
            invalidity_date=dt.datetime(2025, 1, 31, 12, tzinfo=dt.UTC),
        )
    delivery = Delivery.objects.get(kind="certificate_revoked")
    assert (delivery.recipient, delivery.certificate, delivery.status) == (
        "admin@example.test",
        cert,
        "sent",
    )
    [mail] = mailoutbox
    assert mail.to == ["admin@example.test"]
    assert mail.subject == f"Your certificate {cert.serial_colons} was revoked"
    assert "Reason: key compromise\n" in mail.body
    assert f"revoked on {cert.revoked_at:%Y-%m-%d %H:%M} UTC" in mail.body
    assert "Invalid since: 2025-01-31 12:00 UTC" in mail.body
    assert "key compromise" in mail.alternatives[0].content


def test_holder_is_told_of_the_hold_and_its_release(
    issued, agent, mailoutbox, django_capture_on_commit_callbacks
):
    """A hold and its release each send the holder a mail saying so."""
    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.revoke_certificate(issued, reason="certificateHold", actor=agent)
    with django_capture_on_commit_callbacks(execute=True):
        services.release_hold(issued, actor=agent)
    assert [m.subject for m in mailoutbox] == [
        f"Your certificate {issued.serial_colons} was put on hold",
        f"Your certificate {issued.serial_colons} is valid again",
    ]
    assert "valid again" in mailoutbox[1].body


def test_no_mail_when_notifications_are_off(
    issued, agent, settings, mailoutbox, django_capture_on_commit_callbacks
):
    """DELIVERY_NOTIFICATIONS=False queues no revocation mail."""
    settings.DELIVERY_NOTIFICATIONS = False
    with django_capture_on_commit_callbacks(execute=True):
        services.revoke_certificate(issued, reason="superseded", actor=agent)
    assert not Delivery.objects.filter(kind="certificate_revoked").exists()


def test_a_rolled_back_revocation_mails_nobody_and_keeps_the_crl(
    issued, agent, mailoutbox, django_capture_on_commit_callbacks
):
    """If the surrounding transaction fails, nothing is revoked, mailed or published."""
    from django.db import transaction

    mailoutbox.clear()
    with (
        pytest.raises(RuntimeError),
        django_capture_on_commit_callbacks(execute=True),
        transaction.atomic(),
    ):
        services.revoke_certificate(issued, reason="superseded", actor=agent)
        raise RuntimeError("boom")
    issued.refresh_from_db()
    assert issued.status == Status.VALID
    assert mailoutbox == []
    assert not CertificateRevocationList.objects.exists()


def test_crl_is_regenerated_after_commit(issued, agent, django_capture_on_commit_callbacks):
    """A revocation and a release each sign a new CRL once they commit."""
    with django_capture_on_commit_callbacks(execute=True):
        services.revoke_certificate(issued, reason="certificateHold", actor=agent)
    first = CertificateRevocationList.objects.get()
    listed = x509.load_der_x509_crl(bytes(first.der))
    assert listed.get_revoked_certificate_by_serial_number(int(issued.serial, 16)) is not None
    with django_capture_on_commit_callbacks(execute=True):
        services.release_hold(issued, actor=agent)
    second = CertificateRevocationList.objects.order_by("-number").first()
    assert second.number == first.number + 1
    released = x509.load_der_x509_crl(bytes(second.der))
    assert released.get_revoked_certificate_by_serial_number(int(issued.serial, 16)) is None
