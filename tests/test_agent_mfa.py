"""Agents' second factor: every agent and admin URL refuses a session that has not passed it,
TOTP and recovery codes (wrong, replayed and reused codes refused), enrolment after the
password, the security page's refusals, the login and code-guessing lockout, the enrolment
link, the break-glass reset, and the DEBUG-only switch."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from requests_app import agent_auth, services
from requests_app.models import AuditEvent, CertificateRequest
from tests.helpers.mfa import add_totp_device, login_verified, next_totp_code, totp_code

PASSWORD = "agent-pass-123"  # the agent fixture's
VERIFY = "/accounts/verify/"


def _actions(**filters) -> list[str]:
    """The audit actions about logins and devices (the agent fixture's grant of agent access
    is audited too, and is not what these tests are about)."""
    rows = AuditEvent.objects.filter(**filters).exclude(action__startswith="agent_access_")
    return list(rows.values_list("action", flat=True))


def _password_login(client: Client, username: str = "agent1", password: str = PASSWORD, **extra):
    return client.post(reverse("login"), {"username": username, "password": password}, **extra)


def _session_verified(client: Client) -> str | None:
    mark = client.session.get(agent_auth.SESSION_KEY)
    return mark.get("method") if isinstance(mark, dict) else None


# --- every agent and admin URL, walked from the URL resolver ------------------------------

#: A value for each URL argument that the agent and admin patterns take.
ARGUMENTS = {
    "public_id": "0000-0000-0000",
    "serial": "0a1b2c3d",
    "delivery_id": "1",
    "object_id": "1",
    "id": "1",
    "pk": "1",
    "content_type_id": "1",
    "app_label": "requests_app",
    "url": "nowhere/",
    "kid": "eab-0000",  # ACME bindings (agent/acme/<kid>/revoke/)
}


def _patterns(resolver: URLResolver, prefix: str = ""):
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _patterns(entry, route)
        else:
            yield route, entry


def _concrete(route: str) -> str:
    """A path for a route like "agent/requests/<str:public_id>/" or an admin regex."""
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: ARGUMENTS[m.group(1)], route)
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: ARGUMENTS[m.group(1)], path)
    return "/" + path.replace("^", "").replace("$", "").replace("\\Z", "")


def agent_and_admin_urls() -> list[str]:
    urls = set()
    for route, entry in _patterns(get_resolver()):
        if not isinstance(entry, URLPattern):
            continue
        if route.startswith(("agent/", "admin/")):
            urls.add(_concrete(route))
    return sorted(urls)


URLS = agent_and_admin_urls()
ADMIN_LOGOUT = "/admin/logout/"


def test_the_walk_finds_the_surfaces():
    """The walk sees the queue, decisions, revocation, delivery, admin pages and actions."""
    for expected in (
        "/agent/",
        "/agent/requests/0000-0000-0000/approve/",
        "/agent/certificates/0a1b2c3d/revoke/",
        "/agent/deliveries/send/0a1b2c3d/",
        "/admin/",
        "/admin/requests_app/certificaterequest/",
        "/admin/requests_app/certificaterequest/1/change/",
        "/admin/nowhere/",
    ):
        assert expected in URLS
    assert len(URLS) > 40


@pytest.mark.parametrize("url", [u for u in URLS if u != ADMIN_LOGOUT])
def test_every_agent_and_admin_url_refuses_a_session_without_the_second_factor(
    client, agent, pending_request, url
):
    """A password-only agent session gets the second-factor page on GET and 403 on POST."""
    add_totp_device(agent)
    client.force_login(agent)
    got = client.get(url)
    if got.status_code != 403:
        assert got.status_code == 302, (url, got.status_code)
        assert got["Location"].startswith(VERIFY), (url, got["Location"])
    posted = client.post(url, {"action": "approve_selected", "_selected_action": ["1"]})
    assert posted.status_code == 403, (url, posted.status_code)
    pending_request.refresh_from_db()
    assert pending_request.status == CertificateRequest.Status.PENDING


def test_admin_logout_still_works_without_the_second_factor(client, agent):
    """Leaving is allowed: the admin's logout ends the half-logged-in session."""
    client.force_login(agent)
    client.post(ADMIN_LOGOUT)
    assert "_auth_user_id" not in client.session


