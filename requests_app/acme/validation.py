"""Checking http-01 and dns-01 answers (RFC 8555 8.3, 8.4): network only, no database.

Bounded: every connection and lookup has a timeout (ACME_VALIDATION_TIMEOUT), a whole check
a deadline (twice that), a body is read up to a few KiB, redirects are followed at most
MAX_REDIRECTS times and only to http/https on ports 80 and 443, and no address of the
portal's own private networks (private, loopback, link-local, reserved) is contacted unless
ACME_ALLOW_PRIVATE_ADDRESSES. For tests and closed networks, ACME_HTTP01_ADDRESS and
ACME_HTTP01_PORT say where http-01 connects instead of the name's addresses (as Pebble's
-httpPort), and ACME_DNS_RESOLVER ("host:port") which resolver answers the lookups."""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import dns.exception
import dns.resolver
import josepy as jose
from django.conf import settings

MAX_REDIRECTS = 10
MAX_BODY = 8 * 1024
USER_AGENT = "ca-portal ACME validation"


@dataclass(frozen=True)
class Outcome:
    """A check's result: ok, or the problem type and detail; source says where it looked."""

    ok: bool
    source: str = ""
    problem: str = ""
    detail: str = ""


def _fail(problem: str, detail: str, source: str = "") -> Outcome:
    return Outcome(ok=False, source=source, problem=problem, detail=detail)


def key_authorization(token: str, account_thumbprint: str) -> str:
    return f"{token}.{account_thumbprint}"


def dns01_value(key_auth: str) -> str:
    """The TXT record's text: base64url(SHA-256(key authorization))."""
    return jose.b64.b64encode(hashlib.sha256(key_auth.encode()).digest()).decode()


def _timeout() -> float:
    return float(settings.ACME_VALIDATION_TIMEOUT)


def _resolver() -> dns.resolver.Resolver:
    configured = settings.ACME_DNS_RESOLVER
    if configured:
        host, _, port = configured.rpartition(":")
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host.strip("[]")]
        resolver.port = int(port)
    else:
        resolver = dns.resolver.Resolver()
    resolver.timeout = resolver.lifetime = _timeout()
    resolver.cache = None
    return resolver


def address_allowed(address: str) -> bool:
    """False for the addresses of private networks (and loopback, link-local, multicast,
    reserved, unspecified) unless ACME_ALLOW_PRIVATE_ADDRESSES."""
    if settings.ACME_ALLOW_PRIVATE_ADDRESSES:
        return True
    ip = ipaddress.ip_address(address)
    return ip.is_global and not ip.is_multicast


def _addresses(host: str) -> list[str]:
    """The host's IPv4 and IPv6 addresses (through the configured resolver)."""
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    found: list[str] = []
    resolver = _resolver()
    for rdtype in ("A", "AAAA"):
        try:
            found.extend(r.to_text() for r in resolver.resolve(host, rdtype))
        except (dns.exception.DNSException, OSError):
            continue
    return found


def _get(scheme: str, address: str, port: int, host: str, path: str, timeout: float):
    """One GET (no redirects followed): (status, location, body up to MAX_BODY). host is the
    Host header's value."""
    if scheme == "https":
        context = ssl.create_default_context()
        # RFC 8555 8.3: a redirect to https is followed without checking the certificate.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(address, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        conn.putheader("User-Agent", USER_AGENT)
        conn.putheader("Accept", "*/*")
        conn.putheader("Connection", "close")
        conn.endheaders()
        response = conn.getresponse()
        body = response.read(MAX_BODY)
        return response.status, response.getheader("Location"), body
    finally:
        conn.close()


def check_http01(name: str, token: str, key_auth: str) -> Outcome:
    """Fetch http://name/.well-known/acme-challenge/token and compare it with key_auth."""
    deadline = time.monotonic() + 2 * _timeout()
    override = settings.ACME_HTTP01_ADDRESS
    scheme, host, port = "http", name, 80
    path = f"/.well-known/acme-challenge/{token}"
    for _hop in range(MAX_REDIRECTS + 1):
        if override:  # configured by an administrator: allowed whatever it is
            candidates = [override]
            connect_port = settings.ACME_HTTP01_PORT if scheme == "http" else port
        else:
            candidates = _addresses(host)
            connect_port = port
            if not candidates:
                return _fail("dns", f"{host} has no A or AAAA record")
            if not all(address_allowed(a) for a in candidates):
                return _fail(
                    "rejectedIdentifier",
                    f"{host} resolves to a private or reserved address, which the CA does "
                    "not contact",
                )
        address = candidates[0]
        source = f"{scheme}://{address}:{connect_port}{path}"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return _fail("connection", f"no answer from {host} in time", source)
        try:
            # Only ports 80 and 443 are ever asked for (the override stands in for them).
            status, location, body = _get(
                scheme, address, connect_port, host, path, min(_timeout(), remaining)
            )
        except (OSError, http.client.HTTPException) as exc:
            return _fail("connection", f"cannot fetch {source}: {type(exc).__name__}", source)
        if status in (301, 302, 303, 307, 308) and location:
            target = urlsplit(location)
            if target.scheme not in ("http", "https") or not target.hostname:
                return _fail(
                    "connection", f"{source} redirects to {location!r}, not http(s)", source
                )
            try:
                target_port = target.port or (443 if target.scheme == "https" else 80)
            except ValueError:
                return _fail("connection", f"{source} redirects to a bad port", source)
            if target_port not in (80, 443):
                return _fail(
                    "connection",
                    f"{source} redirects to port {target_port}; only 80 and 443 are followed",
                    source,
                )
            scheme, host, port = target.scheme, target.hostname, target_port
            path = target.path or "/"
            if target.query:
                path += "?" + target.query
            continue
        if status != 200:
            return _fail("unauthorized", f"{source} answered HTTP {status}", source)
        text = body.decode("utf-8", "replace").strip()
        if text != key_auth:
            return _fail(
                "incorrectResponse",
                f"{source} answered {text[:100]!r}, not the key authorization of this challenge",
                source,
            )
        return Outcome(ok=True, source=source)
    return _fail("connection", f"more than {MAX_REDIRECTS} redirects", source)


def check_dns01(name: str, key_auth: str) -> Outcome:
    """Look up TXT _acme-challenge.name and look for base64url(SHA-256(key_auth))."""
    record = f"_acme-challenge.{name}"
    expected = dns01_value(key_auth)
    resolver = _resolver()
    source = f"TXT {record} via {settings.ACME_DNS_RESOLVER or 'the system resolver'}"
    try:
        answer = resolver.resolve(record, "TXT")
    except dns.resolver.NXDOMAIN:
        return _fail("dns", f"{record} does not exist", source)
    except dns.resolver.NoAnswer:
        return _fail("dns", f"{record} has no TXT record", source)
    except (dns.exception.DNSException, OSError) as exc:
        return _fail("dns", f"cannot look up {record}: {type(exc).__name__}", source)
    texts = [b"".join(r.strings).decode("ascii", "replace") for r in answer]
    if expected in texts:
        return Outcome(ok=True, source=source)
    return _fail(
        "incorrectResponse",
        f"no TXT record of {record} holds this challenge's value (found {len(texts)})",
        source,
    )
