"""Settings: safe development defaults, hard failures in production, MAILERS from EMAIL_URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from ca_portal.settings import build_mailers

ROOT = Path(__file__).resolve().parent.parent


def _django_check(**env_vars):
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "CA_KEY_PASSPHRASE")}
    env |= {"DJANGO_SETTINGS_MODULE": "ca_portal.settings", "ENV_FILE": "/nonexistent/.env"}
    env |= env_vars
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )


def _django_shell(code: str, **env_vars):
    env = {k: v for k, v in os.environ.items() if k not in ("REVOCATION_BASE_URL",)}
    env |= {"DJANGO_SETTINGS_MODULE": "ca_portal.settings", "ENV_FILE": "/nonexistent/.env"}
    env |= env_vars
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize(
    ("env_vars", "missing"),
    [
        ({}, "SECRET_KEY and CA_KEY_PASSPHRASE must be set"),
        ({"SECRET_KEY": "s" * 50}, "CA_KEY_PASSPHRASE must be set"),
        ({"CA_KEY_PASSPHRASE": "p" * 20}, "SECRET_KEY must be set"),
    ],
)
def test_production_refuses_to_start_without_secrets(env_vars, missing):
    """With DEBUG=False a missing secret stops the process with one clear message."""
    result = _django_check(DEBUG="False", ALLOWED_HOSTS="ca.example.test", **env_vars)
    assert result.returncode != 0
    assert missing in result.stderr


def test_production_starts_with_its_secrets(tmp_path):
    """With DEBUG=False and both secrets set, the checks pass."""
    result = _django_check(
        DEBUG="False",
        ALLOWED_HOSTS="ca.example.test",
        SECRET_KEY="k" * 60,
        CA_KEY_PASSPHRASE="p" * 20,
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    assert result.returncode == 0, result.stderr


def test_development_needs_nothing(tmp_path):
    """With no environment at all the development defaults pass Django's checks."""
    result = _django_check(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("url", "backend", "options"),
    [
        ("console://", "django.core.mail.backends.console.EmailBackend", None),
        (
            "smtp://mail.example.test:2525",
            "django.core.mail.backends.smtp.EmailBackend",
            {"host": "mail.example.test", "port": 2525, "use_tls": False, "use_ssl": False},
        ),
        (
            "smtp+tls://user%40x:p%2Fw@mail.example.test",
            "django.core.mail.backends.smtp.EmailBackend",
            {"port": 25, "use_tls": True, "username": "user@x", "password": "p/w"},
        ),
        (
            "smtp+ssl://mail.example.test",
            "django.core.mail.backends.smtp.EmailBackend",
            {"port": 465, "use_ssl": True, "use_tls": False},
        ),
        (
            "file:///tmp/mail",
            "django.core.mail.backends.filebased.EmailBackend",
            {"file_path": "/tmp/mail"},
        ),
    ],
)
def test_mailers_from_email_url(url, backend, options):
    """EMAIL_URL becomes the default mailer with its options."""
    mailer = build_mailers(url, "")["default"]
    assert mailer["BACKEND"] == backend
    for key, value in (options or {}).items():
        assert mailer["OPTIONS"][key] == value


@pytest.mark.parametrize(
    ("url", "backend", "options"),
    [
        (
            "submission://u:p@relay.example.test",
            "django.core.mail.backends.smtp.EmailBackend",
            {"host": "relay.example.test", "port": 587, "use_tls": True, "username": "u"},
        ),
        (
            "smtp://mail.example.test?timeout=30",
            "django.core.mail.backends.smtp.EmailBackend",
            {"port": 25, "timeout": 30},
        ),
        ("smtp://", "django.core.mail.backends.smtp.EmailBackend", {"host": "localhost"}),
        ("locmem://", "django.core.mail.backends.locmem.EmailBackend", None),
        ("dummy://", "django.core.mail.backends.dummy.EmailBackend", None),
        ("consolemail://", "django.core.mail.backends.console.EmailBackend", None),
        ("memorymail://", "django.core.mail.backends.locmem.EmailBackend", None),
        (
            "filemail:///var/mail",
            "django.core.mail.backends.filebased.EmailBackend",
            {"file_path": "/var/mail"},
        ),
        (
            "smtps://mail.example.test",
            "django.core.mail.backends.smtp.EmailBackend",
            {"use_tls": True, "use_ssl": False},
        ),
    ],
)
def test_more_email_url_schemes(url, backend, options):
    """The portal's own scheme names and django-environ's both build a mailer."""
    mailer = build_mailers(url, "")["default"]
    assert mailer["BACKEND"] == backend
    for key, value in (options or {}).items():
        assert mailer["OPTIONS"][key] == value
    if options is None:
        assert "OPTIONS" not in mailer


def test_smtp_without_a_user_sends_no_credentials():
    """No user in EMAIL_URL means no username or password option."""
    options = build_mailers("smtp+tls://mail.example.test:2525", "")["default"]["OPTIONS"]
    assert options == {
        "host": "mail.example.test",
        "port": 2525,
        "use_tls": True,
        "use_ssl": False,
        "timeout": 10,
    }


