"""Issuance: approvals through the services against the full work of a script, interleaved.

Sides, each run once per round in a shuffled order (bench.common.interleaved), each round
on fresh requests submitted outside the timed part:
  raw         what a script would do: load and verify the CSR, build with the same
              extensions as the server profile, sign with the already-loaded CA key, PEM
  single      services.approve_request, one transaction each (server profile, no linting)
  bulk        services.approve_all_pending
  raw_lint    raw, plus pkilint through the portal's wrapper before signing (--lint)
  single_lint single approvals with PREISSUANCE_LINT on (--lint)
Prints one JSON line: per-side rates and per-round ratios as median [min-max].
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from bench.common import fresh_database, interleaved, ratios, setup_django, spread, timed

SERVER = "server"


def make_csrs(count: int, tag: str) -> list[str]:
    """count PEM CSRs for distinct host names (P-256 requester keys: quick to make)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    from requests_app import pki

    out = []
    for i in range(count):
        key = pki.generate_private_key("p256")
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"h{i}-{tag}.example.com")])
        csr = x509.CertificateSigningRequestBuilder().subject_name(name)
        out.append(csr.sign(key, pki.signature_hash(key)).public_bytes(serialization.Encoding.PEM))
    return out


class Issuance:
    """The portal (Django set up in this process) with a CA, and the sides that time it."""

    def __init__(self, key_type: str, n: int):
        from django.conf import settings

        from requests_app import keys, pki, profiles, services

        self.n = n
        self.rounds_done = 0
        self.ca = services.create_ca(f"CN=Bench {key_type} CA", key_type=key_type)
        # The raw side signs with the key itself, loaded once, as a script without the portal
        # would; the same URLs and the server profile's options as the portal's certificates.
        key_file = Path(keys.backend_for(self.ca).key_location(self.ca))
        self.ca_key = pki.load_private_key(key_file.read_bytes(), settings.CA_KEY_PASSPHRASE)
        self.ca_cert = self.ca.certificate
        self.profile = profiles.get_profile(SERVER)
        self.urls = {
            "ca_issuers_url": self.ca.ca_issuers_url(),
            "crl_url": self.ca.crl_url(),
            "ocsp_url": self.ca.ocsp_url(),
        }

    def _fresh(self) -> list[bytes]:
        self.rounds_done += 1
        return make_csrs(self.n, f"r{self.rounds_done}")

    def _submit(self) -> list[str]:
        from requests_app import services

        tag = self.rounds_done + 1  # one address per request: the portal limits mail per address
        return [
            services.submit_request(
                profile=SERVER, csr=pem.decode(), requester_email=f"b{tag}-{i}@bench.example.com"
            ).public_id
            for i, pem in enumerate(self._fresh())
        ]

    def raw(self, lint: bool = False):
        """A side: the script's full work for n fresh CSRs."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        from requests_app import pki, profiles

        prof, ca_cert, ca_key, urls = self.profile, self.ca_cert, self.ca_key, self.urls
        key_type = pki.key_type_of(ca_cert.public_key())

        def side():
            pems = self._fresh()

            def work():
                for pem in pems:
                    csr = x509.load_pem_x509_csr(pem)
                    if not csr.is_signature_valid:
                        raise ValueError("bad CSR signature")
                    public_key, subject = csr.public_key(), csr.subject
                    cn = subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
                    sans = [x509.DNSName(cn)]
                    builder = pki.certificate_builder(
                        ca_cert=ca_cert,
                        public_key=public_key,
                        sans=sans,
                        validity_days=prof.validity_days,
                        **urls,
                        **profiles.certificate_options(
                            prof, public_key=public_key, subject=subject, sans=sans
                        ),
                    )
                    if lint:
                        pki.lint_builder(
                            builder,
                            key_type=key_type,
                            linters=prof.linters,
                            allow_single_label=prof.allow_single_label_names,
                        )
                    cert = pki.sign(builder, ca_key)
                    cert.public_bytes(serialization.Encoding.PEM)

            seconds, _ = timed(work)
            return seconds, len(pems)

        return side

    def single(self, lint: bool = False):
        """A side: services.approve_request for n fresh pending requests."""
        from django.conf import settings

        from requests_app import services

        def side():
            ids = self._submit()
            settings.PREISSUANCE_LINT = lint
            try:
                seconds, _ = timed(lambda: [services.approve_request(i, agent=None) for i in ids])
            finally:
                settings.PREISSUANCE_LINT = False
            return seconds, len(ids)

        return side

    def bulk(self):
        """A side: services.approve_all_pending over n fresh pending requests."""
        from requests_app import services

        def side():
            ids = self._submit()
            seconds, result = timed(services.approve_all_pending, agent=None)
            if len(result.approved) != len(ids):
                raise RuntimeError(f"bulk approved {len(result.approved)} of {len(ids)}")
            return seconds, len(ids)

        return side


def summary(rates: dict, pairs: dict) -> dict:
    """Per-side median rates and, per named pair (numerator, denominator), ratio spreads."""
    return {
        "per_s": {name: statistics.median(values) for name, values in rates.items()},
        "ratios": {name: spread(ratios(rates, a, b)) for name, (a, b) in pairs.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--ca", choices=["rsa2048", "p256"], default="p256")
    parser.add_argument("-n", type=int, default=300, help="certificates per side and round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--lint", action="store_true", help="add raw_lint and single_lint")
    args = parser.parse_args()
    setup_django(
        fresh_database(args.db, f"issuance_{args.ca}"),
        PREISSUANCE_LINT="False",
        # A dotted public name in the certificates' URLs: the CA/B linter refuses others.
        REVOCATION_BASE_URL="http://ca.example.com",
    )
    bench = Issuance(args.ca, args.n)
    sides = {"raw": bench.raw(), "single": bench.single(), "bulk": bench.bulk()}
    pairs = {"single/raw": ("single", "raw"), "bulk/raw": ("bulk", "raw")}
    if args.lint:
        sides |= {"raw_lint": bench.raw(lint=True), "single_lint": bench.single(lint=True)}
        pairs |= {
            "single_lint/raw_lint": ("single_lint", "raw_lint"),
            "raw_lint/raw": ("raw_lint", "raw"),
        }
    # One untimed pass of every side first: the key's first use, pkilint's validators.
    bench.n = 3
    for side in [bench.raw(), bench.single(), bench.bulk(), bench.raw(True), bench.single(True)]:
        side()
    bench.n = args.n
    rates = interleaved(sides, args.rounds, seed=args.seed)
    print(
        json.dumps(
            {
                "bench": "issuance",
                "db": args.db,
                "ca": args.ca,
                "n": args.n,
                "rounds": args.rounds,
                "rates": rates,
                **summary(rates, pairs),
            }
        )
    )


if __name__ == "__main__":
    main()
