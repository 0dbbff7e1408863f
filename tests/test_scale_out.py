"""Scaled out for real: two gunicorn processes and two db_workers on one PostgreSQL database.

200 personal requests are submitted over HTTP and confirmed through the mailed links, every
one is approved twice at once (once through each web process), and the automatic link mail
must reach each requester exactly once.
"""

from __future__ import annotations

import http.cookiejar
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.db import connection

from requests_app.models import AuditEvent, Certificate, CertificateRequest
from tests.helpers.csrs import make_csr
from tests.helpers.mfa import add_totp_device, next_totp_code
from tests.helpers.servers import DB_WORKER, SMTPServer, free_port, portal_env

ROOT = Path(__file__).resolve().parent.parent
COUNT = 200

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="several processes need a shared server database; CI runs this on PostgreSQL",
    ),
]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    """A cookie-keeping HTTP client that speaks Django's CSRF protocol."""

    def __init__(self):
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), NoRedirect()
        )

    def get(self, url: str) -> str:
        with self.opener.open(url, timeout=30) as response:
            return response.read().decode()

    def post(self, url: str, fields: dict, *, referer: str) -> tuple[int, str]:
        token = next(c.value for c in self.jar if c.name == "csrftoken")
        data = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": token}).encode()
        request = urllib.request.Request(url, data=data, headers={"Referer": referer})
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status, response.headers.get("Location", "")
        except urllib.error.HTTPError as exc:  # 302 arrives here because redirects are off
            return exc.code, exc.headers.get("Location", "")


def _confirmation_link(message) -> str:
    found = re.search(
        r"http://\S+/requests/\S+/confirm/\S+/", message.get_body(("plain",)).get_content()
    )
    return found.group(0) if found else ""


def _wait_for(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not come up")


@pytest.mark.skipif(
    shutil.which("gunicorn", path=str(Path(sys.executable).parent)) is None,
    reason="gunicorn is not installed in this venv (pip install -r requirements.txt)",
)
def test_two_web_processes_and_two_workers(ca, agent, settings, tmp_path):
    """Double approvals through two web processes issue once each; each requester gets one mail."""
    # The web processes run the production hashers; the test settings use a fast MD5 one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    agent.set_password("agent-pass-123")
    agent.save()
    device = add_totp_device(agent)
    smtp = SMTPServer().start()
    ports = [free_port(), free_port()]
    env = portal_env(
        settings,
        EMAIL_URL=smtp.email_url,
        SECRET_KEY="scale-out-test-secret-key-" + "x" * 30,
        SITE_URL=f"http://127.0.0.1:{ports[0]}",
        ALLOWED_HOSTS="127.0.0.1",
        DELIVERY_NOTIFICATIONS="False",
        ENROLL_RATE_LIMIT="100000/60",
        STATIC_ROOT=str(tmp_path / "static"),
    )
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    processes = [
        subprocess.Popen(
            [gunicorn, "ca_portal.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1", "--threads", "4"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    processes += [
        subprocess.Popen(
            DB_WORKER,
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        deadline = time.monotonic() + 60
        for base in bases:
            _wait_for(f"{base}/healthz", deadline)

        requester = Browser()
        enroll = f"{bases[0]}/enroll/user/"
        requester.get(enroll)
        public_ids = []
        for i in range(COUNT):
            status, location = requester.post(
                enroll,
                {
                    "csr": make_csr(cn=f"User {i}"),
                    "requester_email": f"user{i}@example.test",
                    "requester_name": f"User {i}",
                },
                referer=enroll,
            )
            assert status == 302, (status, location)
            public_ids.append(re.search(r"/requests/([0-9A-Z]+)/", location).group(1))

        # Each requester proves the mailbox with the link the workers mailed (POST: a GET
        # only shows the Confirm button).
        deadline = time.monotonic() + 180
        while len(smtp.messages) < COUNT and time.monotonic() < deadline:
            time.sleep(0.2)
        links = [_confirmation_link(m) for m in smtp.messages]
        assert len(links) == COUNT and all(links)
        for link in links:
            status, location = requester.post(link, {}, referer=link)
            assert status == 302, (status, location)

        agents = []
        for base in bases:
            browser = Browser()
            browser.get(f"{base}/accounts/login/")
            status, _ = browser.post(
                f"{base}/accounts/login/",
                {"username": agent.username, "password": "agent-pass-123"},
                referer=f"{base}/accounts/login/",
            )
            assert status == 302
            verify = f"{base}/accounts/verify/"
            browser.get(verify)  # the second factor: the code the agent's app shows
            status, _ = browser.post(verify, {"code": next_totp_code(device)}, referer=verify)
            assert status == 302
            browser.get(f"{base}/agent/")  # refresh the CSRF cookie after login
            agents.append((base, browser))

        def approve(job):
            (base, browser), public_id = job
            url = f"{base}/agent/requests/{public_id}/approve/"
            return browser.post(url, {"validity_days": "", "note": ""}, referer=url)

        jobs = [(agents[k], public_id) for public_id in public_ids for k in (0, 1)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(pool.map(approve, jobs))
        issued = [loc for status, loc in outcomes if status == 302 and loc.endswith("/issued/")]
        refused = [
            loc for status, loc in outcomes if status == 302 and not loc.endswith("/issued/")
        ]
        assert len(issued) == COUNT, Counter(status for status, _ in outcomes)
        assert len(refused) == COUNT

        deadline = time.monotonic() + 180
        while len(smtp.messages) < 2 * COUNT and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)  # anything duplicated would arrive now
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        smtp.stop()

    assert Certificate.objects.count() == COUNT
    assert CertificateRequest.objects.filter(status="complete").count() == COUNT
    links = [m for m in smtp.messages if "/retrieve/" in m.get_body(("plain",)).get_content()]
    received = Counter(m["To"] for m in links)
    assert sorted(received) == sorted(f"user{i}@example.test" for i in range(COUNT))
    assert set(received.values()) == {1}
    assert len(smtp.messages) == 2 * COUNT  # a confirmation and a link each, nothing twice
    actions = Counter(AuditEvent.objects.values_list("action", flat=True))
    for action in ("request_submitted", "email_confirmed", "request_approved"):
        assert actions[action] == COUNT, actions
    for action in ("delivery_queued", "delivery_sent"):
        assert actions[action] == 2 * COUNT, actions
