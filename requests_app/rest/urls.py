"""Dogtag's REST paths, exactly as the client builds them (no trailing slash, no redirect:
a redirect turns the client's POST into a GET and drops its Authorization)."""

from django.urls import path, re_path

from . import agent_views as agent
from . import views

ID = r"(?P<{}>[^/]{{1,100}})"

urlpatterns = [
    path("pki/rest/info", views.pki_info, name="rest_pki_info"),
    path("ca/rest/info", views.ca_info, name="rest_ca_info"),
    path("ca/rest/certrequests/profiles", views.profile_list, name="rest_profiles"),
    re_path(
        r"^ca/rest/certrequests/profiles/" + ID.format("profile_id") + "$",
        views.profile_template,
        name="rest_profile",
    ),
    path("ca/rest/certrequests", views.enroll, name="rest_enroll"),
    re_path(
        r"^ca/rest/certrequests/" + ID.format("request_id") + "$",
        views.request_status,
        name="rest_request",
    ),
    path("ca/rest/certs/search", views.certificate_search, name="rest_cert_search"),
    path("ca/rest/certs", views.certificate_search, name="rest_certs"),
    re_path(r"^ca/rest/certs/" + ID.format("serial") + "$", views.certificate, name="rest_cert"),
    # Agents
    path("ca/rest/agent/certrequests", agent.request_list, name="rest_agent_requests"),
    re_path(
        r"^ca/rest/agent/certrequests/" + ID.format("request_id") + "$",
        agent.request_review,
        name="rest_agent_request",
    ),
    re_path(
        r"^ca/rest/agent/certrequests/" + ID.format("request_id") + r"/(?P<action>[a-z-]{1,20})$",
        agent.request_action,
        name="rest_agent_request_action",
    ),
    re_path(
        r"^ca/rest/agent/certs/" + ID.format("serial") + "$",
        agent.certificate_review,
        name="rest_agent_cert",
    ),
    re_path(
        r"^ca/rest/agent/certs/" + ID.format("serial") + r"/(?P<action>[a-z-]{1,20})$",
        agent.certificate_action,
        name="rest_agent_cert_action",
    ),
]
