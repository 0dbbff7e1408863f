"""Guessing a server-made key's passphrase (issue 13): the .p12 download needs the request ID,
its lockout counts per certificate as well as per address, concurrent guesses are judged one
at a time, and the KDF runs before any row lock. Counters are atomic in the cache."""

from __future__ import annotations

import http.client
import http.cookies
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.urls import reverse

from requests_app import pki, services, throttle
from requests_app.models import AuditEvent, CertificateRequest
from tests.conftest import SERVER_KEY_PASSPHRASE
from tests.helpers.csrs import make_csr
from tests.helpers.nginx import Nginx, nginx_binary
from tests.helpers.servers import free_port, portal_env

ROOT = Path(__file__).resolve().parent.parent

PASSPHRASE = SERVER_KEY_PASSPHRASE
WRONG = "not the passphrase, a guess"

pytestmark = pytest.mark.usefixtures("empty_cache")


@pytest.fixture
def evaluations(monkeypatch):
    """Counts the passphrases actually tried against the sealed key (each one a scrypt)."""
    seen = []
    lock = threading.Lock()
    unseal = pki.unseal

    def counting(sealed, passphrase):
        with lock:
            seen.append(passphrase)
        return unseal(sealed, passphrase)

    monkeypatch.setattr(pki, "unseal", counting)
    return seen


def _guess(client, cert, passphrase=WRONG, request_id=None, **extra):
    if request_id is None:
        request_id = CertificateRequest.objects.get(certificate=cert).public_id
    fields = {"request_id": request_id, "passphrase": passphrase, "pkcs12_format": "modern"}
    return client.post(reverse("certificate_pkcs12", args=[cert.serial]), fields, **extra)


def _key_stored(cert) -> bool:
    return bool(CertificateRequest.objects.get(certificate=cert).encrypted_private_key)


def test_62_addresses_get_the_budget_of_one(server_key_cert, settings, evaluations):
    """62 guesses from 62 addresses: the certificate's budget is evaluated, the rest locked."""
    settings.KEY_DOWNLOAD_FREE_ATTEMPTS = 5
    budget = settings.KEY_DOWNLOAD_FREE_ATTEMPTS + 1  # the free ones, and the one that locks
    statuses = [
        _guess(Client(REMOTE_ADDR=f"127.0.0.{n}"), server_key_cert).status_code
        for n in range(2, 64)
    ]
    assert statuses == [400] * budget + [429] * (62 - budget)
    assert len(evaluations) == budget
    # The owner, from yet another address, waits too: the documented price of counting per
    # certificate. Only someone with the request ID can cause it (see the next test).
    assert _guess(Client(REMOTE_ADDR="127.0.1.1"), server_key_cert, PASSPHRASE).status_code == 429
    assert _key_stored(server_key_cert)


def test_the_serial_alone_can_neither_guess_nor_lock_out(server_key_cert, settings, evaluations):
    """Without the request ID no passphrase is tried and the certificate's count stays 0."""
    settings.KEY_DOWNLOAD_FREE_ATTEMPTS = 2
    settings.KEY_DOWNLOAD_ADDRESS_FREE_ATTEMPTS = 3
    for n in range(2, 40):
        attacker = Client(REMOTE_ADDR=f"127.0.2.{n}")
        for _ in range(3):
            response = _guess(attacker, server_key_cert, request_id="ABCD-EFGH-JKMN-PQRS-TVWX")
            assert response.status_code == 400
            assert "not the request ID of this certificate" in response.content.decode()
    one = Client(REMOTE_ADDR="127.0.3.1")
    assert [
        _guess(one, server_key_cert, request_id="ABCD-EFGH-JKMN-PQRS-TVW0").status_code
        for _ in range(5)
    ] == [
        400,
        400,
        400,
        400,
        429,
    ]  # one address is locked after its own budget of wrong IDs
    assert evaluations == []
    owner = _guess(Client(REMOTE_ADDR="127.0.4.1"), server_key_cert, PASSPHRASE)
    assert owner.status_code == 200
    assert owner["Content-Type"] == "application/x-pkcs12"


@pytest.mark.django_db(transaction=True)
def test_40_concurrent_guesses_get_exactly_the_budget(server_key_cert, settings, evaluations):
    """40 guesses at once from one address: exactly the budget is evaluated, the rest wait
    their turn and find the form locked."""
    settings.KEY_DOWNLOAD_FREE_ATTEMPTS = 5
    budget = settings.KEY_DOWNLOAD_FREE_ATTEMPTS + 1
    barrier = threading.Barrier(40)

    def guess(_):
        barrier.wait()
        try:
            return _guess(Client(REMOTE_ADDR="198.51.100.9"), server_key_cert).status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(guess, range(40)))
    assert sorted(statuses) == [400] * budget + [429] * (40 - budget)
    assert len(evaluations) == budget
    assert _key_stored(server_key_cert)


