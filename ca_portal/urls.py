from django.contrib import admin
from django.urls import include, path

from delivery.tracking import tracking_urlpatterns
from requests_app.rest.openapi import openapi_json
from requests_app.views.agent_certificates import certificate_login
from requests_app.views.health import healthz

urlpatterns = [
    path("ca/rest/openapi.json", openapi_json, name="rest_openapi"),  # the REST API described
    path("", include("requests_app.urls")),
    path("", include("requests_app.revocation.urls")),  # CRL distribution points, OCSP
    path("", include("requests_app.dogtag.urls")),  # Dogtag's end-entity servlets (certmonger)
    path("", include("requests_app.rest.urls")),  # Dogtag's REST API (/pki/rest, /ca/rest)
    path("acme/", include("requests_app.acme.urls")),  # ACME (RFC 8555): certbot and friends
    path("agent/deliveries/", include("delivery.urls")),
    path("agent/", include("requests_app.agent_urls")),
    path("accounts/login/certificate/", certificate_login, name="certificate_login"),
    path("accounts/", include("requests_app.account_urls")),  # login, second factor, devices
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    # Tracking webhooks of django-anymail: only with an ESP and ANYMAIL_WEBHOOK_SECRET.
    *tracking_urlpatterns(),
]

# Unknown paths under /ca/rest/ and /pki/rest/ answer Dogtag's JSON; elsewhere Django's page.
handler404 = "requests_app.rest.views.page_not_found"
