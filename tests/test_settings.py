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
    """A SITE_URL that certificates could not carry is reported at start-up."""
    from requests_app.checks import check_site_url

    settings.SITE_URL = "https://ca.example.test"
    assert check_site_url() == []
    settings.SITE_URL = "http://127.0.0.1:8000"
    assert check_site_url() == []
    settings.SITE_URL = "http://localhost:8000"
    assert [m.id for m in check_site_url()] == ["ca.W001"]
    settings.SITE_URL = "ftp://ca.example.test"
    assert [m.id for m in check_site_url()] == ["ca.E001"]
    settings.SITE_URL = "https://ca.example.test/portal"
    assert [m.id for m in check_site_url()] == ["ca.E002"]
