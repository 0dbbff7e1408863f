"""End-entity pages (anonymous)."""

from django.urls import path

from . import converters  # noqa: F401  (registers the "serial" path converter)
from .views import ee, links, mailbox, renewal

urlpatterns = [
    path("", ee.home, name="home"),
    path("enroll/<str:profile>/", ee.enroll, name="enroll"),
    path("enroll/<str:profile>/server-key/", ee.enroll_server_key, name="enroll_server_key"),
    path("requests/", ee.request_lookup, name="request_lookup"),
    path("requests/<str:public_id>/", ee.request_status, name="request_status"),
    path("requests/<str:public_id>/confirm/", mailbox.confirm_email, name="confirm_email"),
    path(
        "requests/<str:public_id>/confirm/<str:code>/",
        mailbox.confirm_email,
        name="confirm_email_link",
    ),
    path("certificates/", ee.certificate_lookup, name="certificate_lookup"),
    path("certificates/<serial:serial>/", ee.certificate_detail, name="certificate_detail"),
    path(
        "certificates/<serial:serial>/download/<str:fmt>/",
        ee.certificate_download,
        name="certificate_download",
    ),
    path("certificates/<serial:serial>/pkcs12/", ee.certificate_pkcs12, name="certificate_pkcs12"),
    path("certificates/<serial:serial>/import/", ee.certificate_import, name="certificate_import"),
    # Renewal from the certificate's page.
    path("certificates/<serial:serial>/renew/", renewal.renew, name="renew"),
    path(
        "certificates/<serial:serial>/renew/server-key/",
        renewal.renew_server_key,
        name="renew_server_key",
    ),
    path("retrieve/<str:token>/", links.retrieve, name="retrieve"),
    path("ca/", ee.ca_page, name="ca_page"),
    path("ca/<int:ca_id>/ca.cer", ee.ca_certificate, {"fmt": "der"}, name="ca_issuers"),
    path("ca/<int:ca_id>/download/<str:fmt>/", ee.ca_certificate, name="ca_certificate"),
    path("ca/<int:ca_id>/import/", ee.ca_import, name="ca_import"),
]
