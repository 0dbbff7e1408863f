"""The Django admin as an agent surface: read-only models, actions that call the services."""

from __future__ import annotations

import pytest
from cryptography import x509
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from requests_app import services
from requests_app.models import AuditEvent, Certificate, CertificateAuthority, CertificateRequest
from tests.helpers.csrs import make_csr
from tests.helpers.mfa import login_verified

CHANGELIST = "admin:requests_app_certificaterequest_changelist"
Status = CertificateRequest.Status


@pytest.fixture
def agent_client(client, agent):
    """A client logged in as an agent who is staff, as create_agent makes them."""
    agent.is_staff = True
    agent.save(update_fields=["is_staff"])
    login_verified(client, agent)
    return client


@pytest.fixture
def viewer_client(client, django_user_model):
    """A client logged in as staff who may view requests but not act on them."""
    user = django_user_model.objects.create_user(
        "viewer", "viewer@example.test", "x", is_staff=True
    )
    user.user_permissions.add(
        Permission.objects.get(codename="view_certificaterequest"),
        Permission.objects.get(codename="view_auditevent"),
    )
    login_verified(client, user)
    return client


def submit(cn: str = "www.example.test", email: str = "admin@example.test") -> CertificateRequest:
    return services.submit_request(
        profile="server", csr=make_csr(cn=cn), requester_email=email, requester_name="Admin"
    )


def run_action(client, action: str, *requests: CertificateRequest, **extra):
    data = {"action": action, "_selected_action": [r.pk for r in requests], **extra}
    return client.post(reverse(CHANGELIST), data)


def messages_of(response) -> list[tuple[str, str]]:
    return [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]


def test_approve_action_approves_each_selected_request(agent_client, agent, ca):
    """Approving two pending requests issues both certificates and reports each serial."""
    first, second = submit("a.example.test"), submit("b.example.test")
    response = run_action(agent_client, "approve_selected", first, second, index=0)
    assert response.status_code == 302
    for req in (first, second):
        req.refresh_from_db()
        assert req.status == Status.COMPLETE
        assert req.acted_by == agent
    reported = dict((text, level) for level, text in messages_of(response))
    issued = reverse("agent:certificate_issued", args=[first.public_id])
    assert reported[
        f"Approved request {first.display_id}: "
        f"certificate serial {first.certificate.serial_colons}. "
        f'<a href="{issued}">Certificate issued: delivery</a>'
    ] == ("success")
    assert response.url == reverse(CHANGELIST)  # two approvals: back to the list
    approved = AuditEvent.objects.filter(action="request_approved", request=first).get()
    assert approved.ip == "127.0.0.1"


def test_approve_action_reports_a_refusal_and_approves_the_others(agent_client, agent, ca):
    """An already complete request is reported as an error; the pending one is still approved."""
    done, pending = submit("done.example.test"), submit("pending.example.test")
    services.approve_request(done.public_id, agent=agent)
    response = run_action(agent_client, "approve_selected", done, pending)
    pending.refresh_from_db()
    assert pending.status == Status.COMPLETE
    reported = messages_of(response)
    assert (
        "error",
        f"Request {done.display_id}: request {done.display_id} is complete, so it cannot be "
        "approved",
    ) in reported
    assert [level for level, _ in reported].count("success") == 1
    assert Certificate.objects.count() == 2


def test_actions_are_hidden_from_staff_without_the_permission(viewer_client, pending_request):
    """A staff user without the approve permission sees no actions, and posting one does nothing."""
    response = viewer_client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert response.context["action_form"] is None
    assert b"Approve selected requests" not in response.content
    for action in ("approve_selected", "reject_selected", "cancel_selected"):
        run_action(viewer_client, action, pending_request, post="yes", reason="no", index=0)
    pending_request.refresh_from_db()
    assert pending_request.status == Status.PENDING
    assert not Certificate.objects.exists()


def test_reject_action_asks_for_a_reason_then_rejects(agent_client, agent, ca):
    """The first POST shows the reason page listing the requests; the second rejects them."""
    first, second = submit("a.example.test"), submit("b.example.test")
    page = run_action(agent_client, "reject_selected", first, second, index=0)
    assert page.status_code == 200
    assert "admin/requests_app/certificaterequest/reject_selected_confirmation.html" in [
        t.name for t in page.templates
    ]
    assert first.display_id in page.content.decode()
    assert b'name="reason"' in page.content
    assert b'name="post" value="yes"' in page.content
    response = run_action(
        agent_client, "reject_selected", first, second, post="yes", reason="Not our domain."
    )
    assert response.status_code == 302
    for req in (first, second):
        req.refresh_from_db()
        assert (req.status, req.agent_note, req.acted_by) == (
            Status.REJECTED,
            "Not our domain.",
            agent,
        )
    assert ("success", f"Rejected request {first.display_id}.") in messages_of(response)