def test_a_verified_session_gets_in(agent_client, agent, pending_request):
    """The same URLs open once the session passed the second factor."""
    assert agent_client.get("/agent/").status_code == 200
    assert agent_client.get("/admin/requests_app/certificaterequest/").status_code == 200


def test_a_direct_approve_post_without_the_second_factor_changes_nothing(
    client, agent, pending_request
):
    """The approve action checks on the server: no certificate, no audit row, still pending."""
    add_totp_device(agent)
    _password_login(client)
    url = reverse("agent:approve", args=[pending_request.public_id])
    assert client.post(url, {"validity_days": "", "note": ""}).status_code == 403
    pending_request.refresh_from_db()
    assert pending_request.status == CertificateRequest.Status.PENDING
    assert "request_approved" not in _actions()


def test_admin_action_without_the_second_factor_changes_nothing(client, agent, pending_request):
    """An admin action posted by a password-only session is refused before it runs."""
    add_totp_device(agent)
    _password_login(client)
    response = client.post(
        reverse("admin:requests_app_certificaterequest_changelist"),
        {"action": "approve_selected", "_selected_action": [pending_request.pk]},
    )
    assert response.status_code == 403
    pending_request.refresh_from_db()
    assert pending_request.status == CertificateRequest.Status.PENDING


def test_admin_login_leads_to_the_second_factor(client, agent):
    """A password through the admin's own login form still ends on the second-factor page."""
    add_totp_device(agent)
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "agent1", "password": PASSWORD}, follow=True
    )
    assert response.redirect_chain[-1][0].startswith(VERIFY)
    assert client.get("/admin/login/")["Location"].startswith(VERIFY)


# --- TOTP and recovery codes ----------------------------------------------------------------


@pytest.fixture
def no_device_throttle(settings):
    """django-otp also slows a device down after a wrong code (1 s, 2 s, ...); these tests
    type the right code at once, so they switch that delay off (django-axes still counts)."""
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    settings.OTP_STATIC_THROTTLE_FACTOR = 0


def test_a_wrong_code_slows_the_device_down(client, agent):
    """Right after a wrong code even the right one waits (django-otp's device throttle)."""
    device = add_totp_device(agent)
    _password_login(client)
    client.post(VERIFY, {"code": f"{(int(totp_code(device)) + 1) % 1_000_000:06d}"})
    assert client.post(VERIFY, {"code": totp_code(device)}).status_code == 200
    assert _session_verified(client) is None


def test_totp_login_wrong_code_then_right_code(client, agent, no_device_throttle):
    """Password, then a wrong code (refused, audited), then the app's code: verified."""
    device = add_totp_device(agent)
    response = _password_login(client)
    assert response["Location"].startswith(VERIFY)
    assert _session_verified(client) is None
    wrong = f"{(int(totp_code(device)) + 1) % 1_000_000:06d}"
    page = client.post(VERIFY, {"code": wrong, "next": "/agent/"})
    assert page.status_code == 200
    assert "not right" in page.content.decode()
    assert _session_verified(client) is None
    ok = client.post(VERIFY, {"code": totp_code(device), "next": "/agent/"})
    assert ok.status_code == 302 and ok["Location"] == "/agent/"
    assert _session_verified(client) == "totp"
    assert _actions() == [
        "agent_login",
        "agent_second_factor_failed",
        "agent_second_factor_passed",
    ]
    assert AuditEvent.objects.filter(action="agent_login").get().ip == "127.0.0.1"


def test_a_totp_code_cannot_be_replayed(client, agent):
    """The code that passed once is refused in the next login, even within its 30 s."""
    device = add_totp_device(agent)
    code = totp_code(device)
    _password_login(client)
    assert client.post(VERIFY, {"code": code})["Location"] == reverse("agent:request_list")
    client.post(reverse("logout"))
    other = Client()
    _password_login(other)
    replay = other.post(VERIFY, {"code": code})
    assert replay.status_code == 200
    assert _session_verified(other) is None


