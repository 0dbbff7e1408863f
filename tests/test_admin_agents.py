"""The admin as agents use it (issue 19): branded, ISO dates, opening on Pending, decided
requests read-only, approval leading to the "certificate issued" page; and who may not."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from requests_app import services
from requests_app.models import AuditEvent, Certificate, CertificateRequest
from tests.helpers.csrs import make_csr
from tests.helpers.mfa import login_verified

CHANGELIST = reverse("admin:requests_app_certificaterequest_changelist")
Status = CertificateRequest.Status


def change_url(req: CertificateRequest) -> str:
    return reverse("admin:requests_app_certificaterequest_change", args=[req.pk])


def submit(cn: str) -> CertificateRequest:
    return services.submit_request(
        profile="server", csr=make_csr(cn=cn), requester_email="ops@example.test"
    )


@pytest.fixture
def decided(ca, agent):
    """One request of each decided status."""
    complete, rejected, canceled = (
        submit("c.example.test"),
        submit("r.example.test"),
        submit("x.example.test"),
    )
    services.approve_request(complete, agent=agent)
    services.reject_request(rejected, agent=agent, reason="Not ours.")
    services.cancel_request(canceled, agent=agent)
    return [complete, rejected, canceled]


def test_header_and_title_name_the_portal_not_django(agent_client, ca):
    """Every admin page says ca-portal Certificate Manager, never Django administration."""
    html = agent_client.get(CHANGELIST).content.decode()
    assert "ca-portal Certificate Manager" in html
    assert "Django administration" not in html
    assert "Django site admin" not in html
    assert "ca_portal/admin.css" in html


def test_dates_are_iso_utc_in_the_list_and_on_the_change_page(agent_client, pending_request):
    """Submitted and audit times read 2026-11-30 20:46 UTC, as on the portal's pages."""
    stamp = pending_request.submitted_at.strftime("%Y-%m-%d %H:%M UTC")
    for url in (CHANGELIST, change_url(pending_request)):
        html = agent_client.get(url).content.decode()
        assert stamp in html, url
        assert not re.search(r"\b(a\.m\.|p\.m\.|midnight|noon)", html), url


def test_the_list_opens_on_pending_and_all_is_one_click_away(agent_client, decided, ca):
    """Without a choice only pending requests show; All shows the decided ones too, but not
    the unconfirmed; a search looks through every status."""
    pending = submit("p.example.test")
    response = agent_client.get(CHANGELIST)
    assert list(response.context["cl"].result_list) == [pending]
    html = response.content.decode()
    assert 'href="?status__exact=all"' in html
    assert re.search(r'class="selected">\s*<a href="\?status__exact=pending"', html)
    everything = agent_client.get(CHANGELIST, {"status__exact": "all"}).context["cl"]
    assert set(everything.result_list) == {pending, *decided}
    assert everything.result_count == 4
    found = agent_client.get(CHANGELIST, {"q": decided[0].display_id}).context["cl"]
    assert list(found.result_list) == [decided[0]]


def test_a_decided_request_offers_no_actions_and_no_save(agent_client, decided):
    """Complete, rejected and canceled requests' pages have no action menu and no Save."""
    for req in decided:
        html = agent_client.get(change_url(req)).content.decode()
        assert 'name="CHANGE_FORM-action"' not in html, req.status
        assert "Approve this request" not in html
        assert 'name="_save"' not in html and 'name="_continue"' not in html
    issued = reverse("agent:certificate_issued", args=[decided[0].public_id])
    assert f'href="{issued}"' in agent_client.get(change_url(decided[0])).content.decode()
    pending = submit("still.example.test")
    assert 'name="CHANGE_FORM-action"' in agent_client.get(change_url(pending)).content.decode()


def test_posting_to_a_decided_request_changes_nothing(agent_client, decided):
    """An action or field values posted to a decided request's page are refused and leave
    the request, its certificate and the audit log as they were."""
    complete = decided[0]
    before = (AuditEvent.objects.count(), Certificate.objects.count())
    for data in (
        {"CHANGE_FORM-action": "approve_selected", "_selected_action": [complete.pk]},
        {"CHANGE_FORM-action": "cancel_selected", "_selected_action": [complete.pk]},
        {"requester_email": "mallory@example.test", "status": "pending", "_save": "Save"},
    ):
        response = agent_client.post(change_url(complete), data)
        assert response.status_code in (400, 403), data
    statuses = [Status.COMPLETE, Status.REJECTED, Status.CANCELED]
    for req, status in zip(decided, statuses, strict=True):
        saved = CertificateRequest.objects.get(pk=req.pk)
        assert (saved.status, saved.requester_email) == (status, "ops@example.test")
    assert (AuditEvent.objects.count(), Certificate.objects.count()) == before


def test_approving_one_request_lands_on_its_certificate_issued_page(agent_client, ca):
    """From the list, one approved request goes on to the page with the delivery buttons."""
    req = submit("one.example.test")
    response = agent_client.post(
        CHANGELIST, {"action": "approve_selected", "_selected_action": [req.pk], "index": 0}
    )
    issued = reverse("agent:certificate_issued", args=[req.public_id])
    assert response.status_code == 302 and response.url == issued
    page = agent_client.get(issued)
    assert page.status_code == 200
    assert "Certificate issued" in page.content.decode()


def test_staff_without_the_agent_permission_cannot_approve(client, django_user_model, ca):
    """A staff member who is no agent gets no action and approves nothing by posting."""
    clerk = django_user_model.objects.create_user("clerk", "c@example.test", "x", is_staff=True)
    login_verified(client, clerk)
    req = submit("no.example.test")
    client.post(CHANGELIST, {"action": "approve_selected", "_selected_action": [req.pk]})
    client.post(
        change_url(req), {"CHANGE_FORM-action": "approve_selected", "_selected_action": [req.pk]}
    )
    req.refresh_from_db()
    assert req.status == Status.PENDING
    assert not Certificate.objects.exists()


def test_an_agent_without_the_second_factor_reaches_no_admin_page(client, agent, ca):
    """Password only: pages send to the second-factor page, posts are refused, nothing is
    approved."""
    client.force_login(agent)  # the password, not the second factor
    req = submit("mfa.example.test")
    for url in (CHANGELIST, change_url(req)):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/verify/" in response.url, url
    response = client.post(
        CHANGELIST, {"action": "approve_selected", "_selected_action": [req.pk], "index": 0}
    )
    assert response.status_code == 403
    req.refresh_from_db()
    assert req.status == Status.PENDING


def test_anonymous_visitors_are_sent_to_the_login(client, pending_request):
    """No session, no admin page."""
    response = client.get(change_url(pending_request))
    assert response.status_code == 302 and "login" in response.url
