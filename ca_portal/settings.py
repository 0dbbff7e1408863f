"""Settings for ca-portal, read from the environment (and a `.env` file if present).

Production is the default: DEBUG is off unless DEBUG=True (`make run` writes it into the
development .env), and then the process refuses to start without SECRET_KEY and
CA_KEY_PASSPHRASE, cookies are secure and plain http is redirected to https. Every other
variable has a default that is safe in production or only matters in development.
"""

import ipaddress
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlparse

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent

_SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
_FILE_BACKEND = "django.core.mail.backends.filebased.EmailBackend"


class PortalEnv(environ.Env):
    """django-environ, also reading the EMAIL_URL scheme names the portal documents."""

    # Beside environ's own names (smtp, smtps, smtp+tls, smtp+ssl, consolemail, filemail,
    # memorymail, dummymail).
    EMAIL_SCHEMES = {
        **environ.Env.EMAIL_SCHEMES,
        "submission": _SMTP_BACKEND,
        "console": "django.core.mail.backends.console.EmailBackend",
        "file": _FILE_BACKEND,
        "locmem": "django.core.mail.backends.locmem.EmailBackend",
        "dummy": "django.core.mail.backends.dummy.EmailBackend",
    }

    @classmethod
    def email_url_config(cls, url, backend=None):
        url = urlparse(url) if isinstance(url, str) else url
        if url.scheme not in cls.EMAIL_SCHEMES:
            raise ImproperlyConfigured(
                f"EMAIL_URL scheme {url.scheme!r} is not one of smtp, smtp+tls, smtp+ssl, "
                "submission, console, file, locmem, dummy."
            )
        config = super().email_url_config(url, backend)
        if url.scheme == "submission":  # the message submission port, with STARTTLS
            config["EMAIL_USE_TLS"] = True
            config["EMAIL_PORT"] = config["EMAIL_PORT"] or 587
        if config["EMAIL_BACKEND"] == _FILE_BACKEND:
            # environ drops the path's leading slash: file:///var/mail means /var/mail.
            config["EMAIL_FILE_PATH"] = unquote(url.path)
        return config


env = PortalEnv()
# ENV_FILE names another file (tests point it at one that does not exist).
environ.Env.read_env(env.str("ENV_FILE", default=str(BASE_DIR / ".env")), overwrite=False)

# Off unless asked for: a forgotten DEBUG must never show debug pages (settings, URL lists,
# tracebacks with local variables) to the public.
DEBUG = env.bool("DEBUG", default=False)

_DEV_SECRET_KEY = "django-insecure-development-only-never-use-in-production"  # noqa: S105
_DEV_CA_KEY_PASSPHRASE = "development-only-ca-passphrase"  # noqa: S105
#: CA passphrases printed in this repository; requests_app.checks refuses them in production.
KNOWN_DEVELOPMENT_PASSPHRASES = [_DEV_CA_KEY_PASSPHRASE]

if not DEBUG:
    _missing = [name for name in ("SECRET_KEY", "CA_KEY_PASSPHRASE") if not env.str(name, "")]
    if _missing:
        raise ImproperlyConfigured(
            f"DEBUG is off, so {' and '.join(_missing)} must be set in the environment "
            "(ca-portal never falls back to a development secret in production)."
        )

SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[SITE_URL])


def _http_origin(url: str) -> str:
    """SITE_URL's host over plain http: its port kept for http, dropped for https (a TLS port
    does not answer plain http)."""
    parts = urlparse(url)
    if parts.scheme == "http":
        return f"http://{parts.netloc}"
    host = parts.hostname or ""
    return f"http://[{host}]" if ":" in host else f"http://{host}"  # IPv6 keeps its brackets


# The base of the revocation URLs that issued certificates name (authorityInfoAccess: OCSP
# and caIssuers; the CRL distribution point). Plain http: clients fetch them before they can
# trust any TLS, and RFC 5280 4.2.2.1, RFC 6960 and the Baseline Requirements want http (NSS
# never fetches an https one). A system check refuses https. Default: SITE_URL over http.
REVOCATION_BASE_URL = env.str("REVOCATION_BASE_URL", default=_http_origin(SITE_URL)).rstrip("/")
# The reverse proxies in front of the portal (addresses or CIDRs, e.g. 127.0.0.1,10.0.0.0/8).
# Only a connection from one of them may tell the client's address (X-Forwarded-For) or pass
# a client certificate; from anyone else those headers are ignored.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
for _proxy in TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"TRUSTED_PROXIES: {_proxy!r} is not an IP address or network"
        ) from None
