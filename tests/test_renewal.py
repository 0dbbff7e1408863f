"""Renewal from the end-entity pages, the services: what a renewal carries, who hears of
it, the same-key auto-approval rule, superseded certificates, and the abuse a public
certificate page invites."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from cryptography import x509

from requests_app import pki, services
from requests_app.models import AuditEvent, Certificate, CertificateRequest
from tests.helpers.csrs import make_csr
from tests.helpers.mailbox import confirmed, mailed_code
from tests.helpers.renewal import dns, fresh, issued_server, issued_user

Status = CertificateRequest.Status

pytestmark = pytest.mark.usefixtures("empty_cache")


@pytest.fixture
def auto_renewal(settings):
    """Both profiles allow the same-key rule (it is off by default)."""
    settings.CA_PROFILES = {
        "server": {"auto_approve_same_key_renewal": True},
        "user": {"auto_approve_same_key_renewal": True},
    }


def fresh_request(req: CertificateRequest) -> CertificateRequest:
    return CertificateRequest.objects.get(pk=req.pk)


def _actions(**filters) -> list[str]:
    return list(AuditEvent.objects.filter(**filters).values_list("action", flat=True))


# --- what a renewal carries ----------------------------------------------------------------


def test_a_new_key_renewal_carries_the_old_names_and_waits_for_the_old_requesters_mailbox(
    ca, agent
):
    """A new key proves nothing: the renewal awaits the original requester's confirmation,
    with the old profile, subject and names, and that requester's address."""
    old, _ = issued_server(agent)
    req, issued = services.submit_web_renewal(old.serial, csr=make_csr(cn="www.example.test"))
    assert issued is None
    assert req.status == Status.AWAITING_EMAIL
    assert req.renewal_of == old
    assert (req.profile, req.requester_email, req.requester_name) == (
        "server",
        "ops@example.test",
        "Web Operations",
    )
    assert req.requested_sans == ["DNS:www.example.test"]  # the CSR left api. out
    submitted = AuditEvent.objects.get(request=req, action="renewal_submitted")
    assert submitted.details["same_key"] is False
    assert submitted.details["names_removed"] == ["DNS:api.example.test"]
    assert submitted.certificate == old


def test_a_csr_that_carries_only_the_key_keeps_every_old_name(ca, agent):
    """A CSR without a subject or names renews the certificate as it was."""
    old, key = issued_server(agent)
    req, _ = services.submit_web_renewal(old, csr=make_csr(cn=None, key=key))
    assert req.requested_sans == old.sans
    assert req.status == Status.PENDING  # the same key: its holder asked
    changes = services.renewal_changes(req)
    assert changes.same_key and changes.names_unchanged
    cert = services.approve_request(req, agent=agent)
    assert cert.x509.subject == old.x509.subject
    assert pki.same_public_key(cert.x509.public_key(), old.x509.public_key())


def test_what_a_renewal_changes(ca, agent):
    """renewal_changes names the key, the subject and the names removed."""
    old, _ = issued_server(agent)
    req, _ = services.submit_web_renewal(
        old, csr=make_csr(cn="api.example.test", sans=dns("api.example.test"))
    )
    changes = services.renewal_changes(req)
    assert not changes.same_key
    assert changes.subject_changed
    assert changes.removed == ("DNS:www.example.test",)
    assert changes.added == ()
    assert changes.kept == ("DNS:api.example.test",)
    assert (
        services.renewal_changes(
            services.submit_request(
                profile="server",
                csr=make_csr(cn="x.example.test"),
                requester_email="a@example.test",
            )
        )
        is None
    )


# --- the same-key rule -------------------------------------------------------------------


def test_the_same_key_rule_is_off_by_default(ca, agent):
    """With the profile as shipped, a same-key renewal with the same names waits for an agent."""
    old, key = issued_server(agent)
    req, issued = services.submit_web_renewal(
        old,
        csr=make_csr(
            cn="www.example.test", sans=dns("www.example.test", "api.example.test"), key=key
        ),
    )
    assert issued is None
    assert req.status == Status.PENDING
    assert "does not allow" in services.auto_approval_refusal(req)
    assert "renewal_auto_approved" not in _actions(request=req)