def test_reject_action_without_a_reason_shows_the_page_again(agent_client, pending_request):
    """A blank reason re-renders the page with an error and rejects nothing."""
    page = run_action(agent_client, "reject_selected", pending_request, post="yes", reason="  ")
    assert page.status_code == 200
    assert b"This field is required." in page.content
    pending_request.refresh_from_db()
    assert pending_request.status == Status.PENDING


def test_reject_action_reports_a_request_that_is_no_longer_pending(
    agent_client, agent, pending_request
):
    """Rejecting a canceled request is refused with a per-request error."""
    services.cancel_request(pending_request.public_id, agent=agent)
    response = run_action(
        agent_client, "reject_selected", pending_request, post="yes", reason="Duplicate."
    )
    assert messages_of(response) == [
        (
            "error",
            f"Request {pending_request.display_id}: request {pending_request.display_id} is "
            "canceled, so it cannot be rejected",
        )
    ]


def test_cancel_action_cancels_and_refuses_a_second_time(agent_client, agent, pending_request):
    """Canceling works once; a second cancel reports an error and changes nothing."""
    response = run_action(agent_client, "cancel_selected", pending_request, index=0)
    pending_request.refresh_from_db()
    assert (pending_request.status, pending_request.acted_by) == (Status.CANCELED, agent)
    assert messages_of(response) == [("success", f"Canceled request {pending_request.display_id}.")]
    again = run_action(agent_client, "cancel_selected", pending_request, index=0)
    assert messages_of(again)[-1][0] == "error"  # after the first POST's unread message
    assert AuditEvent.objects.filter(action="request_canceled").count() == 1


def test_approve_from_the_change_page(agent_client, pending_request):
    """The read-only change page offers the actions for that one request."""
    url = reverse("admin:requests_app_certificaterequest_change", args=[pending_request.pk])
    page = agent_client.get(url)
    assert b"Approve this request" in page.content
    response = agent_client.post(
        url,
        {"CHANGE_FORM-action": "approve_selected", "_selected_action": [pending_request.pk]},
    )
    assert response.status_code == 302
    # One approval lands on its "certificate issued" page, where the delivery buttons are.
    assert response.url == reverse("agent:certificate_issued", args=[pending_request.public_id])
    pending_request.refresh_from_db()
    assert pending_request.status == Status.COMPLETE
    assert pending_request.certificate.serial in agent_client.get(url).content.decode()


def test_reject_from_the_change_page_reposts_to_the_change_page(agent_client, pending_request):
    """The reason page reached from the change page posts the change-form action again."""
    url = reverse("admin:requests_app_certificaterequest_change", args=[pending_request.pk])
    selected = {"CHANGE_FORM-action": "reject_selected", "_selected_action": [pending_request.pk]}
    page = agent_client.post(url, selected)
    assert b'name="CHANGE_FORM-action" value="reject_selected"' in page.content
    agent_client.post(url, {**selected, "post": "yes", "reason": "Wrong profile."})
    pending_request.refresh_from_db()
    assert (pending_request.status, pending_request.agent_note) == (
        Status.REJECTED,
        "Wrong profile.",
    )


def test_change_page_is_read_only_with_csr_details(agent_client, ca):
    """The change page shows the key, the SANs and the public key hash, with no Save button."""
    req = services.submit_request(
        profile="server",
        csr=make_csr(cn="www.example.test", sans=[x509.DNSName("alt.example.test")]),
        requester_email="admin@example.test",
    )
    url = reverse("admin:requests_app_certificaterequest_change", args=[req.pk])
    html = agent_client.get(url).content.decode()
    assert "EC P-256, 256 bits" in html
    assert "DNS:alt.example.test" in html
    assert req.public_key_sha256 in html
    assert "request_submitted" in html  # the audit history inline
    assert 'name="_save"' not in html
    assert agent_client.post(url, {"requester_email": "x@example.test"}).status_code == 403