# Agents log in with a client certificate (agent profile, linked to their account) that the
# TLS terminator passes in this header, URL-escaped PEM (nginx: $ssl_client_escaped_cert);
# believed only from TRUSTED_PROXIES. Certificate login attempts per client address, as
# "count/seconds"; each attempt, refused or not, writes an audit row.
CLIENT_CERT_HEADER = env.str("CLIENT_CERT_HEADER", default="X-SSL-Client-Cert")
CERTIFICATE_LOGIN_RATE_LIMIT = env.str("CERTIFICATE_LOGIN_RATE_LIMIT", default="30/300")
if not re.fullmatch(r"\d+/[1-9]\d*", CERTIFICATE_LOGIN_RATE_LIMIT, re.ASCII):
    raise ImproperlyConfigured("CERTIFICATE_LOGIN_RATE_LIMIT must look like 30/300 (count/seconds)")

# --- HTTPS ---------------------------------------------------------------------------
# With DEBUG off the portal is served over https only. Behind a proxy that terminates TLS,
# the proxy says so in X-Forwarded-Proto: believed only from TRUSTED_PROXIES
# (httputil.TrustedProxyHeadersMiddleware drops the header from anyone else).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUSTED_PROXIES else None
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# Not redirected: relying parties fetch CRLs, OCSP answers and the CA certificate over plain
# http (RFC 5280: https for revocation status would be circular), and a load balancer asks
# /healthz of the node itself.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^ocsp(/|$)", r"^ca/\d+/(crl\.crl|crl\.pem|ca\.cer)$"]
# Browsers remember to use https only (HSTS) for this many seconds; 0 sends no header.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
# Ask to be preloaded into browsers' HSTS lists: a decision for the domain's owner.
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
# An agent's login lasts a working day (seconds), not Django's two weeks.
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)
SESSION_COOKIE_HTTPONLY = True
# /healthz tells anonymous callers only ok or failing; with this bearer token
# (Authorization: Bearer <token>), or to staff, it names the failing check.
HEALTHZ_TOKEN = env.str("HEALTHZ_TOKEN", default="")

# The CA: key files live here (mode 0600), encrypted under CA_KEY_PASSPHRASE.
CA_KEY_DIR = Path(env.str("CA_KEY_DIR", default=str(BASE_DIR / "var" / "ca")))
CA_KEY_PASSPHRASE = env.str("CA_KEY_PASSPHRASE", default=_DEV_CA_KEY_PASSPHRASE)
# Who keeps CA keys and signs with them (requests_app.keys); the file backend's directory and
# passphrase default to CA_KEY_DIR and CA_KEY_PASSPHRASE.
CA_KEY_BACKENDS = {
    "default": {"BACKEND": "requests_app.keys.files.EncryptedFileBackend", "OPTIONS": {}},
}
# Key files are encrypted with PBKDF2-HMAC-SHA256 of this many rounds (OWASP: 600,000 at
# least); existing files are rewrapped by `manage.py rewrap_keys`. Read once per process.
CA_KEY_KDF_ROUNDS = env.int("CA_KEY_KDF_ROUNDS", default=600_000)

# --- CA keys in a hardware token (PKCS#11) ----------------------------------------------
# The "pkcs11" key backend (manage.py init_ca --key-backend pkcs11): the module (a shared
# library, e.g. /usr/lib/softhsm/libsofthsm2.so), the token new keys go to, and its user PIN,
# given here or as the first line of PKCS11_PIN_FILE. The PIN is read from the environment
# only: never the database, a log or a page. A CA row keeps the token and key labels.
PKCS11_MODULE = env.str("PKCS11_MODULE", default="")
PKCS11_TOKEN_LABEL = env.str("PKCS11_TOKEN_LABEL", default="")
PKCS11_PIN = env.str("PKCS11_PIN", default="")
PKCS11_PIN_FILE = env.str("PKCS11_PIN_FILE", default="")
# Its OPTIONS (module, token_label, pin, pin_file) default to the settings above; another
# token with another PIN is another alias with its own OPTIONS.
CA_KEY_BACKENDS["pkcs11"] = {"BACKEND": "requests_app.keys.pkcs11.PKCS11Backend", "OPTIONS": {}}

