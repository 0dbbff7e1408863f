"""Agent pages (permission requests_app.approve_certificaterequest)."""

from django.urls import path

from .revocation import views as revocation
from .views import agent, agent_certificates, expiring

app_name = "agent"

urlpatterns = [
    path("", agent.request_list, name="request_list"),
    path("find/", agent.find, name="find"),
    path("expiring/", expiring.expiring, name="expiring"),
    path("requests/<str:public_id>/", agent.request_detail, name="request_detail"),
    path("requests/<str:public_id>/approve/", agent.approve, name="approve"),
    path("requests/<str:public_id>/reject/", agent.reject, name="reject"),
    path("requests/<str:public_id>/cancel/", agent.cancel, name="cancel"),
    path("requests/<str:public_id>/issued/", agent.certificate_issued, name="certificate_issued"),
    path("certificates/<str:serial>/", revocation.certificate, name="certificate"),
    path("certificates/<str:serial>/revoke/", revocation.revoke, name="revoke"),
    path("certificates/<str:serial>/release/", revocation.release_hold, name="release_hold"),
    # The agent's own login certificates.
    path("me/certificates/", agent_certificates.my_certificates, name="my_certificates"),
    path("me/certificates/csr/", agent_certificates.request_with_csr, name="request_with_csr"),
    path(
        "me/certificates/server-key/",
        agent_certificates.request_with_server_key,
        name="request_with_server_key",
    ),
    path(
        "me/certificates/<str:serial>/unlink/",
        agent_certificates.unlink,
        name="unlink_certificate",
    ),
]
