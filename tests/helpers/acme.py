"""ACME test helpers: a tiny http-01 responder on loopback, and the `acme` client library
(certbot's) pointed at a live portal with an external account binding."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import josepy as jose
from acme import challenges, client, crypto_util, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

USER_AGENT = "ca-portal-tests"


class HTTP01Responder:
    """Answers GET /.well-known/acme-challenge/<token> from `answers` (token -> body), on
    127.0.0.1 and a free port; records the Host headers it was asked for."""

    def __init__(self):
        self.answers: dict[str, str] = {}
        self.redirects: dict[str, str] = {}  # token -> Location
        self.hosts: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hosts.append(self.headers.get("Host", ""))
                token = self.path.rsplit("/", 1)[-1]
                if token in outer.redirects:
                    self.send_response(302)
                    self.send_header("Location", outer.redirects[token])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = outer.answers.get(token)
                if not self.path.startswith("/.well-known/acme-challenge/") or body is None:
                    self.send_response(404)
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
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def account_key(curve=ec.SECP256R1) -> jose.JWK:
    return jose.JWKEC(key=ec.generate_private_key(curve()))


def alg_for(key: jose.JWK):
    if isinstance(key, jose.JWKRSA):
        return jose.RS256
    return jose.ES384 if key.key.curve.name == "secp384r1" else jose.ES256


def acme_client(directory_url: str, key: jose.JWK) -> client.ClientV2:
    net = client.ClientNetwork(key, alg=alg_for(key), user_agent=USER_AGENT, verify_ssl=False)
    directory = client.ClientV2.get_directory(directory_url, net)
    return client.ClientV2(directory, net)


def register(
    acme: client.ClientV2, *, kid: str | None, hmac_key: str | None, email="ops@example.com"
):
    """newAccount with an EAB (when kid is given); returns the registration resource."""
    eab = None
    if kid is not None:
        eab = messages.ExternalAccountBinding.from_data(
            account_public_key=acme.net.key.public_key(),
            kid=kid,
            hmac_key=hmac_key,
            directory=acme.directory,
        )
    reg = messages.NewRegistration.from_data(
        email=email, terms_of_service_agreed=True, external_account_binding=eab
    )
    return acme.new_account(reg)


def new_key_and_csr(*names: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, crypto_util.make_csr(key_pem, list(names))


def answer_http01(acme: client.ClientV2, order, responder: HTTP01Responder, *, wrong=False):
    """Put each authorization's http-01 answer in the responder and tell the server."""
    for authz in order.authorizations:
        chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
        response, validation = chall.response_and_validation(acme.net.key)
        responder.answers[chall.chall.encode("token")] = "not-the-answer" if wrong else validation
        acme.answer_challenge(chall, response)


def deadline(seconds: float = 60) -> dt.datetime:
    return dt.datetime.now() + dt.timedelta(seconds=seconds)


def openssl_verify(tmp_path: Path, ca_pem: str, fullchain_pem: str) -> subprocess.CompletedProcess:
    """openssl verify of the chain's leaf against the CA, with the rest of the chain."""
    certs = [
        c + "-----END CERTIFICATE-----\n"
        for c in fullchain_pem.split("-----END CERTIFICATE-----")[:-1]
    ]
    leaf, chain = tmp_path / "leaf.pem", tmp_path / "chain.pem"
    ca = tmp_path / "ca.pem"
    leaf.write_text(certs[0].lstrip())
    chain.write_text("".join(certs[1:]))
    ca.write_text(ca_pem)
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca), "-untrusted", str(chain), str(leaf)],
        capture_output=True,
        text=True,
        check=False,
    )


class StubDNS:
    """A tiny authoritative DNS server on 127.0.0.1 (dnslib), answering A and TXT records
    from `records` ({(name, "A"|"TXT"): [values]}); point ACME_DNS_RESOLVER at `address`."""

    def __init__(self):
        from dnslib import QTYPE, RR, TXT, A
        from dnslib.server import BaseResolver, DNSServer

        self.records: dict[tuple[str, str], list[str]] = {}
        outer = self

        class Resolver(BaseResolver):
            def resolve(self, request, handler):
                reply = request.reply()
                qname = str(request.q.qname).rstrip(".").lower()
                qtype = QTYPE[request.q.qtype]
                for value in outer.records.get((qname, qtype), []):
                    rdata = A(value) if qtype == "A" else TXT(value)
                    reply.add_answer(RR(request.q.qname, request.q.qtype, rdata=rdata, ttl=1))
                if not reply.rr:
                    reply.header.rcode = 3  # NXDOMAIN
                return reply

        class Quiet:  # dnslib logs every query at INFO otherwise
            def __getattr__(self, name):
                return lambda *args, **kwargs: None

        self.server = DNSServer(Resolver(), address="127.0.0.1", port=0, logger=Quiet())
        self.port = self.server.server.server_address[1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self):
        self.server.start_thread()
        return self

    def __exit__(self, *exc):
        self.server.stop()


# --- signing by hand with josepy, for the test client -----------------------------------------


class Signer:
    """Posts JWS requests to the portal through Django's test client, as an ACME client
    would, with josepy doing the signing (acme.jws.JWS)."""

    def __init__(self, client, key: jose.JWK | None = None):
        self.client = client
        self.key = key or account_key()
        self.kid: str | None = None

    def nonce(self) -> str:
        return self.client.head("/acme/new-nonce")["Replay-Nonce"]

    def jws(self, path: str, payload, *, nonce: str | None = None, key=None, kid=..., url=None):
        from acme import jws as acme_jws

        key = key or self.key
        kid = self.kid if kid is ... else kid
        body = b"" if payload is None else json.dumps(payload).encode()
        signed = acme_jws.JWS.sign(
            body,
            key=key,
            alg=alg_for(key),
            nonce=jose.decode_b64jose(nonce or self.nonce()),
            url=url or f"http://testserver{path}",
            kid=kid,
        )
        return signed.json_dumps()

    def post(self, path: str, payload=None, *, content_type="application/jose+json", **options):
        body = self.jws(path, payload, **options)
        return self.client.post(path, body, content_type=content_type)

    def register(self, kid: str, hmac_key: str):
        """newAccount with an EAB made by josepy (HS256 over the account's public JWK)."""
        from acme import jws as acme_jws

        eab = acme_jws.JWS.sign(
            self.key.public_key().json_dumps().encode(),
            key=jose.JWKOct(key=jose.decode_b64jose(hmac_key)),
            alg=jose.HS256,
            nonce=None,
            url="http://testserver/acme/new-account",
            kid=kid,
        )
        response = self.post(
            "/acme/new-account",
            {
                "contact": ["mailto:ops@example.com"],
                "termsOfServiceAgreed": True,
                "externalAccountBinding": eab.to_json(),
            },
            kid=None,
        )
        if response.status_code in (200, 201):
            self.kid = response["Location"]
        return response
