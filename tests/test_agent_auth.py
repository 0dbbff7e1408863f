"""The session's second-factor mark: set only after login, for known methods."""

import pytest
from django.contrib.auth import get_user_model, login
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory

from requests_app import agent_auth


def _request(user=None):
    request = RequestFactory().get("/")
    request.session = SessionStore()
    from django.contrib.auth.models import AnonymousUser

    request.user = user or AnonymousUser()
    return request


@pytest.mark.django_db
def test_mark_after_login():
    user = get_user_model().objects.create_user("a", password="pw-123456789")
    request = _request()
    assert not agent_auth.is_verified(request)
    with pytest.raises(ValueError):
        agent_auth.mark_verified(request, "totp")  # nobody is logged in
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    assert not agent_auth.is_verified(request)
    agent_auth.mark_verified(request, "certificate")
    assert agent_auth.verified_by(request) == "certificate"
    with pytest.raises(ValueError):
        agent_auth.mark_verified(request, "sms")


@pytest.mark.django_db
def test_a_mark_for_another_account_or_malformed_counts_for_nothing():
    user = get_user_model().objects.create_user("b", password="pw-123456789")
    other = get_user_model().objects.create_user("c", password="pw-123456789")
    request = _request()
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session[agent_auth.SESSION_KEY] = "totp"
    assert not agent_auth.is_verified(request)
    request.session[agent_auth.SESSION_KEY] = {"user": other.pk, "method": "totp"}
    assert not agent_auth.is_verified(request)
    request.session[agent_auth.SESSION_KEY] = {"user": user.pk, "method": "sms"}
    assert not agent_auth.is_verified(request)