def test_the_verified_mark_does_not_survive_logout_or_serve_another_account(
    client, agent, django_user_model
):
    """Logging out ends the mark; a new login starts without it."""
    device = add_totp_device(agent)
    _password_login(client)
    client.post(VERIFY, {"code": totp_code(device)})
    client.post(reverse("logout"))
    _password_login(client)
    assert _session_verified(client) is None
    assert client.get("/agent/")["Location"].startswith(VERIFY)


def test_recovery_codes_are_single_use_and_regenerating_voids_the_old(
    client, agent, no_device_throttle
):
    """A recovery code passes once; a second use and every code of an earlier set fail."""
    add_totp_device(agent)
    login_verified(client, agent)
    first = client.post(reverse("agent_security"), {"action": "recovery"})
    old_codes = first.context["recovery_codes"]
    page = client.post(reverse("agent_security"), {"action": "recovery"})
    codes = page.context["recovery_codes"]
    assert len(codes) == 10 and not set(codes) & set(old_codes)
    assert codes[0] in page.content.decode()
    assert client.get(reverse("agent_security")).context["recovery_codes"] is None  # shown once

    for attempt, code, passes in [
        (1, old_codes[0], False),
        (2, codes[0].upper(), True),  # typed in capitals, still the code
        (3, codes[0], False),
    ]:
        fresh = Client()
        _password_login(fresh)
        fresh.post(VERIFY, {"code": code})
        assert (_session_verified(fresh) == "recovery") is passes, attempt
    assert StaticToken.objects.filter(device__user=agent).count() == 9
    assert "agent_recovery_codes_generated" in _actions()


# --- enrolment after the password ---------------------------------------------------------


def test_an_agent_without_a_device_must_enrol_before_anything_else(
    client, agent, pending_request, no_device_throttle
):
    """Password only: the queue sends to the second-factor page, which sends to enrolment;
    approvals are refused; after confirming an app's code the queue opens."""
    _password_login(client)
    step = client.get("/agent/")
    assert step["Location"].startswith(VERIFY)
    enrol = client.get(step["Location"])
    assert enrol["Location"].startswith(reverse("agent_security"))
    url = reverse("agent:approve", args=[pending_request.public_id])
    assert client.post(url, {}).status_code == 403

    begun = client.post(reverse("agent_security"), {"action": "totp_begin"})
    device = begun.context["totp"]
    assert not device.confirmed
    html = begun.content.decode()
    assert "otpauth://totp/ca-portal%3Aagent1?secret=" in html
    assert begun.context["totp_secret"] in html
    bad = client.post(
        reverse("agent_security"),
        {"action": "totp_confirm", "device": device.pk, "name": "Phone", "code": "000000"},
    )
    assert bad.status_code == 200 and "not right" in bad.content.decode()
    assert client.get("/agent/").status_code == 302
    good = client.post(
        reverse("agent_security"),
        {"action": "totp_confirm", "device": device.pk, "name": "Phone", "code": totp_code(device)},
    )
    assert good.status_code == 302
    assert _session_verified(client) == "totp"
    assert client.get("/agent/").status_code == 200
    assert "agent_device_enrolled" in _actions()


def test_a_password_alone_cannot_add_or_remove_devices_of_an_enrolled_agent(client, agent):
    """Who knows only the password cannot add their own app, a passkey or recovery codes,
    nor remove the agent's device: the security page asks for the second factor first."""
    device = add_totp_device(agent)
    _password_login(client)
    assert client.get(reverse("agent_security"))["Location"].startswith(VERIFY)
    for data in (
        {"action": "totp_begin"},
        {"action": "recovery"},
        {"action": "remove", "device": f"totp:{device.pk}"},
    ):
        assert client.post(reverse("agent_security"), data).status_code == 403
    begin = client.post(reverse("otp_webauthn:credential-registration-begin"))
    assert begin.status_code == 403
    assert TOTPDevice.objects.filter(user=agent).count() == 1
    assert not StaticToken.objects.exists()


