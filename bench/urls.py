from django.http import HttpResponse
from django.urls import include, path


def trivial(request):
    """The least a Django view can do: the ceiling for any page on this server."""
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("bench/trivial/", trivial),
    path("", include("ca_portal.urls")),
]