def test_the_same_key_rule_issues_at_once_and_says_so(ca, agent, auto_renewal):
    """Enabled, the same key and names on a valid certificate: issued without an agent, audited
    with the rule's name, and the old certificate marked superseded."""
    old, key = issued_server(agent)
    req, issued = services.submit_web_renewal(
        old,
        csr=make_csr(
            cn="www.example.test", sans=dns("www.example.test", "api.example.test"), key=key
        ),
    )
    assert issued is not None
    assert fresh(req.renewal_of).superseded_by == issued
    row = AuditEvent.objects.get(request=req, action="renewal_auto_approved")
    assert row.details["rule"] == "auto_approve_same_key_renewal"
    assert row.details["renewal_of"] == old.serial
    assert row.actor is None and row.actor_label == "system"
    assert AuditEvent.objects.get(request=req, action="request_approved").actor is None
    assert fresh(old).status == Certificate.Status.VALID  # superseded, still valid


def test_the_same_key_rule_refuses_a_different_key(ca, agent, auto_renewal):
    """A new key goes to the queue (after the mailbox), however the profile is set."""
    old, _ = issued_server(agent)
    req, issued = services.submit_web_renewal(
        old, csr=make_csr(cn="www.example.test", sans=dns("www.example.test", "api.example.test"))
    )
    assert issued is None
    req = confirmed(req)
    assert fresh_request(req).status == Status.PENDING
    assert services.auto_approval_refusal(req) == "the CSR is signed by a different key"


def test_the_same_key_rule_refuses_other_names(ca, agent, auto_renewal):
    """The same key with a name left out goes to the queue: the names differ."""
    old, key = issued_server(agent)
    req, issued = services.submit_web_renewal(
        old, csr=make_csr(cn="www.example.test", sans=dns("www.example.test"), key=key)
    )
    assert issued is None and req.status == Status.PENDING
    assert services.auto_approval_refusal(req) == "the subject or names differ"


def test_the_same_key_rule_refuses_an_expired_certificate(ca, agent, auto_renewal):
    """After the old certificate's expiry, a same-key renewal waits for an agent."""
    old, key = issued_server(agent)
    with time_machine.travel(old.not_after + dt.timedelta(days=1), tick=False):
        req, issued = services.submit_web_renewal(
            old,
            csr=make_csr(
                cn="www.example.test", sans=dns("www.example.test", "api.example.test"), key=key
            ),
        )
        assert issued is None and req.status == Status.PENDING
        assert "has expired" in services.auto_approval_refusal(req)


def test_the_same_key_rule_refuses_a_certificate_revoked_meanwhile(ca, agent, auto_renewal):
    """A renewal waiting while its certificate is revoked is never issued, by rule or agent."""
    old, key = issued_user(agent)
    req, _ = services.submit_web_renewal(old, csr=make_csr(cn="Ada Lovelace", key=key))
    assert req.awaits_email  # a personal certificate proves the mailbox each time
    services.revoke_certificate(old, reason="keyCompromise", actor=agent)
    req = confirmed(req)
    req.refresh_from_db()
    assert req.status == Status.PENDING and req.certificate is None
    assert "revoked" in services.auto_approval_refusal(req)
    with pytest.raises(services.InvalidTransition, match="revoked"):
        services.approve_request(req, agent=agent)


def test_the_same_key_rule_issues_a_personal_renewal_once_the_mailbox_is_proved(
    ca, agent, auto_renewal
):
    """For confirm_email profiles the rule applies when the requester confirms the address."""
    old, key = issued_user(agent)
    req, issued = services.submit_web_renewal(old, csr=make_csr(cn="Ada Lovelace", key=key))
    assert issued is None and req.awaits_email
    confirmed(req)
    req.refresh_from_db()
    assert req.status == Status.COMPLETE
    assert fresh(old).superseded_by == req.certificate
    assert "renewal_auto_approved" in _actions(request=req)


def test_a_renewal_by_serial_is_never_issued_by_the_rule(ca, agent, auto_renewal):
    """certmonger's renewal by serial carries no CSR, so no proof of the key: always an agent."""
    old, _ = issued_server(agent)
    req = services.submit_renewal(int(old.serial, 16), ip="192.0.2.1")
    assert req.status == Status.PENDING
    assert services.approve_renewal_if_allowed(req) is None
    assert "CVE-2021-20179" in services.auto_approval_refusal(req)


