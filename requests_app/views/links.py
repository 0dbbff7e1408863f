"""The signed retrieval link mailed to requesters."""

from urllib.parse import urlencode

from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from ..links import LinkError, certificate_for_token


@require_GET
def retrieve(request, token: str):
    """A genuine, unexpired link leads to its certificate; anything else reveals nothing."""
    try:
        cert = certificate_for_token(token)
    except LinkError:
        return render(request, "ee/link_invalid.html", status=404)
    req = cert.issued_request
    if req is not None and req.encrypted_private_key:
        # The link proves what the request ID proves (the mail names both): bring it along,
        # so the key's download form needs only the passphrase.
        url = reverse("certificate_detail", kwargs={"serial": cert.serial})
        return redirect(f"{url}?{urlencode({'request': req.public_id})}#key")
    return redirect("certificate_detail", serial=cert.serial)
