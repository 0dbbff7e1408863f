"""End-entity views (placeholder; being written)."""

from django.http import HttpResponse


def _todo(request, *args, **kwargs):
    return HttpResponse("not yet", status=501)


home = enroll = request_lookup = request_status = certificate_lookup = _todo
certificate_detail = certificate_download = ca_page = ca_certificate = _todo