# --- superseded ----------------------------------------------------------------------------


def test_an_approved_renewal_supersedes_the_old_certificate_in_the_same_transaction(ca, agent):
    """approve_request marks the renewed certificate superseded, audited; it stays valid."""
    old, key = issued_server(agent)
    req, _ = services.submit_web_renewal(old, csr=make_csr(cn=None, key=key))
    cert = services.approve_request(req, agent=agent)
    old = fresh(old)
    assert old.superseded_by == cert and old.superseded_at is not None
    assert old.status == Certificate.Status.VALID
    row = AuditEvent.objects.get(certificate=old, action="certificate_superseded")
    assert row.details["superseded_by"] == cert.serial
    assert row.actor == agent


def test_a_refused_approval_marks_nothing(ca, agent):
    """When the approval fails, the old certificate is not superseded."""
    old, key = issued_server(agent)
    req, _ = services.submit_web_renewal(old, csr=make_csr(cn=None, key=key))
    with pytest.raises(services.InvalidRequest):
        services.approve_request(req, agent=agent, validity_days=100_000)
    assert fresh(old).superseded_by is None


def test_certmonger_renewals_and_bulk_approvals_supersede_too(ca, agent):
    """The Dogtag renewal by serial, approved in bulk, marks the old certificate superseded."""
    old, _ = issued_server(agent)
    req = services.submit_renewal(int(old.serial, 16))
    result = services.approve_all_pending(agent=agent)
    assert [c.pk for c in result.approved] == [fresh_request(req).certificate_id]
    assert fresh(old).superseded_by_id == fresh_request(req).certificate_id


def test_revoking_the_superseded_certificate(ca, agent):
    """The old certificate is revoked for reason superseded through the revocation service."""
    old, key = issued_server(agent)
    req, _ = services.submit_web_renewal(old, csr=make_csr(cn=None, key=key))
    services.approve_request(req, agent=agent)
    services.revoke_certificate(old, reason="superseded", actor=agent)
    assert fresh(old).revocation_reason == "superseded"


# --- abuse ---------------------------------------------------------------------------------


def test_a_revoked_certificate_cannot_be_renewed(ca, agent):
    """Renewing a revoked certificate is refused, and nothing is written."""
    old, key = issued_server(agent)
    services.revoke_certificate(old, reason="keyCompromise", actor=agent)
    before = CertificateRequest.objects.count()
    with pytest.raises(services.InvalidRequest, match="revoked"):
        services.submit_web_renewal(old.serial, csr=make_csr(cn=None, key=key))
    assert CertificateRequest.objects.count() == before


def test_an_unknown_serial_cannot_be_renewed(ca):
    """A serial that names nothing is refused."""
    with pytest.raises(services.InvalidRequest, match="no certificate"):
        services.submit_web_renewal("abcdef0123456789", csr=make_csr())


def test_a_csr_for_other_names_is_refused(ca, agent):
    """A renewal never adds a name: a CSR naming another host is refused, nothing written."""
    old, _ = issued_server(agent)
    before = CertificateRequest.objects.count()
    for csr in (
        make_csr(cn="evil.example.test"),
        make_csr(cn="www.example.test", sans=dns("www.example.test", "evil.example.test")),
    ):
        with pytest.raises(services.InvalidRequest, match=r"evil\.example\.test"):
            services.submit_web_renewal(old, csr=csr)
    assert CertificateRequest.objects.count() == before


def test_a_stranger_cannot_redirect_a_personal_renewal(ca, agent, mailoutbox):
    """A personal certificate's renewal names and mails only the original address."""
    old, _ = issued_user(agent)
    req, _ = services.submit_web_renewal(
        old, csr=make_csr(cn="Ada Lovelace", sans=[x509.RFC822Name("eve@example.test")])
    )
    assert req.requester_email == "ada@example.test"
    assert req.requested_sans == ["email:ada@example.test"]


