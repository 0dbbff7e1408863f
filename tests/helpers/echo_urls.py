"""A URLconf with one view that says who the portal thinks is asking (for proxy tests)."""

from django.http import JsonResponse
from django.urls import path

from requests_app.httputil import client_ip, from_trusted_proxy


def echo(request):
    return JsonResponse({"ip": client_ip(request), "trusted": from_trusted_proxy(request)})


urlpatterns = [path("echo-ip/", echo)]
