"""System checks for the Certificate Manager's settings."""

import ipaddress
from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks


@checks.register()
def check_site_url(app_configs=None, **kwargs):
    """SITE_URL is the base of every link the portal mails: it must be a real URL."""
    parts = urlsplit(settings.SITE_URL)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [checks.Error(f"SITE_URL {settings.SITE_URL!r} is not an http(s) URL", id="ca.E001")]
    if parts.path not in ("", "/"):
        return [
            checks.Error("SITE_URL must not have a path (set SITE_URL=https://host)", id="ca.E002")
        ]
    return []


@checks.register()
def check_revocation_base_url(app_configs=None, **kwargs):
    """REVOCATION_BASE_URL is written into every certificate (AIA: OCSP and caIssuers; CRL
    distribution point): plain http on a host that clients and linters accept."""
    url = settings.REVOCATION_BASE_URL
    parts = urlsplit(url)
    if parts.scheme == "https":
        return [
            checks.Error(
                f"REVOCATION_BASE_URL {url!r} is https: certificates must name their OCSP, "
                "CRL and CA certificate URLs over http (RFC 5280 4.2.2.1, RFC 6960, the "
                "Baseline Requirements); NSS never fetches https ones",
                hint="set REVOCATION_BASE_URL=http://host (the portal answers these paths "
                "over http too), or leave it unset to derive it from SITE_URL",
                id="ca.E003",
            )
        ]
    if parts.scheme != "http" or not parts.hostname:
        return [checks.Error(f"REVOCATION_BASE_URL {url!r} is not an http URL", id="ca.E003")]
    if parts.path not in ("", "/"):
        return [
            checks.Error(
                "REVOCATION_BASE_URL must not have a path (set REVOCATION_BASE_URL=http://host)",
                id="ca.E004",
            )
        ]
    host = parts.hostname
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if "." not in host:
            message = (
                f"REVOCATION_BASE_URL's host {host!r} has no dot: certificates would name "
                "URLs on it that linters (pkilint) and some clients reject as invalid"
            )
            hint = "use the portal's fully qualified name, e.g. http://ca.example.com"
            if settings.PREISSUANCE_LINT:
                # Pre-issuance linting would refuse every certificate: say so at start-up.
                return [
                    checks.Error(
                        f"{message}; with PREISSUANCE_LINT on, nothing could be issued",
                        hint=hint,
                        id="ca.E005",
                    )
                ]
            return [checks.Warning(message, hint=hint, id="ca.W001")]
    return []
