"""Run in a subprocess on a file-backed SQLite database (tests/test_erasure_at_rest.py):
make a server key, approve, download it once (which erases it), then report whether any
line of the sealed key's PEM is still anywhere in the database file or its WAL."""

import json
import os
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ca_portal.settings_test")
django.setup()

from django.core.management import call_command  # noqa: E402

from requests_app import services  # noqa: E402
from requests_app.models import CertificateRequest  # noqa: E402
from tests.helpers.mailbox import confirmed  # noqa: E402

PASSPHRASE = "correct horse battery staple"
call_command("migrate", verbosity=0)
services.create_ca("CN=Erase Root,C=US", key_type="p256")
req = services.submit_request_with_server_key(
    profile="user", passphrase=PASSPHRASE, requester_email="e@example.test", requester_name="Eve"
)
sealed = CertificateRequest.objects.get(pk=req.pk).encrypted_private_key
services.approve_request(confirmed(req).public_id, agent=None)
services.download_server_key(req.public_id, passphrase=PASSPHRASE)  # and so erased
assert CertificateRequest.objects.get(pk=req.pk).encrypted_private_key == ""
database = Path(os.environ["DATABASE_URL"].removeprefix("sqlite:///"))
blobs = b"".join(
    p.read_bytes() for p in (database, database.with_name(database.name + "-wal")) if p.exists()
)
lines = [line for line in sealed.splitlines()[2:-1] if len(line) >= 40]
print(json.dumps({"checked": len(lines), "found": sum(line.encode() in blobs for line in lines)}))