def test_the_kdf_runs_outside_any_transaction(server_key_cert, monkeypatch):
    """scrypt (unseal) and the .p12's own KDF run before the row is locked."""
    in_transaction = []
    unseal, to_pkcs12 = pki.unseal, pki.to_pkcs12

    def watched(function):
        def run(*args, **kwargs):
            in_transaction.append(connection.in_atomic_block)
            return function(*args, **kwargs)

        return run

    monkeypatch.setattr(pki, "unseal", watched(unseal))
    monkeypatch.setattr(pki, "to_pkcs12", watched(to_pkcs12))
    req = CertificateRequest.objects.get(certificate=server_key_cert)
    with pytest.raises(services.WrongPassphrase):
        services.download_server_key(req.public_id, passphrase=WRONG)
    assert services.download_server_key(req.public_id, passphrase=PASSPHRASE)
    # pytest-django wraps each test in a transaction: one level, never the service's own.
    assert in_transaction and set(in_transaction) == {connection.in_atomic_block}
    with pytest.raises(services.KeyNotAvailable):
        services.download_server_key(req.public_id, passphrase=PASSPHRASE)


def test_a_key_taken_while_it_was_opened_is_not_handed_over_twice(server_key_cert, monkeypatch):
    """If another download takes the key while this one runs its KDF, this one is refused."""
    req = CertificateRequest.objects.get(certificate=server_key_cert)
    unseal = pki.unseal
    raced = []

    def racing(sealed, passphrase):
        key = unseal(sealed, passphrase)
        if not raced:  # the other download wins while this one is in its KDF
            raced.append("racing")
            raced.append(services.download_server_key(req.public_id, passphrase=PASSPHRASE))
        return key

    monkeypatch.setattr(pki, "unseal", racing)
    with pytest.raises(services.KeyNotAvailable):
        services.download_server_key(req.public_id, passphrase=PASSPHRASE)
    assert len(raced) == 2  # the other one got the key
    assert req.audit_events.filter(action="private_key_downloaded").count() == 1


# --- the counters -------------------------------------------------------------------


def _redis_cache():
    """Django's Redis cache on a database of its own, or None when no Redis runs here."""
    from django.core.cache.backends.redis import RedisCache

    location = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
    redis_cache = RedisCache(location, {"KEY_PREFIX": f"guessing-{os.getpid()}"})
    try:
        redis_cache.get("ping")
    except Exception:
        return None
    return redis_cache


@pytest.mark.parametrize("backend", ["locmem", "redis"])
def test_concurrent_counts_get_exactly_the_rate(backend, monkeypatch):
    """50 threads counting against a limit of 20 at once: exactly 20 are allowed."""
    if backend == "redis":
        shared = _redis_cache()
        if shared is None:
            pytest.skip("no Redis on 127.0.0.1:6379")
        monkeypatch.setattr(throttle, "cache", shared)
    scope = f"concurrency-{backend}-{threading.get_ident()}"
    barrier = threading.Barrier(50)

    def use(_):
        barrier.wait()
        return throttle.within_rate(scope, "20/3600")

    with ThreadPoolExecutor(50) as pool:
        allowed = list(pool.map(use, range(50)))
    assert allowed.count(True) == 20
    if backend == "redis":  # only this test's counter: the Redis database may be shared
        throttle.cache.delete(throttle._key(f"rate-{int(throttle.clock() // 3600)}", scope))


def test_one_at_a_time_is_exclusive_and_gives_up(monkeypatch):
    """Two holders of one scope never overlap; a holder that never lets go makes others Busy."""
    inside, overlaps = [0], []
    lock = threading.Lock()

    def hold(_):
        with throttle.one_at_a_time("scope-a"):
            with lock:
                inside[0] += 1
                overlaps.append(inside[0])
            threading.Event().wait(0.01)
            with lock:
                inside[0] -= 1

    with ThreadPoolExecutor(10) as pool:
        list(pool.map(hold, range(10)))
    assert max(overlaps) == 1

    monkeypatch.setattr(throttle, "LOCK_WAIT_SECONDS", 0.1)
    with throttle.one_at_a_time("scope-b"), pytest.raises(throttle.Busy):  # noqa: SIM117
        with throttle.one_at_a_time("scope-b"):
            pass
    with throttle.one_at_a_time("scope-b"):  # released on the way out
        pass
    assert cache.get(throttle._key("one-at-a-time", "scope-b")) is None


# --- behind a real reverse proxy, and across processes --------------------------------


