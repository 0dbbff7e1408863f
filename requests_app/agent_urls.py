"""Agent pages (permission requests_app.approve_certificaterequest)."""

from django.urls import path

from . import converters  # noqa: F401  (registers the "serial" path converter)
from .revocation import views as revocation
from .views import acme_accounts, agent, agent_certificates, expiring, renewal

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
    path(
        "requests/<str:public_id>/revoke-superseded/",
        renewal.revoke_superseded,
        name="revoke_superseded",
    ),
    path("certificates/<serial:serial>/", revocation.certificate, name="certificate"),
    path("certificates/<serial:serial>/revoke/", revocation.revoke, name="revoke"),
    path("certificates/<serial:serial>/release/", revocation.release_hold, name="release_hold"),
    # The agent's own login certificates.
    path("me/certificates/", agent_certificates.my_certificates, name="my_certificates"),
    path("me/certificates/csr/", agent_certificates.request_with_csr, name="request_with_csr"),
    path(
        "me/certificates/server-key/",
        agent_certificates.request_with_server_key,
        name="request_with_server_key",
    ),
    path(
        "me/certificates/<serial:serial>/unlink/",
        agent_certificates.unlink,
        name="unlink_certificate",
    ),
    # ACME: agent-approved accounts (external account bindings).
    path("acme/", acme_accounts.binding_list, name="acme_accounts"),
    path("acme/new/", acme_accounts.create_binding, name="acme_create_binding"),
    path("acme/<str:kid>/revoke/", acme_accounts.revoke_binding, name="acme_revoke_binding"),
]