# The audit log's signed checkpoints (HMAC-SHA256): the key (default: derived from
# SECRET_KEY; set it to keep checkpoints verifiable across a SECRET_KEY rotation), and how
# often one is written: every so many rows, or after so many seconds, whichever comes first.
AUDIT_HMAC_KEY = env.str("AUDIT_HMAC_KEY", default="")
AUDIT_CHECKPOINT_ROWS = env.int("AUDIT_CHECKPOINT_ROWS", default=1000)
AUDIT_CHECKPOINT_SECONDS = env.int("AUDIT_CHECKPOINT_SECONDS", default=3600)

RETRIEVAL_LINK_MAX_AGE_DAYS = env.int("RETRIEVAL_LINK_MAX_AGE_DAYS", default=30)
# Pre-issuance linting: before the CA key signs, the certificate is built, signed by a
# throwaway key and linted with pkilint (RFC 5280; the CA/B Forum linter for profiles with
# baseline_requirements); a finding at ERROR refuses the issuance. False turns it off.
PREISSUANCE_LINT = env.bool("PREISSUANCE_LINT", default=True)
# Revocation: each CRL names its successor this many hours ahead (its nextUpdate).
CRL_NEXT_UPDATE_HOURS = env.int("CRL_NEXT_UPDATE_HOURS", default=24)

# Server-side keys, for requesters without tools: the profiles that offer them, the key
# type (RSA 2048: every browser, OS and mail client imports it and encrypts S/MIME to it),
# and the days after issue that an undownloaded key is kept (erase_expired_keys, from cron).
SERVER_KEY_PROFILES = env.list("SERVER_KEY_PROFILES", default=["user"])
SERVER_KEY_TYPE = env.str("SERVER_KEY_TYPE", default="rsa2048")
SERVER_KEY_RETENTION_DAYS = env.int("SERVER_KEY_RETENTION_DAYS", default=14)
# Rate limits, passphrase lockouts and shared pages live in this cache. Several processes
# (gunicorn -w N, several machines) must share one, e.g. redis://127.0.0.1:6379/0; the
# default, each process's own memory, is for a single process.
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}
# Enrollments (web form and Dogtag profileSubmit) per client address: "count/seconds".
ENROLL_RATE_LIMIT = env.str("ENROLL_RATE_LIMIT", default="60/3600")
if not re.fullmatch(r"\d+/[1-9]\d*", ENROLL_RATE_LIMIT, re.ASCII):  # as throttle.parse_rate
    raise ImproperlyConfigured("ENROLL_RATE_LIMIT must look like 60/3600 (count/seconds)")
# Server-side key enrollments per client address per hour (each one generates a key).
SERVER_KEY_ENROLL_RATE_LIMIT = env.int("SERVER_KEY_ENROLL_RATE_LIMIT", default=10)
# Wrong passphrases for a server-made key, counted per certificate (from every address):
# this many are free, then each one locks the form twice as long as the one before, up to
# the maximum. Only someone with the request ID (or the mailed link) reaches the passphrase.
KEY_DOWNLOAD_FREE_ATTEMPTS = env.int("KEY_DOWNLOAD_FREE_ATTEMPTS", default=5)
# The same per client address, over every certificate (wrong request IDs count too); more
# are free, as many people may share one address.
KEY_DOWNLOAD_ADDRESS_FREE_ATTEMPTS = env.int("KEY_DOWNLOAD_ADDRESS_FREE_ATTEMPTS", default=20)
KEY_DOWNLOAD_LOCKOUT_SECONDS = env.int("KEY_DOWNLOAD_LOCKOUT_SECONDS", default=30)
KEY_DOWNLOAD_LOCKOUT_MAX_SECONDS = env.int("KEY_DOWNLOAD_LOCKOUT_MAX_SECONDS", default=3600)

# Agents prove more than a password (NCSSRs): a passkey, a one-time code or a recovery code
# after the password, or an agent certificate. Off only for DEBUG development, and then every
# agent page says so.
AGENT_REQUIRE_MFA = env.bool("AGENT_REQUIRE_MFA", default=True)
if not AGENT_REQUIRE_MFA and not DEBUG:
    raise ImproperlyConfigured(
        "AGENT_REQUIRE_MFA=False is allowed only with DEBUG=True (development): agents must "
        "pass a second factor in production."
    )