def test_removing_a_device_is_audited_and_only_ones_own(client, agent, django_user_model):
    """An agent removes their own device; another user's device ID is refused."""
    other = django_user_model.objects.create_user("agent2", password="x" * 12, is_staff=True)
    theirs = add_totp_device(other)
    mine = add_totp_device(agent)
    login_verified(client, agent)
    client.post(reverse("agent_security"), {"action": "remove", "device": f"totp:{theirs.pk}"})
    assert TOTPDevice.objects.filter(pk=theirs.pk).exists()
    client.post(reverse("agent_security"), {"action": "remove", "device": f"totp:{mine.pk}"})
    assert not TOTPDevice.objects.filter(pk=mine.pk).exists()
    removed = AuditEvent.objects.get(action="agent_device_removed")
    assert (removed.actor, removed.details["kind"]) == (agent, "totp")


def test_the_security_page_is_not_for_requesters(client, django_user_model):
    """A logged-in user who is neither staff nor agent has no devices to manage here."""
    client.force_login(django_user_model.objects.create_user("someone", password="x" * 12))
    assert client.get(reverse("agent_security")).status_code == 403


def test_passkey_authentication_needs_a_logged_in_agent(client, agent):
    """Passkeys are a second factor only: no ceremony starts without the password step."""
    response = client.post(reverse("otp_webauthn:credential-authentication-begin"))
    assert response.status_code == 403
    bogus = client.post(
        reverse("otp_webauthn:credential-authentication-complete"),
        data="{}",
        content_type="application/json",
    )
    assert bogus.status_code == 403
    _password_login(client)
    forged = client.post(
        reverse("otp_webauthn:credential-authentication-complete"),
        data='{"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {}}',
        content_type="application/json",
    )
    assert forged.status_code == 400  # no ceremony was begun: no state to check against
    assert _session_verified(client) is None


# --- throttling: passwords and codes ------------------------------------------------------


def test_forty_wrong_passwords_then_the_right_one_is_locked_out(client, agent, settings):
    """The login flood: after AGENT_LOGIN_FAILURE_LIMIT failures even the right password is
    refused, every failure and the lockout are audited with the client address."""
    for _ in range(40):
        _password_login(client, password="wrong-guess")
    response = _password_login(client)
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    failures = AuditEvent.objects.filter(action="agent_login_failed")
    assert failures.count() == 41
    assert set(failures.values_list("details__username", flat=True)) == {"agent1"}
    lockout = AuditEvent.objects.filter(action="agent_locked_out").first()
    assert lockout.ip == "127.0.0.1" and lockout.details["username"] == "agent1"
    assert "agent_login" not in _actions()


def test_the_lockout_covers_the_username_from_any_address(agent, settings):
    """Guesses spread over many addresses still lock the account."""
    for i in range(settings.AGENT_LOGIN_FAILURE_LIMIT):
        _password_login(Client(REMOTE_ADDR=f"198.51.100.{i + 1}"), password="wrong-guess")
    fresh = Client(REMOTE_ADDR="203.0.113.9")
    assert _password_login(fresh).status_code == 429


def test_code_guessing_locks_out_too(client, agent, settings, no_device_throttle):
    """Wrong codes count with wrong passwords: at the limit the right code is refused."""
    device = add_totp_device(agent)
    _password_login(client)
    for _ in range(settings.AGENT_LOGIN_FAILURE_LIMIT):
        client.post(VERIFY, {"code": "123456" if totp_code(device) != "123456" else "654321"})
    locked = client.post(VERIFY, {"code": totp_code(device)})
    assert locked.status_code == 429
    assert _session_verified(client) is None
    assert client.get("/agent/")["Location"].startswith(VERIFY)
    actions = _actions()
    assert actions.count("agent_second_factor_failed") == settings.AGENT_LOGIN_FAILURE_LIMIT
    assert "agent_locked_out" in actions


def test_passing_both_factors_clears_the_failures(client, agent, settings):
    """A few typos and then a full login start the count again."""
    device = add_totp_device(agent)
    for _ in range(settings.AGENT_LOGIN_FAILURE_LIMIT - 1):
        _password_login(client, password="typo")
    _password_login(client)
    client.post(VERIFY, {"code": next_totp_code(device)})
    assert _session_verified(client) == "totp"
    client.post(reverse("logout"))
    _password_login(client, password="typo")
    assert _password_login(client).status_code == 302