class Visitor:
    """A browser on one loopback address: keeps cookies and answers Django's CSRF check."""

    def __init__(self, base: str, source: str):
        parsed = urllib.parse.urlparse(base)
        self.host, self.port, self.source = parsed.hostname, parsed.port, source
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, fields: dict | None = None) -> tuple[int, str]:
        conn = http.client.HTTPConnection(
            self.host, self.port, timeout=60, source_address=(self.source, 0)
        )
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = None
        if fields is not None:
            fields = {**fields, "csrfmiddlewaretoken": self.cookies.get("csrftoken", "")}
            body = urllib.parse.urlencode(fields)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        for header in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in http.cookies.SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        text = response.read().decode(errors="replace")
        conn.close()
        return response.status, text

    def enroll(self, n: int) -> int:
        if "csrftoken" not in self.cookies:
            self.request("GET", "/enroll/server/")
        fields = {"csr": make_csr(cn=f"host{n}.example.test"), "requester_email": "o@example.test"}
        return self.request("POST", "/enroll/server/", fields)[0]

    def guess(self, cert, passphrase: str, request_id: str) -> tuple[int, str]:
        if "csrftoken" not in self.cookies:
            self.request("GET", reverse("certificate_detail", args=[cert.serial]))
        fields = {"request_id": request_id, "passphrase": passphrase, "pkcs12_format": "modern"}
        return self.request("POST", reverse("certificate_pkcs12", args=[cert.serial]), fields)


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (.ci/run installs it)")
def test_behind_nginx_each_client_has_its_own_budget(
    live_server, server_key_cert, settings, tmp_path
):
    """Through a real nginx: one client's 60 enrollments leave the next client's budget
    whole, audit rows name the client, and a serial-knower cannot lock the owner out."""
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    settings.ENROLL_RATE_LIMIT = "60/3600"
    settings.KEY_DOWNLOAD_ADDRESS_FREE_ATTEMPTS = 3
    with Nginx(upstream=live_server.url, tmp=tmp_path) as proxy:
        first = Visitor(proxy.url, "127.0.0.5")
        assert [first.enroll(n) for n in range(60)] == [302] * 60
        assert first.enroll(60) == 429
        assert Visitor(proxy.url, "127.0.0.6").enroll(61) == 302
        server_requests = CertificateRequest.objects.filter(profile="server")
        ips = set(server_requests.values_list("submitter_ip", flat=True))
        assert ips == {"127.0.0.5", "127.0.0.6"}
        rows = AuditEvent.objects.filter(action="request_submitted", request__profile="server")
        rows = rows.values_list("ip", flat=True)
        assert set(rows) == {"127.0.0.5", "127.0.0.6"}

        attacker = Visitor(proxy.url, "127.0.0.7")
        statuses = [
            attacker.guess(server_key_cert, PASSPHRASE, "ABCD-EFGH-JKMN-PQRS-TVWX")[0]
            for _ in range(8)
        ]
        assert statuses == [400, 400, 400, 400, 429, 429, 429, 429]
        owner = Visitor(proxy.url, "127.0.0.8")
        status, _ = owner.guess(server_key_cert, PASSPHRASE, server_key_cert.request.display_id)
        assert status == 200
        assert not _key_stored(server_key_cert)


def _redis_url() -> str | None:
    shared = _redis_cache()
    return os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/11") if shared else None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="several processes need a shared server database; CI runs this on PostgreSQL",
)
@pytest.mark.skipif(
    shutil.which("gunicorn", path=str(Path(sys.executable).parent)) is None,
    reason="gunicorn is not installed in this venv",
)
def test_four_gunicorn_workers_share_one_budget_in_redis(server_key_cert, settings):
    """gunicorn -w 4 with CACHE_URL=redis://: 40 sequential guesses get exactly the budget,
    and a restart of every process keeps the lockout."""
    redis_url = _redis_url()
    if redis_url is None:
        pytest.skip("no Redis on 127.0.0.1:6379")
    budget = 5 + 1
    port = free_port()
    env = portal_env(
        settings,
        CACHE_URL=redis_url,
        ALLOWED_HOSTS="127.0.0.1",
        SITE_URL=f"http://127.0.0.1:{port}",
        KEY_DOWNLOAD_FREE_ATTEMPTS="5",
        KEY_DOWNLOAD_ADDRESS_FREE_ATTEMPTS="1000",  # this test is about the certificate's count
    )
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    command = [gunicorn, "ca_portal.wsgi", "-b", f"127.0.0.1:{port}", "-w", "4"]

    def start():
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
                return process
            except urllib.error.HTTPError:
                return process  # up, even if unhealthy
            except OSError:
                time.sleep(0.2)
        process.kill()
        raise AssertionError("gunicorn did not come up")

    def stop(process):
        process.terminate()
        process.wait(20)

    request_id = server_key_cert.request.public_id
    process = start()
    try:
        outcomes = []
        for _ in range(40):  # a new connection each time: the workers take turns
            status, html = Visitor(f"http://127.0.0.1:{port}", "127.0.0.1").guess(
                server_key_cert, WRONG, request_id
            )
            outcomes.append("tried" if "does not open your key" in html else status)
        assert outcomes == ["tried"] * budget + [429] * (40 - budget)
    finally:
        stop(process)
    process = start()
    try:
        status, _ = Visitor(f"http://127.0.0.1:{port}", "127.0.0.1").guess(
            server_key_cert, PASSPHRASE, request_id
        )
        assert status == 429  # the restart forgot nothing
    finally:
        stop(process)
    assert _key_stored(server_key_cert)