# Failed agent logins (passwords and second-factor codes, counted together by django-axes)
# per username and per client address before that username or address is locked out, and
# for how long. The counters live in the database, so every process shares them.
AGENT_LOGIN_FAILURE_LIMIT = env.int("AGENT_LOGIN_FAILURE_LIMIT", default=5)
AGENT_LOGIN_LOCKOUT_MINUTES = env.int("AGENT_LOGIN_LOCKOUT_MINUTES", default=30)
# How long the enrolment link that `manage.py create_agent` prints stays valid (single use).
AGENT_ENROLMENT_LINK_HOURS = env.int("AGENT_ENROLMENT_LINK_HOURS", default=72)
# Proof of the mailbox (profiles with confirm_email): days a requester has to open the
# mailed link or type the code; after that expire_unconfirmed_requests cancels the request.
EMAIL_CONFIRMATION_DAYS = env.int("EMAIL_CONFIRMATION_DAYS", default=7)
# Wrong confirmation codes allowed per request, and per client address: "count/seconds".
EMAIL_CONFIRMATION_RATE_LIMIT = env.str("EMAIL_CONFIRMATION_RATE_LIMIT", default="10/3600")
if not re.fullmatch(r"\d+/[1-9]\d*", EMAIL_CONFIRMATION_RATE_LIMIT, re.ASCII):
    raise ImproperlyConfigured("EMAIL_CONFIRMATION_RATE_LIMIT must look like 10/3600")
# Mail the portal sends to one address a day (UTC), so nobody floods a stranger's mailbox
# through the enrollment form: enrollments naming an address that is over it are refused,
# and mail over it is held until the next day (never dropped). Mail to the agents and mail
# an agent sends by hand are not counted. Counted in the cache (share it between processes).
MAIL_PER_RECIPIENT_PER_DAY = env.int("MAIL_PER_RECIPIENT_PER_DAY", default=10)
if EMAIL_CONFIRMATION_DAYS < 1 or MAIL_PER_RECIPIENT_PER_DAY < 1:
    raise ImproperlyConfigured(
        "EMAIL_CONFIRMATION_DAYS and MAIL_PER_RECIPIENT_PER_DAY must be at least 1 "
        "(otherwise no personal request could ever be confirmed)"
    )

DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="ca-portal@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
AGENT_NOTIFY_EMAIL = env.list("AGENT_NOTIFY_EMAIL", default=[])

# Profiles are defined in requests_app/profiles.py; entries here override fields of a
# profile or add one, e.g. {"server": {"validity_days": 90}}.
CA_PROFILES: dict = {}

# The Dogtag protocol (certmonger): more profile IDs over the profiles' own dogtag_ids, as
# JSON {"caFooCert": "server"} (null drops an ID); and where mail about a server request
# goes when the client sent no requestor_email.
DOGTAG_PROFILE_IDS = env.json("DOGTAG_PROFILE_IDS", default={})
DOGTAG_REQUESTER_EMAIL = env.str("DOGTAG_REQUESTER_EMAIL", default=DEFAULT_FROM_EMAIL)

INSTALLED_APPS = [
    "requests_app.apps.AgentAdminConfig",  # django.contrib.admin behind the second factor
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ca_portal.apps.PortalConfig",
    "django_tasks_db",
    "anymail",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "django_otp_webauthn",
    "axes",
    "requests_app",
    "requests_app.acme.apps.AcmeConfig",  # ACME (RFC 8555), its own tables
    "delivery",
]

