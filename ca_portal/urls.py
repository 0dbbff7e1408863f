from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from delivery.tracking import tracking_urlpatterns
from requests_app.views.health import healthz

urlpatterns = [
    path("", include("requests_app.urls")),
    path("", include("requests_app.revocation.urls")),  # CRL distribution points, OCSP
    path("", include("requests_app.dogtag.urls")),  # Dogtag's end-entity servlets (certmonger)
    path("agent/deliveries/", include("delivery.urls")),
    path("agent/", include("requests_app.agent_urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    # Tracking webhooks of django-anymail: only with an ESP and ANYMAIL_WEBHOOK_SECRET.
    *tracking_urlpatterns(),
]
