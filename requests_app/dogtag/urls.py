"""Dogtag's servlet paths (certmonger: -E http://HOST/ca/ee/ca); extra slashes tolerated."""

from django.urls import re_path

from . import views as dogtag

EE = r"^[/]*ca/+ee/+ca/+"  # [/]*: a leading double slash, without urls.W002
AGENT = r"^[/]*ca/+(?:agent|ee)/+ca/+"

urlpatterns = [
    re_path(EE + r"profileSubmit/*$", dogtag.profile_submit, name="dogtag_profile_submit"),
    re_path(EE + r"checkRequest/*$", dogtag.check_request, name="dogtag_check_request"),
    re_path(
        EE + r"displayCertFromRequest/*$",
        dogtag.display_cert_from_request,
        name="dogtag_display_cert",
    ),
    re_path(EE + r"profileList/*$", dogtag.profile_list, name="dogtag_profile_list"),
    re_path(
        EE + r"profileSubmitSSLClient/*$",
        dogtag.profile_submit_ssl_client,
        name="dogtag_profile_submit_ssl_client",
    ),
    re_path(AGENT + r"profileReview/*$", dogtag.agent_servlet, name="dogtag_profile_review"),
    re_path(AGENT + r"profileProcess/*$", dogtag.agent_servlet, name="dogtag_profile_process"),
]