MIDDLEWARE = [
    "requests_app.httputil.TrustedProxyHeadersMiddleware",  # before anything reads is_secure()
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    # The logged-in user is the actor of changes the audit sees through model signals.
    "requests_app.actor.CurrentActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# django-axes counts failed logins before the password is even checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = AGENT_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=AGENT_LOGIN_LOCKOUT_MINUTES)
# A username is locked after too many failures from anywhere (a flood from many addresses
# gains nothing), and so is an address that tries many usernames.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "requests_app.httputil.client_ip"  # believes TRUSTED_PROXIES only
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# Counters are cleared when the second factor passes (requests_app.login_throttle), not after
# the password alone, so that passwords cannot buy more code guesses.
AXES_RESET_ON_SUCCESS = False
AXES_VERBOSE = False

# TOTP devices (django-otp): the name authenticator apps show.
OTP_TOTP_ISSUER = "ca-portal"
# Passkeys (django-otp-webauthn). The relying party ID is the portal's host name (WebAuthn
# refuses IP addresses, so a loopback SITE_URL means "localhost"), and the origins browsers
# may use, by default SITE_URL's.
_site = urlparse(SITE_URL)
_site_host = _site.hostname or "localhost"
try:
    ipaddress.ip_address(_site_host)
    _site_host, _site_netloc = "localhost", _site.netloc.replace(_site.hostname or "", "localhost")
except ValueError:
    _site_netloc = _site.netloc
OTP_WEBAUTHN_RP_ID = env.str("WEBAUTHN_RP_ID", default=_site_host)
OTP_WEBAUTHN_RP_NAME = "ca-portal Certificate Manager"
_site_origin = f"{_site.scheme}://{_site_netloc}"
_secure_origin = _site.scheme == "https" or _site_host == "localhost"
OTP_WEBAUTHN_ALLOWED_ORIGINS = env.list(
    "WEBAUTHN_ORIGINS", default=[_site_origin] if _secure_origin else []
)
# Browsers offer passkeys only on https (or http://localhost): on a plain-http SITE_URL there
# is no origin to allow, agents use TOTP, and django-otp-webauthn's check need not say so.
SILENCED_SYSTEM_CHECKS = [] if OTP_WEBAUTHN_ALLOWED_ORIGINS else ["otp_webauthn.E030"]
OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN = False  # a passkey is the second factor, never the only

# Every script, style and font is served by the portal itself (no inline code, no CDN), so
# the policy can be strict; the admin of Django 6 needs nothing more.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
    "base-uri": [CSP.NONE],
}

ROOT_URLCONF = "ca_portal.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "requests_app.context_processors.agent_security",
            ],
            # {{ x|serial }}: the one way a serial is shown, in every page and mail.
            "builtins": ["requests_app.templatetags.serials"],
        },
    },
]

WSGI_APPLICATION = "ca_portal.wsgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}")
}
# Keep connections between requests and tasks: a PostgreSQL connection costs milliseconds
# to set up, more than most pages. Health checks drop connections the server closed.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=300)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# PostgreSQL: how long an approval, revocation or key download waits for a row another
# transaction holds before it fails with a clear message (0: wait for ever).
DATABASE_LOCK_TIMEOUT_SECONDS = env.float("DATABASE_LOCK_TIMEOUT_SECONDS", default=10)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while the worker writes; IMMEDIATE takes the write
    # lock at BEGIN so two writers queue instead of failing mid-transaction. secure_delete
    # zeroes freed bytes, so an erased server-made key leaves no copy in the file.
    # The lock wait (seconds) may be set in the URL: sqlite:///path?timeout=5.
    _sqlite_options = DATABASES["default"].setdefault("OPTIONS", {})
    _sqlite_options.setdefault("timeout", 20)
    _sqlite_options.update(
        {
            "transaction_mode": "IMMEDIATE",
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA secure_delete=ON;"
            ),
        }
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "agent:request_list"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# ISO dates (2026-11-30 20:46 UTC) wherever Django formats one itself, as in the admin.
FORMAT_MODULE_PATH = ["ca_portal.formats"]

STATIC_URL = "static/"
# Created at start-up with the SQLite directory (ca_portal.apps), not when settings are read.
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "var" / "static")))

DATA_UPLOAD_MAX_MEMORY_SIZE = 256 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 256 * 1024


def mailer_from_email_config(config: dict) -> dict:
    """One MAILERS entry ({"BACKEND", "OPTIONS"}) from django-environ's EMAIL_* dict."""
    backend = config["EMAIL_BACKEND"]
    if backend == _SMTP_BACKEND:
        use_ssl = bool(config.get("EMAIL_USE_SSL"))
        options = {
            "host": config["EMAIL_HOST"] or "localhost",
            "port": config["EMAIL_PORT"] or (465 if use_ssl else 25),
            "use_tls": bool(config.get("EMAIL_USE_TLS")),
            "use_ssl": use_ssl,
            "timeout": int(config.get("OPTIONS", {}).get("TIMEOUT", 10)),
        }
        if config["EMAIL_HOST_USER"]:
            options["username"] = config["EMAIL_HOST_USER"]
            options["password"] = config["EMAIL_HOST_PASSWORD"] or ""
        return {"BACKEND": backend, "OPTIONS": options}
    if backend == _FILE_BACKEND:
        return {"BACKEND": backend, "OPTIONS": {"file_path": config["EMAIL_FILE_PATH"]}}
    return {"BACKEND": backend}


