"""Agent logins counted and audited: django-axes counts failed passwords (its backend) and,
through the functions here, failed second-factor codes under the same username and client
address, so guessing codes locks out exactly like guessing passwords. The receivers turn
Django's and axes' login signals into audit rows (through services)."""

from __future__ import annotations

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_credentials
from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from . import services
from .httputil import client_ip


def _credentials(user) -> dict:
    return get_credentials(user.get_username())


def is_locked(request: HttpRequest, user) -> bool:
    """Whether this user, or this client address, is locked out now."""
    return AxesProxyHandler.is_locked(request, _credentials(user))


def count_failure(request: HttpRequest, user) -> None:
    """Count one failed second-factor attempt against the user and the client address
    (axes locks both out at AGENT_LOGIN_FAILURE_LIMIT and sends user_locked_out)."""
    AxesProxyHandler.user_login_failed(
        sender=count_failure, credentials=_credentials(user), request=request
    )


def clear_failures(request: HttpRequest, user) -> None:
    """A login that passed both factors clears the user's failure count."""
    AxesProxyHandler.reset_attempts(username=user.get_username())


@receiver(user_logged_in, dispatch_uid="requests_app.audit_login")
def _audit_login(sender, request, user, **kwargs):
    services.record_login(user, ip=client_ip(request) if request is not None else None)


@receiver(user_logged_out, dispatch_uid="requests_app.audit_logout")
def _audit_logout(sender, request, user, **kwargs):
    if user is not None:
        services.record_logout(user, ip=client_ip(request) if request is not None else None)


@receiver(user_login_failed, dispatch_uid="requests_app.audit_login_failure")
def _audit_login_failure(sender, credentials, request=None, **kwargs):
    if sender is count_failure:
        return  # a second-factor failure, audited by verify_second_factor already
    username = str(credentials.get("username") or "")
    services.record_login_failure(username, ip=client_ip(request) if request is not None else None)


@receiver(user_locked_out, dispatch_uid="requests_app.audit_lockout")
def _audit_lockout(sender, request, username=None, ip_address=None, **kwargs):
    services.record_lockout(username, ip=ip_address)
