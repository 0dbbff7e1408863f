"""/healthz for load balancers: the database answers, the CA key opens, and whatever else
the apps registered (extensions.register_health_check) is fine."""

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .. import extensions, keys, pki
from ..models import CertificateAuthority


def database_check() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return None


def ca_key_check() -> str | None:
    try:
        ca = CertificateAuthority.objects.default()
        keys.backend_for(ca).check_usable(ca)
    except pki.CAError as exc:
        return f"error: {exc}"
    return None


@never_cache
@require_GET
def healthz(request):
    """200 with {"database": "ok", "ca_key": "ok", ...} when this node can serve and sign,
    else 503."""
    checks = {"database": database_check()}
    if checks["database"] is None:
        checks["ca_key"] = ca_key_check()
        checks |= extensions.run_health_checks()
    else:
        checks["ca_key"] = "unknown"
    answers = {name: "ok" if problem is None else problem for name, problem in checks.items()}
    healthy = all(problem is None for problem in checks.values())
    return JsonResponse(answers, status=200 if healthy else 503)
