"""System checks for the Certificate Manager's settings."""

import ipaddress
from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks


@checks.register()
def check_site_url(app_configs=None, **kwargs):
    """SITE_URL is written into every certificate (AIA, CRL, OCSP): it must be a real URL."""
    parts = urlsplit(settings.SITE_URL)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [checks.Error(f"SITE_URL {settings.SITE_URL!r} is not an http(s) URL", id="ca.E001")]
    host = parts.hostname
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if "." not in host:
            return [
                checks.Warning(
                    f"SITE_URL's host {host!r} has no dot: certificates will name URLs on it "
                    "that linters (pkilint) and some clients reject as invalid",
                    hint="use the portal's fully qualified name, e.g. https://ca.example.com",
                    id="ca.W001",
                )
            ]
    if parts.path not in ("", "/"):
        return [
            checks.Error("SITE_URL must not have a path (set SITE_URL=https://host)", id="ca.E002")
        ]
    return []
