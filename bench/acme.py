"""ACME orders completed per second for an approved account, against the same issuance
through services.submit_request + services.approve_request.

The portal serves HTTP on loopback (gunicorn, one sync worker, the bench's SQLite file);
the client is certbot's `acme` library with a P-256 account key bound by EAB, and a tiny
http-01 responder on loopback answers the challenges (ACME_HTTP01_ADDRESS/PORT point the
portal's validation at it). One ACME order is: a new key and CSR, newOrder, the http-01
answer, the challenge POST (validated synchronously by the portal), the authorization read,
finalize, the order read if still processing, and the certificate download. One services
issuance is: a new key and CSR, submit_request, approve_request (the same profile, CA and
policy, pre-issuance linting included on both sides).

Rounds alternate the two sides in a shuffled order; the ratio ACME/services per round is
reported as median [min-max]. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.common import ROOT, fresh_database, setup_django, table, timed
from tests.helpers.servers import free_port


class Responder:
    """http-01 answers (token -> key authorization) on a free port of 127.0.0.1."""

    def __init__(self):
        answers: dict[str, str] = {}
        self.answers = answers

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = answers.get(self.path.rsplit("/", 1)[-1])
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def serve_portal(port: int, database_url: str) -> subprocess.Popen:
    """gunicorn serving the portal on 127.0.0.1:port against the bench's database (one sync
    worker: the client sends one request at a time)."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "ca_portal.settings",
        "DATABASE_URL": database_url,
    }
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "ca_portal.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "1",
            "--access-logfile",
            "/dev/null",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(150):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/acme/directory", timeout=1).close()
            return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("gunicorn did not answer /acme/directory")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20, help="certificates per round and side")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ca", choices=["rsa2048", "p256"], default="p256")
    args = parser.parse_args()
    responder = Responder()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    database_url = fresh_database("sqlite", f"acme_{args.ca}")
    setup_django(
        database_url,
        SITE_URL=base,
        # pkilint refuses revocation URLs on a bare host or IP.
        REVOCATION_BASE_URL="http://ca.example.com",
        ACME_HTTP01_ADDRESS="127.0.0.1",
        ACME_HTTP01_PORT=str(responder.port),
        ACME_ALLOW_PRIVATE_ADDRESSES="True",
        ACME_NEW_ORDER_RATE_LIMIT="100000000/3600",
        ACME_NEW_ACCOUNT_RATE_LIMIT="100000000/3600",
        ACME_FAILED_VALIDATION_RATE_LIMIT="100000000/3600",
        ENROLL_RATE_LIMIT="100000000/3600",
        MAIL_PER_RECIPIENT_PER_DAY="100000000",
    )

    from requests_app import services
    from requests_app.acme import services as acme_services

    services.create_ca(f"CN=Bench ACME {args.ca} CA", key_type=args.ca)
    binding, hmac_key = acme_services.create_binding(
        email="bench@example.com", names=["*.example.com"], actor=None
    )

    server = serve_portal(port, database_url)
    try:
        run_rounds(args, base, binding, hmac_key, responder)
    finally:
        server.terminate()
        server.wait(10)


def run_rounds(args, base: str, binding, hmac_key: str, responder: Responder) -> None:
    import josepy as jose
    from acme import challenges, client, crypto_util, messages
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from requests_app import services

    key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(key, alg=jose.ES256, user_agent="ca-portal-bench")
    directory = client.ClientV2.get_directory(f"{base}/acme/directory", net)
    acme = client.ClientV2(directory, net)
    eab = messages.ExternalAccountBinding.from_data(
        account_public_key=key.public_key(), kid=binding.kid, hmac_key=hmac_key, directory=directory
    )
    acme.new_account(
        messages.NewRegistration.from_data(
            email="bench@example.com", terms_of_service_agreed=True, external_account_binding=eab
        )
    )

    counter = iter(range(10**9))

    def new_csr() -> bytes:
        name = f"h{next(counter)}.example.com"
        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return crypto_util.make_csr(pem, [name])

    def acme_order() -> str:
        order = acme.new_order(new_csr())
        for authz in order.authorizations:
            chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
            response, validation = chall.response_and_validation(key)
            responder.answers[chall.chall.encode("token")] = validation
            acme.answer_challenge(chall, response)
            authzr, _ = acme.poll(authz)
            if authzr.body.status != messages.STATUS_VALID:
                raise RuntimeError(f"authorization {authzr.body.status}: {authzr.body}")
        # The library's own finalize_order sleeps a second before its first poll; a client
        # that reads the finalize answer first is what this measures.
        order = acme.begin_finalization(order)
        body = order.body
        while body.status != messages.STATUS_VALID or body.certificate is None:
            if body.status == messages.STATUS_INVALID:
                raise RuntimeError(f"order invalid: {body.error}")
            time.sleep(0.01)
            body = messages.Order.from_json(acme._post_as_get(order.uri).json())
        pem = acme._post_as_get(body.certificate).text
        if "BEGIN CERTIFICATE" not in pem:
            raise RuntimeError("no certificate downloaded")
        return pem

    def services_issue() -> str:
        req = services.submit_request(
            profile="server", csr=new_csr(), requester_email="bench@example.com"
        )
        return services.approve_request(req, agent=None).pem

    sides = {"acme": acme_order, "services": services_issue}
    for issue in sides.values():  # warm-up: pkilint, the CA key, connections
        issue()
    rates: dict[str, list[float]] = {"acme": [], "services": []}
    for _ in range(args.rounds):
        order = list(sides)
        random.shuffle(order)
        for side in order:
            seconds, _ = timed(lambda side=side: [sides[side]() for _ in range(args.n)])
            rates[side].append(args.n / seconds)
    ratios = [a / s for a, s in zip(rates["acme"], rates["services"], strict=True)]
    print(
        json.dumps(
            {
                "bench": "acme",
                "ca": args.ca,
                "n": args.n,
                "rounds": args.rounds,
                "acme_per_s": statistics.median(rates["acme"]),
                "services_per_s": statistics.median(rates["services"]),
                "acme_rates": rates["acme"],
                "services_rates": rates["services"],
                "ratio_median": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
            }
        )
    )


def section(run, quick: bool) -> str:
    """bench/run.py's section: run this module in its own process and tabulate its line."""
    r = run("acme", "-n", "5" if quick else "20", "--rounds", "5")
    if "error" in r:
        return f"## ACME orders\n\nerror: {r['error']}"
    return (
        "## ACME orders (certificates per second)\n\n"
        + table(
            [
                "ACME order (http-01, finalize, download)",
                "submit_request + approve_request",
                "ratio ACME/services, median [min-max]",
                "n per round and side",
                "rounds",
            ],
            [
                [
                    f"{r['acme_per_s']:.1f}/s",
                    f"{r['services_per_s']:.1f}/s",
                    f"{r['ratio_median']:.2f} [{r['ratio_min']:.2f}-{r['ratio_max']:.2f}]",
                    str(r["n"]),
                    str(r["rounds"]),
                ]
            ],
        )
        + "\n\nAn approved account (EAB, P-256 account key, certbot's `acme` library) against "
        + "gunicorn (one sync worker) on loopback, SQLite; each order is newOrder, the http-01 "
        + "answer from a loopback responder, the challenge POST, the authorization read, "
        + "finalize and the certificate download. Shuffled interleaved rounds."
    )


if __name__ == "__main__":
    main()