def build_mailers(email_url: str, esp: str) -> dict:
    """Django's MAILERS from an anymail ESP, or else from EMAIL_URL (smtp://, console://...)."""
    if esp:
        return {"default": {"BACKEND": f"anymail.backends.{esp}.EmailBackend"}}
    return {"default": mailer_from_email_config(env.email_url_config(email_url))}


ANYMAIL_ESP = env.str("ANYMAIL_ESP", default="")
# EMAIL_URL is read as text so that with ANYMAIL_ESP set it is ignored, as documented.
MAILERS = build_mailers(env.str("EMAIL_URL", default="console://"), ANYMAIL_ESP)
# Anymail reads its keys from ANYMAIL; every ANYMAIL_<NAME> variable lands there as <NAME>.
ANYMAIL = {
    key.removeprefix("ANYMAIL_"): value
    for key, value in env.ENVIRON.items()
    if key.startswith("ANYMAIL_") and key != "ANYMAIL_ESP"
}

# Delivery: plugin backends by alias, shaped like MAILERS. A third party adds one by
# dotted path to a subclass of delivery.backends.BaseDeliveryBackend.
DELIVERY_BACKENDS = {
    "email_certificate": {"BACKEND": "delivery.backends.email.CertificateEmail"},
    "email_link": {"BACKEND": "delivery.backends.email.LinkEmail"},
    "notify": {"BACKEND": "delivery.backends.email.NotificationEmail"},
}
if env.str("DELIVERY_WEBHOOK_URL", default=""):
    DELIVERY_BACKENDS["webhook"] = {
        "BACKEND": "delivery.backends.webhook.Webhook",
        "OPTIONS": {
            "url": env.str("DELIVERY_WEBHOOK_URL"),
            "secret": env.str("DELIVERY_WEBHOOK_SECRET", default=""),
            "timeout": env.int("DELIVERY_WEBHOOK_TIMEOUT", default=10),
        },
    }
# ACME: the mail that hands an agent's binding credentials to the requester (delivery/acme.py).
DELIVERY_BACKENDS["acme_credentials"] = {"BACKEND": "delivery.backends.acme.AcmeCredentialsEmail"}
# Which backends run on approval, per profile; None means each profile's own default
# (server: none, user: email_link, agent: email_link).
DELIVERY_POLICY = env.json("DELIVERY_POLICY", default=None)
DELIVERY_AUTOMATIC = env.bool("DELIVERY_AUTOMATIC", default=True)  # one switch for all
# On approval, a "your certificate is ready" mail with the link to every requester who gave
# an address and whom the policy above does not already mail the certificate or a link.
DELIVERY_READY_MAIL = env.bool("DELIVERY_READY_MAIL", default=True)
DELIVERY_NOTIFICATIONS = env.bool("DELIVERY_NOTIFICATIONS", default=True)
DELIVERY_MAX_ATTEMPTS = env.int("DELIVERY_MAX_ATTEMPTS", default=12)
DELIVERY_RETRY_FIRST_SECONDS = env.int("DELIVERY_RETRY_FIRST_SECONDS", default=30)
DELIVERY_RETRY_MAX_SECONDS = env.int("DELIVERY_RETRY_MAX_SECONDS", default=3600)
DELIVERY_LEASE_SECONDS = env.int("DELIVERY_LEASE_SECONDS", default=300)
#: How many due deliveries a worker claims and sends at once (one claim, one record).
DELIVERY_BATCH_SIZE = env.int("DELIVERY_BATCH_SIZE", default=50)
# A worker (manage.py run_worker) writes a heartbeat between tasks. With the database task
# queue, /healthz fails when no worker was seen for this long, and retry_deliveries takes a
# task RUNNING for longer as lost (its worker died) and marks it failed. Keep it well above
# the longest task (a delivery waits at most its mail or webhook timeout).
WORKER_HEARTBEAT_MAX_AGE_SECONDS = env.int("WORKER_HEARTBEAT_MAX_AGE_SECONDS", default=120)

