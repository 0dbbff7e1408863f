"""Pages under load: the certificate page, the PEM download (and OCSP, when present) served
by gunicorn with one worker per core, driven by wrk on loopback, against a trivial view
in the same server. Every page and the trivial view run once per round (wrk for a few
seconds each), in a shuffled order; the ratio page/trivial per round, median [min-max].
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.common import ROOT, fresh_database, interleaved, ratios, setup_django, spread

WRK_POST = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/ocsp-request"
wrk.body = io.open("{body}", "rb"):read()
"""


def wrk(url: str, seconds: int, script: str | None = None) -> float:
    command = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", url]
    if script:
        command[1:1] = ["-s", script]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    assert not non_2xx, output
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print(json.dumps({"bench": "web", "skipped": "wrk is not installed (apt-get install wrk)"}))
        return
    database_url = fresh_database(args.db, "web")
    setup_django(database_url)
    from requests_app import services
    from tests.helpers.csrs import make_csr
    from tests.helpers.servers import free_port

    services.create_ca("CN=Bench Web CA", key_type="p256")
    cert = services.issue_certificate(
        profile="server", csr=make_csr(cn="web.bench.test"), requester_email="w@bench.test"
    )
    port = free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings", "DATABASE_URL": database_url}
    workers = str(os.cpu_count() or 1)
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "bench.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            workers,
            "--access-logfile",
            "/dev/null",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/bench/trivial/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        pages = {
            "trivial view": f"{base}/bench/trivial/",
            "certificate page": f"{base}/certificates/{cert.serial}/",
            "PEM download": f"{base}/certificates/{cert.serial}/download/pem/",
        }
        scripts = {}
        ocsp = _ocsp_request(cert)
        if ocsp is not None:
            body = Path(tempfile.mkdtemp()) / "ocsp.der"
            body.write_bytes(ocsp)
            script = body.with_suffix(".lua")
            script.write_text(WRK_POST.format(body=body))
            check = urllib.request.Request(
                f"{base}/ocsp", data=ocsp, headers={"Content-Type": "application/ocsp-request"}
            )
            if urllib.request.urlopen(check, timeout=5).status == 200:
                pages["OCSP (POST)"] = f"{base}/ocsp"
                scripts["OCSP (POST)"] = str(script)
        for name, url in pages.items():  # warm every worker and every page's caches
            wrk(url, 1, scripts.get(name))
        sides = {name: _side(url, args.seconds, scripts.get(name)) for name, url in pages.items()}
        rates = interleaved(sides, args.rounds, seed=args.seed)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(
        json.dumps(
            {
                "bench": "web",
                "db": args.db,
                "workers": int(workers),
                "seconds": args.seconds,
                "rounds": args.rounds,
                "rates": rates,
                "pages": {
                    name: {
                        "per_s": statistics.median(rates[name]),
                        "trivial_per_s": statistics.median(rates["trivial view"]),
                        "ratio": spread(ratios(rates, name, "trivial view")),
                    }
                    for name in rates
                    if name != "trivial view"
                },
            }
        )
    )


def _side(url: str, seconds: int, script: str | None):
    """A side: wrk against url for `seconds`; (seconds, requests served)."""

    def run():
        return seconds, wrk(url, seconds, script) * seconds

    return run


def _ocsp_request(cert) -> bytes | None:
    """A DER OCSP request for cert, or None when this portal has no OCSP responder yet."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509 import ocsp
    from django.urls import Resolver404, resolve

    try:
        resolve("/ocsp")
    except Resolver404:
        return None
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        cert.x509, cert.ca.certificate, hashes.SHA1()
    )
    return builder.build().public_bytes(serialization.Encoding.DER)


if __name__ == "__main__":
    main()
