"""Agents' accounts under /accounts/: login, the second factor, the security page, the
enrolment link; and the passkey ceremonies (namespace "otp_webauthn", which
django-otp-webauthn's template tags name) under /accounts/passkeys/."""

from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.i18n import JavaScriptCatalog

from .views import accounts

passkey_patterns = (
    [
        path(
            "registration/begin/",
            accounts.PasskeyRegistrationBegin.as_view(),
            name="credential-registration-begin",
        ),
        path(
            "registration/complete/",
            accounts.PasskeyRegistrationComplete.as_view(),
            name="credential-registration-complete",
        ),
        path(
            "authentication/begin/",
            accounts.PasskeyAuthenticationBegin.as_view(),
            name="credential-authentication-begin",
        ),
        path(
            "authentication/complete/",
            accounts.PasskeyAuthenticationComplete.as_view(),
            name="credential-authentication-complete",
        ),
        path(
            "jsi18n/",
            JavaScriptCatalog.as_view(packages=["django_otp_webauthn"]),
            name="js-i18n-catalog",
        ),
    ],
    "otp_webauthn",
)

urlpatterns = [
    path("login/", accounts.AgentLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("verify/", accounts.verify, name="agent_verify"),
    path("security/", accounts.security, name="agent_security"),
    path("enrol/<str:uidb64>/<str:token>/", accounts.enrol, name="agent_enrol"),
    path("passkeys/", include(passkey_patterns)),
]
