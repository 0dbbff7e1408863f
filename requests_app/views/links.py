"""The signed retrieval link mailed to requesters."""

from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from ..links import LinkError, certificate_for_token


@require_GET
def retrieve(request, token: str):
    """A genuine, unexpired link leads to its certificate; anything else reveals nothing."""
    try:
        cert = certificate_for_token(token)
    except LinkError:
        return render(request, "ee/link_invalid.html", status=404)
    return redirect("certificate_detail", serial=cert.serial)
