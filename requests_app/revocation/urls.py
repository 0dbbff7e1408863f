"""Revocation status for relying parties (anonymous): CRL distribution points and OCSP."""

from django.urls import path

from . import views as revocation

urlpatterns = [
    path("ca/<int:ca_id>/crl.crl", revocation.crl_download, {"fmt": "der"}, name="crl"),
    path("ca/<int:ca_id>/crl.pem", revocation.crl_download, {"fmt": "pem"}, name="crl_pem"),
    path("ocsp", revocation.ocsp_responder, name="ocsp"),
    path("ocsp/", revocation.ocsp_responder),
    path("ocsp/<path:encoded>", revocation.ocsp_responder, name="ocsp_get"),
]