# --- create_agent's enrolment link and reset_agent_mfa --------------------------------------


def _create_agent(name: str = "erin") -> str:
    out = io.StringIO()
    call_command("create_agent", name, email=f"{name}@example.test", stdout=out)
    return re.search(r"http://testserver(/accounts/enrol/\S+/)", out.getvalue()).group(1)


def test_create_agent_prints_a_single_use_enrolment_link(client, db, django_user_model):
    """The link sets the password once and leads to enrolment; used again it is refused."""
    path = _create_agent()
    user = django_user_model.objects.get(username="erin")
    assert not user.has_usable_password()
    assert client.get(path).status_code == 200
    response = client.post(path, {"password1": "erin-new-pass-1", "password2": "erin-new-pass-1"})
    assert response["Location"] == reverse("agent_security")
    user.refresh_from_db()
    assert user.check_password("erin-new-pass-1")
    assert client.get("/agent/")["Location"].startswith(VERIFY)  # enrol first
    again = Client().post(path, {"password1": "mallory-pass-99", "password2": "mallory-pass-99"})
    assert again.status_code == 404
    user.refresh_from_db()
    assert user.check_password("erin-new-pass-1")
    assert "agent_enrolment_link_used" in _actions()


def test_an_expired_or_tampered_enrolment_link_is_refused(client, db, settings):
    """Past AGENT_ENROLMENT_LINK_HOURS, or with a changed token, the link opens nothing."""
    path = _create_agent()
    assert client.get(path[:-3] + "xx/").status_code == 404
    settings.AGENT_ENROLMENT_LINK_HOURS = -1
    assert client.get(path).status_code == 404


def test_reset_agent_mfa_removes_every_device_and_is_audited(client, agent):
    """Break glass: the agent's devices are gone and the next login must enrol again."""
    add_totp_device(agent)
    services.regenerate_recovery_codes(agent, ip=None)
    out = io.StringIO()
    call_command("reset_agent_mfa", "agent1", reason="lost phone", stdout=out)
    assert "Removed 2 second-factor device(s)" in out.getvalue()
    assert not services.has_second_factor(agent)
    event = AuditEvent.objects.get(action="agent_mfa_reset")
    assert event.details == {"username": "agent1", "devices": 2, "reason": "lost phone"}
    _password_login(client)
    assert client.get(VERIFY)["Location"].startswith(reverse("agent_security"))
    with pytest.raises(CommandError, match="no user is named 'nobody'"):
        call_command("reset_agent_mfa", "nobody", stdout=io.StringIO())


# --- the development switch -----------------------------------------------------------------


def test_without_mfa_in_development_every_page_says_so(client, agent, settings):
    """AGENT_REQUIRE_MFA=False (DEBUG only): the queue opens after the password, under a
    banner on the agent pages and the admin."""
    settings.AGENT_REQUIRE_MFA = False
    assert _password_login(client)["Location"] == reverse("agent:request_list")
    page = client.get("/agent/")
    assert page.status_code == 200
    assert "without a second factor" in page.content.decode()
    assert "without a second factor" in client.get("/admin/").content.decode()


def test_with_mfa_on_there_is_no_banner(agent_client):
    assert "without a second factor" not in agent_client.get("/agent/").content.decode()


def test_production_refuses_to_switch_mfa_off(tmp_path):
    """AGENT_REQUIRE_MFA=False with DEBUG off stops the process."""
    from tests.test_settings import _django_check

    result = _django_check(
        DEBUG="False",
        ALLOWED_HOSTS="ca.example.test",
        SECRET_KEY="k" * 60,
        CA_KEY_PASSPHRASE="p" * 20,
        AGENT_REQUIRE_MFA="False",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    assert result.returncode != 0
    assert "AGENT_REQUIRE_MFA=False is allowed only with DEBUG=True" in result.stderr


def test_the_admin_site_is_the_guarded_one():
    """admin.site (what every ModelAdmin registers with) is the second-factor site."""
    from requests_app.admin_site import AgentAdminSite

    assert isinstance(admin.site, AgentAdminSite)