# --- ACME (RFC 8555) at /acme/directory ------------------------------------------------
# Accounts need an agent's external account binding (manage.py create_acme_binding).
ACME_REQUIRE_EAB = env.bool("ACME_REQUIRE_EAB", default=True)
# Without EAB (ACME_REQUIRE_EAB=False), orders go to the agent queue under this profile.
ACME_DEFAULT_PROFILE = env.str("ACME_DEFAULT_PROFILE", default="server")
ACME_TERMS_OF_SERVICE = env.str("ACME_TERMS_OF_SERVICE", default="")  # a URL clients must agree to
# Shared counters (throttle.py; count/seconds): new accounts per address, new orders per
# account and per address, failed validations per account and per address.
ACME_NEW_ACCOUNT_RATE_LIMIT = env.str("ACME_NEW_ACCOUNT_RATE_LIMIT", default="20/3600")
ACME_NEW_ORDER_RATE_LIMIT = env.str("ACME_NEW_ORDER_RATE_LIMIT", default="300/3600")
ACME_FAILED_VALIDATION_RATE_LIMIT = env.str("ACME_FAILED_VALIDATION_RATE_LIMIT", default="30/3600")
for _name in (
    "ACME_NEW_ACCOUNT_RATE_LIMIT",
    "ACME_NEW_ORDER_RATE_LIMIT",
    "ACME_FAILED_VALIDATION_RATE_LIMIT",
):
    if not re.fullmatch(r"\d+/[1-9]\d*", globals()[_name], re.ASCII):
        raise ImproperlyConfigured(f"{_name} must look like 30/3600 (count/seconds)")
# Validation runs when the client posts the challenge, bounded: seconds per connection or
# lookup (a whole check at most twice that), and at most this many at once per process.
ACME_VALIDATION_TIMEOUT = env.float("ACME_VALIDATION_TIMEOUT", default=5.0)
ACME_VALIDATION_CONCURRENCY = env.int("ACME_VALIDATION_CONCURRENCY", default=4)
# Tests and closed networks (as Pebble): where http-01 connects instead of the name's
# addresses (the Host header still names it), and the resolver ("host:port") for dns-01 and
# for http-01's lookups. Private, loopback and reserved addresses are refused unless allowed.
ACME_HTTP01_ADDRESS = env.str("ACME_HTTP01_ADDRESS", default="")
ACME_HTTP01_PORT = env.int("ACME_HTTP01_PORT", default=80)
ACME_DNS_RESOLVER = env.str("ACME_DNS_RESOLVER", default="")
ACME_ALLOW_PRIVATE_ADDRESSES = env.bool("ACME_ALLOW_PRIVATE_ADDRESSES", default=False)
# Expiry (manage.py send_expiry_reminders, from cron or a systemd timer; make run runs it
# every ten minutes): the holder of a valid, unrenewed certificate is mailed once at each of
# these days before it expires (an empty list sends none), and the agents (AGENT_NOTIFY_EMAIL,
# else every agent's address) get one digest a UTC day of what expires within
# EXPIRY_DIGEST_DAYS and nobody renewed (0 sends none). Both follow DELIVERY_NOTIFICATIONS.
_reminder_days = [
    d for d in env.list("EXPIRY_REMINDER_DAYS", default=["30", "7", "1"]) if d.strip()
]
EXPIRY_DIGEST_DAYS = env.int("EXPIRY_DIGEST_DAYS", default=14)
if not all(re.fullmatch(r"[1-9]\d{0,3}", d.strip(), re.ASCII) for d in _reminder_days) or (
    EXPIRY_DIGEST_DAYS < 0
):
    raise ImproperlyConfigured(
        "EXPIRY_REMINDER_DAYS must be whole days of at least 1 (e.g. 30,7,1) and "
        "EXPIRY_DIGEST_DAYS at least 0"
    )
EXPIRY_REMINDER_DAYS = sorted({int(d) for d in _reminder_days})

_TASK_BACKENDS = {
    "database": "django_tasks_db.DatabaseBackend",
    "immediate": "django.tasks.backends.immediate.ImmediateBackend",
}
_tasks_backend = env.str("TASKS_BACKEND", default="database")
if _tasks_backend not in _TASK_BACKENDS:
    raise ImproperlyConfigured(f"TASKS_BACKEND must be one of {sorted(_TASK_BACKENDS)}")
TASKS = {"default": {"BACKEND": _TASK_BACKENDS[_tasks_backend]}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # Failed logins are in the audit log; axes' own lines repeat them at WARNING.
        "axes": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