def test_one_renewal_of_a_certificate_in_the_queue(ca, agent):
    """While one renewal waits for an agent, a second is refused without naming the first;
    a second one confirmed meanwhile is refused at confirmation."""
    old, key = issued_server(agent)
    early, _ = services.submit_web_renewal(old, csr=make_csr(cn=None))  # awaiting the mailbox
    first, _ = services.submit_web_renewal(old, csr=make_csr(cn=None, key=key))
    assert first.status == Status.PENDING
    with pytest.raises(services.InvalidRequest, match="already waiting") as refusal:
        services.submit_web_renewal(old, csr=make_csr(cn=None))
    assert first.display_id not in refusal.value.message
    assert first.public_id not in refusal.value.message
    with pytest.raises(services.InvalidTransition, match="already waiting"):
        confirmed(early)
    assert fresh_request(early).status == Status.AWAITING_EMAIL


def test_the_same_key_cannot_be_queued_twice(ca, agent):
    """A second renewal with the same key is the duplicate the submission refuses."""
    old, key = issued_user(agent)
    services.submit_web_renewal(old, csr=make_csr(cn="Ada Lovelace", key=key))
    with pytest.raises(services.InvalidRequest, match="already waiting"):
        services.submit_web_renewal(old, csr=make_csr(cn="Ada Lovelace", key=key))


def test_renewals_are_limited_per_recipient_and_day(ca, agent, settings):
    """Each renewal may mail the requester: MAIL_PER_RECIPIENT_PER_DAY bounds them."""
    settings.MAIL_PER_RECIPIENT_PER_DAY = 2
    old, _ = issued_user(agent, email="grace@example.test")
    services.submit_web_renewal(old, csr=make_csr(cn="Grace"))
    with pytest.raises(services.InvalidRequest, match="as many messages"):
        services.submit_web_renewal(old, csr=make_csr(cn="Grace"))


def test_a_superseded_certificate_is_not_renewed_again(ca, agent):
    """Once renewed, the old certificate's renewal is refused, naming its successor."""
    old, key = issued_server(agent)
    req, _ = services.submit_web_renewal(old, csr=make_csr(cn=None, key=key))
    cert = services.approve_request(req, agent=agent)
    with pytest.raises(services.InvalidRequest, match=cert.serial_colons):
        services.submit_web_renewal(old, csr=make_csr(cn=None, key=key))


def test_an_agent_login_certificate_is_not_renewed_from_the_public_page(
    ca, agent, django_user_model
):
    """Agent login certificates are renewed by their agent, logged in; not by serial."""
    other = django_user_model.objects.create_user("agent2", "agent2@example.test", "pw-agent-2")
    other.groups.add(services.agents_group())
    req = confirmed(services.request_agent_certificate(user=other, csr=make_csr(cn="Agent Two")))
    cert = services.approve_request(req, agent=agent)
    with pytest.raises(services.InvalidRequest, match="ask an agent"):
        services.submit_web_renewal(cert, csr=make_csr(cn="Agent Two"))


def test_a_server_key_renewal_makes_a_new_sealed_key(ca, agent, settings):
    """A profile with server-made keys renews with a new passphrase: a new key, sealed."""
    settings.SERVER_KEY_TYPE = "p256"
    old, _ = issued_user(agent)
    req = services.submit_renewal_with_server_key(old, passphrase="a brand new passphrase here")
    assert req.awaits_email and req.encrypted_private_key
    assert req.renewal_of == old
    cert = services.approve_request(confirmed(req), agent=agent)
    assert not pki.same_public_key(cert.x509.public_key(), old.x509.public_key())
    assert cert.sans == ["email:ada@example.test"]
    with pytest.raises(services.InvalidRequest, match="does not offer"):
        server_old, _ = issued_server(agent, names=("k.example.test",))
        services.submit_renewal_with_server_key(server_old, passphrase="a brand new passphrase")


def test_the_confirmation_mail_goes_to_the_original_requester(
    ca, agent, mailoutbox, django_capture_on_commit_callbacks
):
    """The code that lets a renewal reach the agents is mailed to the old requester alone."""
    old, _ = issued_server(agent)
    with django_capture_on_commit_callbacks(execute=True):
        req, _ = services.submit_web_renewal(old, csr=make_csr(cn=None))
    assert mailed_code(mailoutbox, "ops@example.test")
    assert f"renewal of certificate {old.serial_colons}" in mailoutbox[-1].body
    assert all(m.to == ["ops@example.test"] for m in mailoutbox)
    assert req.requester_email == "ops@example.test"
