"""django-ca's side of bench/peer.py: runs INSIDE django-ca's own virtualenv, never the portal's.

A tiny Django project (settings configured here, a fresh SQLite file) with django-ca 3.2.0,
one CA per key type made with `CertificateAuthority.objects.init()` and its key kept where
django-ca keeps it by default (the "default" storages key backend: a file, no password).
Then it waits for commands on stdin, one per line, and answers one JSON line each:

    round <key_type> <n>   make n CSRs (untimed), then issue them one at a time with
                           Certificate.objects.create_cert(ca, options, csr, profile=...),
                           timed: {"seconds": s, "items": n}
    quit

Imports nothing from the portal: its virtualenv has django-ca's Django, not ours.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

KEY_TYPES = {"p256": ("EC", None, "secp256r1"), "rsa2048": ("RSA", 2048, None)}


def configure(directory: Path) -> None:
    import django
    from django.conf import settings

    # The project's URLconf: django-ca's URLs, which it reverses for the AIA and CRL URLs.
    (directory / "peer_urls.py").write_text(
        "from django.urls import include, path\n"
        'urlpatterns = [path("django_ca/", include("django_ca.urls"))]\n'
    )
    sys.path.insert(0, str(directory))
    settings.configure(
        ROOT_URLCONF="peer_urls",
        DEBUG=False,
        SECRET_KEY="bench-peer-" + "k" * 40,
        ALLOWED_HOSTS=["*"],
        USE_TZ=True,
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.messages",
            "django.contrib.staticfiles",
            "django.contrib.admin",
            "django_object_actions",
            "django_ca",
        ],
        DATABASES={
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(directory / "db")}
        },
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
            "django-ca": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(directory / "files"), "file_permissions_mode": 0o600},
            },
        },
        CA_DEFAULT_HOSTNAME="ca.example.com",
        CA_USE_CELERY=False,
        CA_ENABLE_ACME=False,
        LOGGING_CONFIG=None,
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def create_cas() -> dict:
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    from django_ca.key_backends import key_backends
    from django_ca.key_backends.storages.models import StoragesCreatePrivateKeyOptions
    from django_ca.models import CertificateAuthority

    backend = key_backends["default"]
    cas = {}
    for name, (key_type, key_size, curve) in KEY_TYPES.items():
        options = StoragesCreatePrivateKeyOptions(
            key_type=key_type,
            key_size=key_size,
            elliptic_curve=curve,
            password=None,
            path=Path("ca"),
        )
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Bench peer {name} CA")])
        cas[name] = CertificateAuthority.objects.init(
            name=f"peer-{name}",
            key_backend=backend,
            key_backend_options=options,
            subject=subject,
            not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=3650),
            key_type=key_type,
        )
    return cas


def csrs(n: int) -> list:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    out = []
    for i in range(n):
        key = ec.generate_private_key(ec.SECP256R1())
        name = f"h{i}-{time.monotonic_ns()}.bench.example.com"
        out.append(
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .sign(key, hashes.SHA256())
        )
    return out


def issue_round(ca, n: int) -> dict:
    """n certificates, one create_cert call each, the way django-ca's API and admin issue."""
    from cryptography import x509
    from django_ca.key_backends.storages.models import StoragesUsePrivateKeyOptions
    from django_ca.models import Certificate
    from django_ca.profiles import profiles

    pending = csrs(n)
    start = time.perf_counter()
    for csr in pending:
        # What the API's sign view does per certificate: its options, validated, then create_cert.
        options = StoragesUsePrivateKeyOptions.model_validate(
            {}, context={"ca": ca, "backend": ca.key_backend}, strict=True
        )
        cn = csr.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
        san = x509.Extension(
            oid=x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
            critical=False,
            value=x509.SubjectAlternativeName([x509.DNSName(cn)]),
        )
        Certificate.objects.create_cert(
            ca,
            options,
            csr,
            profile=profiles["server"],
            subject=csr.subject,
            not_after=dt.timedelta(days=90),
            extensions=[san],
        )
    return {"seconds": time.perf_counter() - start, "items": n}


def main() -> None:
    directory = Path(tempfile.mkdtemp(prefix="bench-peer-"))
    configure(directory)
    import django_ca

    cas = create_cas()
    print(json.dumps({"ready": True, "django_ca": django_ca.__version__}), flush=True)
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        if command[0] == "round":
            print(json.dumps(issue_round(cas[command[1]], int(command[2]))), flush=True)
        else:
            print(json.dumps({"error": f"unknown command {command[0]!r}"}), flush=True)


if __name__ == "__main__":
    main()