def test_add_is_refused_even_for_a_superuser(admin_client, ca):
    """Nobody adds requests through the admin: they come from the services only."""
    response = admin_client.get(reverse("admin:requests_app_certificaterequest_add"))
    assert response.status_code == 403


def test_search_finds_request_ids_and_serials_as_people_type_them(agent_client, agent, ca):
    """A lower-case ID with a misread O, or a serial with colons, finds its request."""
    wanted, other = submit("wanted.example.test"), submit("other.example.test")
    cert = services.approve_request(wanted.public_id, agent=agent)
    typed_id = wanted.display_id.lower().replace("0", "o")
    for term in (typed_id, cert.serial_colons, "wanted.example"):
        response = agent_client.get(reverse(CHANGELIST), {"q": term})
        assert list(response.context["cl"].result_list) == [wanted], term
    assert (
        other.display_id
        not in agent_client.get(reverse(CHANGELIST), {"q": typed_id}).content.decode()
    )


def test_changelist_of_30_requests_uses_few_queries_and_no_count(agent_client, agent, ca):
    """Thirty requests render with a bounded number of queries and no COUNT over the table."""
    requests = [submit(f"h{i}.example.test") for i in range(30)]
    for req in requests[:5]:
        services.approve_request(req.public_id, agent=agent)
    with CaptureQueriesContext(connection) as unfiltered:
        response = agent_client.get(reverse(CHANGELIST), {"status__exact": "all"})
    assert response.status_code == 200
    assert response.context["cl"].result_count == 30
    assert len(response.context["cl"].result_list) == 30
    assert len(unfiltered) <= 8
    assert not [q["sql"] for q in unfiltered if "COUNT(" in q["sql"].upper()]
    with CaptureQueriesContext(connection) as by_status:
        response = agent_client.get(reverse(CHANGELIST), {"status__exact": "complete"})
    assert response.context["cl"].result_count == 5
    assert len(by_status) <= 8
    assert not [q["sql"] for q in by_status if "COUNT(" in q["sql"].upper()]


def test_audit_events_cannot_be_added_changed_or_deleted_by_a_superuser(
    admin_client, pending_request
):
    """The audit admin is view-only for everyone, superusers included."""
    event = AuditEvent.objects.get(request=pending_request, action="request_submitted")
    change_url = reverse("admin:requests_app_auditevent_change", args=[event.pk])
    assert admin_client.get(reverse("admin:requests_app_auditevent_add")).status_code == 403
    assert admin_client.post(change_url, {"action": "x"}).status_code == 403
    delete_url = reverse("admin:requests_app_auditevent_delete", args=[event.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    changelist = admin_client.get(reverse("admin:requests_app_auditevent_changelist"))
    assert b"delete_selected" not in changelist.content
    page = admin_client.get(change_url).content.decode()
    assert "request_submitted" in page
    assert 'name="_save"' not in page
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_ca_admin_shows_no_key_material(admin_client, ca):
    """The CA pages show public facts (fingerprint, key file name) and never a private key."""
    for url in (
        reverse("admin:requests_app_certificateauthority_changelist"),
        reverse("admin:requests_app_certificateauthority_change", args=[ca.pk]),
    ):
        html = admin_client.get(url).content.decode()
        assert "PRIVATE KEY" not in html
        assert "ENCRYPTED" not in html
    assert ca.fingerprint_sha256 in html
    assert ca.key_filename in html
    add = admin_client.get(reverse("admin:requests_app_certificateauthority_add"))
    assert add.status_code == 403
    assert CertificateAuthority.objects.count() == 1


def test_certificate_admin_lists_download_links_and_is_read_only(agent_client, agent, ca):
    """Agents see issued certificates with a link per download format, and cannot edit them."""
    cert = services.approve_request(submit().public_id, agent=agent)
    html = agent_client.get(reverse("admin:requests_app_certificate_changelist")).content.decode()
    for fmt in ("pem", "der", "p7b", "chain"):
        assert reverse("certificate_download", args=[cert.serial, fmt]) in html
    url = reverse("admin:requests_app_certificate_change", args=[cert.pk])
    assert agent_client.post(url, {"status": "revoked"}).status_code == 403
    found = agent_client.get(
        reverse("admin:requests_app_certificate_changelist"), {"q": cert.serial.upper()}
    )
    assert list(found.context["cl"].result_list) == [cert]
