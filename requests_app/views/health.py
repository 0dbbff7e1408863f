"""/healthz for load balancers: the database answers, the CA key opens, and whatever else
the apps registered (extensions.register_health_check) is fine.

Anonymous callers learn only ok or failing (HTTP 200 or 503); staff, and callers with the
HEALTHZ_TOKEN as a bearer token, also see each check's answer. No answer names a key file,
a path or a setting: the full reason of a CA key failure goes to the log."""

import hmac
import logging

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .. import extensions, keys, pki
from ..models import CertificateAuthority, NoCAError

logger = logging.getLogger(__name__)


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
    except NoCAError as exc:
        return f"error: {exc}"
    try:
        keys.backend_for(ca).check_usable(ca)
    except pki.CAError as exc:
        logger.error("healthz: the key of CA %r is not usable: %s", ca.name, exc)
        return f"error: the key of CA {ca.name!r} cannot be used to sign (see the server log)"
    return None


def may_see_details(request: HttpRequest) -> bool:
    """A caller presenting HEALTHZ_TOKEN as `Authorization: Bearer <token>`, or staff."""
    token = settings.HEALTHZ_TOKEN
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    presented_ok = hmac.compare_digest(presented.strip().encode(), token.encode())
    if token and scheme.lower() == "bearer" and presented_ok:
        return True
    try:
        return request.user.is_authenticated and request.user.is_staff
    except DatabaseError:  # sessions live in the database that is failing: say less
        return False


@never_cache
@require_GET
def healthz(request):
    """200 {"status": "ok"} when this node can serve and sign, else 503 {"status": "failing"};
    with details ({"database": "ok", "ca_key": "ok", ...}) for staff or the token."""
    checks = {"database": database_check()}
    if checks["database"] is None:
        checks["ca_key"] = ca_key_check()
        checks |= extensions.run_health_checks()
    else:
        checks["ca_key"] = "unknown"
    healthy = all(problem is None for problem in checks.values())
    answer = {"status": "ok" if healthy else "failing"}
    if may_see_details(request):
        answer |= {name: "ok" if problem is None else problem for name, problem in checks.items()}
    return JsonResponse(answer, status=200 if healthy else 503)
