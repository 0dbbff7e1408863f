"""/healthz for load balancers: the database answers and the CA key opens."""

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .. import keys, pki
from ..models import CertificateAuthority


@never_cache
@require_GET
def healthz(request):
    """200 with {"database": "ok", "ca_key": "ok"} when this node can serve and sign, else 503."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    if checks["database"] == "ok":
        try:
            ca = CertificateAuthority.objects.default()
            keys.backend_for(ca).check_usable(ca)
            checks["ca_key"] = "ok"
        except pki.CAError as exc:
            checks["ca_key"] = f"error: {exc}"
    else:
        checks["ca_key"] = "unknown"
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(checks, status=200 if healthy else 503)
