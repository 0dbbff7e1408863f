"""Agents' accounts: the login (password, then the second factor), the second-factor page,
the security page (enrol and remove TOTP devices and passkeys, new recovery codes), the
one-time enrolment link, and the passkey ceremonies (django-otp-webauthn's views, checked
and audited here).

The order of a login: password (django-axes counts failures) -> second factor (the same
counters) -> the page asked for. An agent without a device goes from the second-factor
page to the security page and can do nothing else until a device is confirmed."""

from __future__ import annotations

from base64 import b32encode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth.views import LoginView, redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods
from django_otp_webauthn import exceptions as webauthn_errors
from django_otp_webauthn import views as webauthn_views
from django_otp_webauthn.utils import rewrite_exceptions

from .. import agent_auth, login_throttle, services
from ..httputil import client_ip
from ..models import APPROVE_PERMISSION

LOCKED_TEMPLATE = "registration/locked_out.html"


def _next_url(request: HttpRequest) -> str:
    """The page to go on to: `next` if it is on this site, else the request queue."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return resolve_url(settings.LOGIN_REDIRECT_URL)


def _with_next(name: str, next_url: str) -> str:
    return f"{reverse(name)}?{urlencode({'next': next_url})}"


def _locked(request: HttpRequest) -> HttpResponse:
    context = {"minutes": settings.AGENT_LOGIN_LOCKOUT_MINUTES}
    return render(request, LOCKED_TEMPLATE, context, status=429)


def _may_manage_devices(request: HttpRequest) -> bool:
    user = request.user
    return user.is_authenticated and (
        user.is_staff or services.needs_second_factor(user) or user.has_perm(APPROVE_PERMISSION)
    )


def _verified_or_first_device(request: HttpRequest) -> bool:
    """A user may change devices with a verified session, or, having none, to enrol the
    first one right after the password."""
    return agent_auth.is_verified(request) or not services.has_second_factor(request.user)


def _passed(request: HttpRequest, method: str) -> None:
    """This session has passed the second factor: a new session key (the privilege grew),
    the mark, and the user's failure counters cleared."""
    request.session.cycle_key()
    agent_auth.mark_verified(request, method)
    login_throttle.clear_failures(request, request.user)


class AgentLoginView(LoginView):
    """Django's login; an account that owes a second factor goes on to the second-factor
    page, with the page it asked for."""

    def form_valid(self, form):
        auth_login(self.request, form.get_user())
        next_url = self.get_success_url()
        if services.needs_second_factor(self.request.user):
            return redirect(_with_next("agent_verify", next_url))
        return redirect(next_url)


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code from your authenticator app, or a recovery code",
        max_length=32,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True}),
    )


@never_cache
@sensitive_post_parameters("code")
@require_http_methods(["GET", "HEAD", "POST"])
def verify(request: HttpRequest) -> HttpResponse:
    """The second factor: a one-time code, a recovery code or a passkey."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    next_url = _next_url(request)
    user = request.user
    if agent_auth.is_verified(request) or not services.needs_second_factor(user):
        return redirect(next_url)
    if not services.has_second_factor(user):
        messages.info(request, "Set up a second factor for your account before you go on.")
        return redirect(_with_next("agent_security", next_url))
    if login_throttle.is_locked(request, user):
        return _locked(request)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            method = services.verify_second_factor(
                user, form.cleaned_data["code"], ip=client_ip(request)
            )
        except services.WrongSecondFactor as exc:
            login_throttle.count_failure(request, user)
            if login_throttle.is_locked(request, user):
                return _locked(request)
            form.add_error("code", exc.message)
        else:
            _passed(request, method)
            if method == "recovery":
                left = services.recovery_codes_left(user)
                messages.warning(
                    request,
                    f"You used a recovery code; {left} left. Make new ones on the security page "
                    "if you are running out.",
                )
            return redirect(next_url)
    return render(
        request,
        "accounts/verify.html",
        {
            "form": form,
            "next": next_url,
            "has_passkey": any(d.kind == "Passkey" for d in services.second_factor_devices(user)),
        },
    )


class TotpConfirmForm(forms.Form):
    device = forms.IntegerField(widget=forms.HiddenInput)
    name = forms.CharField(label="A name for this device", max_length=64, initial="Phone")
    code = forms.CharField(
        label="The 6-digit code the app shows now",
        max_length=12,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


@never_cache
@sensitive_post_parameters("code")
@require_http_methods(["GET", "HEAD", "POST"])
def security(request: HttpRequest) -> HttpResponse:
    """The agent's own devices: enrol and remove TOTP apps and passkeys, new recovery codes."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not _may_manage_devices(request):
        raise PermissionDenied("Only agents and staff have second-factor devices here.")
    if not _verified_or_first_device(request):
        if request.method in ("GET", "HEAD"):
            return redirect_to_login(request.get_full_path(), reverse("agent_verify"))
        raise PermissionDenied("Pass the second factor before you change your devices.")
    user, ip = request.user, client_ip(request)
    next_url = _next_url(request)
    context = {"next": next_url, "totp": None, "totp_form": None, "recovery_codes": None}
    action = request.POST.get("action", "") if request.method == "POST" else ""
    if action == "totp_begin":
        device = services.begin_totp_enrolment(user)
        context["totp"] = device
        context["totp_form"] = TotpConfirmForm(initial={"device": device.pk})
    elif action == "totp_confirm":
        form = TotpConfirmForm(request.POST)
        if form.is_valid():
            try:
                services.confirm_totp_device(
                    user,
                    form.cleaned_data["device"],
                    form.cleaned_data["code"],
                    name=form.cleaned_data["name"],
                    ip=ip,
                )
            except services.ServiceError as exc:
                form.add_error("code", exc.message)
            else:
                if not agent_auth.is_verified(request):
                    _passed(request, "totp")
                messages.success(request, "The authenticator app is set up.")
                return redirect(_with_next("agent_security", next_url))
        pending = services.pending_totp_device(user, form.data.get("device"))
        if pending is None:
            messages.error(request, "Start adding the authenticator app again.")
            return redirect(_with_next("agent_security", next_url))
        context["totp"], context["totp_form"] = pending, form
    if context["totp"] is not None:
        context["totp_secret"] = b32encode(context["totp"].bin_key).decode()
    elif action == "remove":
        try:
            name = services.remove_second_factor_device(user, request.POST.get("device", ""), ip=ip)
        except services.ServiceError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Removed “{name}”.")
        return redirect(_with_next("agent_security", next_url))
    elif action == "recovery":
        if not agent_auth.is_verified(request):
            raise PermissionDenied("Set up an app or a passkey before recovery codes.")
        context["recovery_codes"] = services.regenerate_recovery_codes(user, ip=ip)
    elif request.method == "POST":
        messages.error(request, "Unknown action.")
        return redirect(_with_next("agent_security", next_url))
    context |= {
        "devices": services.second_factor_devices(user),
        "codes_left": services.recovery_codes_left(user),
        "verified_by": agent_auth.verified_by(request),
        "needs_enrolment": not services.has_second_factor(user),
    }
    return render(request, "accounts/security.html", context)


