"""Agent views (placeholder; being written)."""

from django.http import HttpResponse


def _todo(request, *args, **kwargs):
    return HttpResponse("not yet", status=501)


request_list = find = request_detail = approve = reject = cancel = certificate_issued = _todo
