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


#: Shorter CA passphrases are refused in production: the key file is only as strong as it.
MIN_CA_PASSPHRASE_LENGTH = 20
_GENERATE = "make one: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def _ca_passphrases() -> list[tuple[str, str]]:
    """(where it is set, value) of every CA key passphrase in the settings."""
    found = [("CA_KEY_PASSPHRASE", settings.CA_KEY_PASSPHRASE)]
    for alias, entry in (getattr(settings, "CA_KEY_BACKENDS", None) or {}).items():
        options = entry.get("OPTIONS") if isinstance(entry, dict) else None
        if isinstance(options, dict) and isinstance(options.get("passphrase"), str):
            found.append((f"CA_KEY_BACKENDS[{alias!r}] OPTIONS passphrase", options["passphrase"]))
    return found


@checks.register(checks.Tags.security)
def check_ca_passphrase(app_configs=None, **kwargs):
    """With DEBUG off, a CA passphrase printed in this repository or too short is an error."""
    if settings.DEBUG:
        return []
    known = set(getattr(settings, "KNOWN_DEVELOPMENT_PASSPHRASES", ()))
    errors = []
    for where, passphrase in _ca_passphrases():
        if passphrase in known:
            errors.append(
                checks.Error(
                    f"{where} is the development value printed in ca-portal's source",
                    hint=_GENERATE,
                    id="ca.E020",
                )
            )
        elif len(passphrase) < MIN_CA_PASSPHRASE_LENGTH:
            errors.append(
                checks.Error(
                    f"{where} has {len(passphrase)} characters; production needs at least "
                    f"{MIN_CA_PASSPHRASE_LENGTH}",
                    hint=_GENERATE,
                    id="ca.E021",
                )
            )
    return errors


@checks.register(checks.Tags.caches, deploy=True)
def check_shared_cache(app_configs=None, **kwargs):
    """Rate limits and lockouts need a cache every process shares."""
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    if backend.endswith(("locmem.LocMemCache", "dummy.DummyCache")):
        return [
            checks.Warning(
                "the cache is each process's own memory, so rate limits and passphrase "
                "lockouts are counted per process and forgotten on restart",
                hint="set CACHE_URL=redis://host:6379/0 (a cache every process shares)",
                id="ca.W020",
            )
        ]
    return []