def test_reading_settings_creates_no_directory(tmp_path):
    """Importing the settings touches no disk; a process creates its directories at start-up."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env |= {
        "ENV_FILE": "/nonexistent/.env",
        "STATIC_ROOT": str(tmp_path / "static"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db' / 'portal.sqlite3'}",
    }
    run = {"cwd": ROOT, "env": env, "capture_output": True, "text": True}
    imported = subprocess.run([sys.executable, "-c", "import ca_portal.settings"], **run)
    assert imported.returncode == 0, imported.stderr
    assert list(tmp_path.iterdir()) == []
    checked = subprocess.run([sys.executable, "-W", "always", "manage.py", "check"], **run)
    assert checked.returncode == 0, checked.stderr
    assert (tmp_path / "static").is_dir()
    assert (tmp_path / "db").is_dir()


def test_a_fresh_static_root_gives_no_whitenoise_warning(tmp_path):
    """A new production process finds STATIC_ROOT, so WhiteNoise does not warn about it."""
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "CA_KEY_PASSPHRASE")}
    env |= {
        "DJANGO_SETTINGS_MODULE": "ca_portal.settings",
        "DEBUG": "False",  # with DEBUG on, WhiteNoise looks for files per request instead
        "SECRET_KEY": "k" * 60,
        "CA_KEY_PASSPHRASE": "p" * 20,
        "ENV_FILE": "/nonexistent/.env",
        "STATIC_ROOT": str(tmp_path / "static"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    script = "from ca_portal.wsgi import application; print('loaded')"
    result = subprocess.run(
        [sys.executable, "-W", "always", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "No directory at" not in result.stderr
    assert (tmp_path / "static").is_dir()


def test_mailers_from_an_esp():
    """ANYMAIL_ESP selects the anymail backend of that provider."""
    assert build_mailers("console://", "postmark") == {
        "default": {"BACKEND": "anymail.backends.postmark.EmailBackend"}
    }


def test_unknown_email_url_scheme():
    """An unknown EMAIL_URL scheme is refused at start-up with the accepted ones listed."""
    with pytest.raises(ImproperlyConfigured, match="smtp, smtp\\+tls"):
        build_mailers("carrierpigeon://coop", "")


def test_site_url_checks(settings):
    """A SITE_URL that links in mail could not use is reported at start-up."""
    from requests_app.checks import check_site_url

    settings.SITE_URL = "https://ca.example.test"
    assert check_site_url() == []
    settings.SITE_URL = "http://127.0.0.1:8000"
    assert check_site_url() == []
    settings.SITE_URL = "http://localhost:8000"
    assert check_site_url() == []
    settings.SITE_URL = "ftp://ca.example.test"
    assert [m.id for m in check_site_url()] == ["ca.E001"]
    settings.SITE_URL = "https://ca.example.test/portal"
    assert [m.id for m in check_site_url()] == ["ca.E002"]


@pytest.mark.parametrize(
    ("url", "lint", "ids"),
    [
        ("http://ca.example.test", True, []),
        ("http://127.0.0.1:8000", True, []),
        ("http://[::1]:8000", True, []),
        ("https://ca.example.test", True, ["ca.E003"]),
        ("https://ca.example.test", False, ["ca.E003"]),
        ("ldap://ca.example.test", True, ["ca.E003"]),
        ("http://ca.example.test/pki", True, ["ca.E004"]),
        ("http://localhost:8000", True, ["ca.E005"]),
        ("http://localhost:8000", False, ["ca.W001"]),
    ],
)
def test_revocation_base_url_checks(settings, url, lint, ids):
    """An https REVOCATION_BASE_URL is refused at start-up, as is one that pkilint (run before
    every issuance) would refuse in every certificate; without that linting it is a warning."""
    from requests_app.checks import check_revocation_base_url

    settings.REVOCATION_BASE_URL = url
    settings.PREISSUANCE_LINT = lint
    assert [m.id for m in check_revocation_base_url()] == ids


@pytest.mark.parametrize(
    ("site_url", "expected"),
    [
        ("https://ca.example.com", "http://ca.example.com"),
        ("https://ca.example.com:8443", "http://ca.example.com"),
        ("http://ca.example.com:8080", "http://ca.example.com:8080"),
        ("https://[2001:db8::1]:8443", "http://[2001:db8::1]"),
    ],
)
def test_revocation_base_url_defaults_to_site_url_over_http(site_url, expected, tmp_path):
    """Unset, REVOCATION_BASE_URL is SITE_URL's host over http (an https port dropped)."""
    result = _django_shell(
        "from django.conf import settings; print(settings.REVOCATION_BASE_URL)",
        SITE_URL=site_url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == expected


@pytest.mark.parametrize("rate", ["60", "60/0", "sixty/3600"])
def test_a_malformed_enroll_rate_limit_stops_start_up(rate, tmp_path):
    """ENROLL_RATE_LIMIT that the rate limiter could not use is refused when settings load."""
    result = _django_check(
        ENROLL_RATE_LIMIT=rate, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}"
    )
    assert result.returncode != 0
    assert "ENROLL_RATE_LIMIT must look like 60/3600" in result.stderr


@pytest.mark.parametrize(
    ("env_vars", "message"),
    [
        ({"EMAIL_CONFIRMATION_RATE_LIMIT": "10"}, "EMAIL_CONFIRMATION_RATE_LIMIT must look like"),
        ({"EMAIL_CONFIRMATION_DAYS": "0"}, "must be at least 1"),
        ({"MAIL_PER_RECIPIENT_PER_DAY": "0"}, "must be at least 1"),
    ],
)
def test_mailbox_settings_that_could_never_work_stop_start_up(env_vars, message, tmp_path):
    """Confirmation and mail-limit settings that would block every personal request are refused."""
    result = _django_check(**env_vars, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert result.returncode != 0
    assert message in result.stderr