class EnrolmentForm(forms.Form):
    password1 = forms.CharField(
        label="New password", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )
    password2 = forms.CharField(
        label="The password again",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self):
        data = super().clean()
        if data.get("password1") and data.get("password1") != data.get("password2"):
            raise forms.ValidationError("The two passwords differ.")
        return data


@never_cache
@sensitive_post_parameters("password1", "password2")
@require_http_methods(["GET", "HEAD", "POST"])
def enrol(request: HttpRequest, uidb64: str, token: str) -> HttpResponse:
    """The one-time link from `manage.py create_agent`: set the password, log in, and go on
    to enrol a second factor."""
    try:
        account = services.enrolment_link_user(uidb64, token)
    except services.EnrolmentLinkInvalid as exc:
        return render(request, "accounts/enrol.html", {"invalid": exc.message}, status=404)
    form = EnrolmentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.set_password_with_enrolment_link(
                uidb64, token, form.cleaned_data["password1"], ip=client_ip(request)
            )
        except services.EnrolmentLinkInvalid as exc:
            return render(request, "accounts/enrol.html", {"invalid": exc.message}, status=404)
        except services.ServiceError as exc:
            form.add_error("password1", exc.message)
        else:
            auth_login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("agent_security")
    return render(request, "accounts/enrol.html", {"form": form, "account": account})


# --- passkeys: django-otp-webauthn's JSON views, with this portal's checks and audit ---


class _AgentsOnly:
    def get_user(self):
        user = self.request.user
        return user if user.is_authenticated and _may_manage_devices(self.request) else None


class PasskeyRegistrationBegin(_AgentsOnly, webauthn_views.BeginCredentialRegistrationView):
    def _check_user_verified(self, user) -> None:
        if not _verified_or_first_device(self.request):
            raise webauthn_errors.NotVerified()


class PasskeyRegistrationComplete(_AgentsOnly, webauthn_views.CompleteCredentialRegistrationView):
    def _check_user_verified(self, user) -> None:
        if not _verified_or_first_device(self.request):
            raise webauthn_errors.NotVerified()

    def post(self, *args, **kwargs):
        request = self.request
        state = self.get_state()
        with rewrite_exceptions(logger=webauthn_views._get_pywebauthn_logger()):
            device = services.complete_passkey_registration(
                request.user,
                helper=self.get_helper(),
                state=state,
                data=request.data,
                ip=client_ip(request),
            )
        if not agent_auth.is_verified(request):
            _passed(request, "webauthn")  # the first device, just proven present
        return JsonResponse({"id": device.pk})


class PasskeyAuthenticationBegin(_AgentsOnly, webauthn_views.BeginCredentialAuthenticationView):
    def check_can_authenticate(self):
        if self.get_user() is None:
            raise webauthn_errors.NotAuthenticated()
        if login_throttle.is_locked(self.request, self.request.user):
            raise _LockedOut()


class _LockedOut(webauthn_errors.OTPWebAuthnApiError):
    status_code = 429
    default_detail = "Too many failed attempts: this account is locked for a while."
    default_code = "locked_out"


class PasskeyAuthenticationComplete(
    _AgentsOnly, webauthn_views.CompleteCredentialAuthenticationView
):
    def check_can_authenticate(self):
        if self.get_user() is None:
            raise webauthn_errors.NotAuthenticated()
        if login_throttle.is_locked(self.request, self.request.user):
            raise _LockedOut()

    def post(self, *args, **kwargs):
        request = self.request
        state = self.get_state()
        try:
            with rewrite_exceptions(logger=webauthn_views._get_pywebauthn_logger()):
                device = services.verify_passkey(
                    request.user,
                    helper=self.get_helper(),
                    state=state,
                    data=request.data,
                    ip=client_ip(request),
                )
        except services.ServiceError as exc:
            login_throttle.count_failure(request, request.user)
            raise webauthn_errors.CredentialDisabled(detail=exc.message) from None
        except Exception:
            login_throttle.count_failure(request, request.user)
            raise
        _passed(request, "webauthn")
        return JsonResponse({"id": device.pk, "redirect_url": _next_url(request)})
