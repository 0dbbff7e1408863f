"""End-entity pages (anonymous)."""

from django.urls import path

from .views import ee, links

urlpatterns = [
    path("", ee.home, name="home"),
    path("enroll/<str:profile>/", ee.enroll, name="enroll"),
    path("requests/", ee.request_lookup, name="request_lookup"),
    path("requests/<str:public_id>/", ee.request_status, name="request_status"),
    path("certificates/", ee.certificate_lookup, name="certificate_lookup"),
    path("certificates/<str:serial>/", ee.certificate_detail, name="certificate_detail"),
    path(
        "certificates/<str:serial>/download/<str:fmt>/",
        ee.certificate_download,
        name="certificate_download",
    ),
    path("retrieve/<str:token>/", links.retrieve, name="retrieve"),
    path("ca/", ee.ca_page, name="ca_page"),
    path("ca/<int:ca_id>/ca.cer", ee.ca_certificate, {"fmt": "der"}, name="ca_issuers"),
    path("ca/<int:ca_id>/download/<str:fmt>/", ee.ca_certificate, name="ca_certificate"),
]
