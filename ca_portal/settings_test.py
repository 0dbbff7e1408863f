"""Settings for the test suite: the real settings with fast, local parts swapped in."""

import os
import tempfile

os.environ.setdefault("TASKS_BACKEND", "immediate")

from .settings import *  # noqa: F403

CA_KEY_DIR = Path(tempfile.mkdtemp(prefix="ca-portal-test-keys-"))  # noqa: F405
CA_KEY_PASSPHRASE = "test-passphrase-not-secret"  # noqa: S105
SITE_URL = "http://testserver"
# A dotted host: pkilint (run before every issuance) refuses URLs on "testserver".
REVOCATION_BASE_URL = os.environ.get("REVOCATION_BASE_URL", "http://ca.example.test")
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
ANYMAIL = {"WEBHOOK_SECRET": "hook:secret-for-tests"}
DELIVERY_BACKENDS = {
    **DELIVERY_BACKENDS,  # noqa: F405
    "test": {"BACKEND": "delivery.backends.test.TestBackend"},
}
# Tests submit many requests from one address; the rate-limit tests lower this themselves.
ENROLL_RATE_LIMIT = "1000000/3600"
MAIL_PER_RECIPIENT_PER_DAY = 1000000
# Key files: fewer KDF rounds than production's 600,000, so the hundreds of CAs the suite
# makes stay fast (the tests of key storage set the production value themselves).
CA_KEY_KDF_ROUNDS = 10_000
