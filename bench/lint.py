"""Pre-issuance linting: approvals (services.approve_request) with PREISSUANCE_LINT on and off.

Interleaved rounds (on, off, off, on, ...) over the same kind of pending requests, so that
drift on a shared machine hits both sides alike; the ratio off/on per round, reported as
median [min-max]. The first lint of a process (pkilint's validators, the throwaway key) is
paid before timing. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics

from bench.common import fresh_database, setup_django, timed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--ca", choices=["rsa2048", "p256"], default="p256")
    parser.add_argument("-n", type=int, default=200, help="approvals per round and side")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", action="store_true", help="a Baseline Requirements profile")
    args = parser.parse_args()
    setup_django(
        fresh_database(args.db, f"lint_{args.ca}"),
        # A dotted public name: the CA/B linter refuses internal names and bare hosts.
        REVOCATION_BASE_URL="http://ca.example.com",
    )

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID
    from django.conf import settings

    from requests_app import pki, services

    if args.baseline:
        settings.CA_PROFILES = {"server": {"baseline_requirements": True}}
    services.create_ca(f"CN=Bench {args.ca} CA", key_type=args.ca)

    def pending(count: int) -> list[str]:
        ids = []
        for _ in range(count):
            key = pki.generate_private_key("p256")
            name = f"h{len(ids)}-{id(key)}.example.com"
            csr = (
                x509.CertificateSigningRequestBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .sign(key, pki.signature_hash(key))
            )
            pem = csr.public_bytes(serialization.Encoding.PEM).decode()
            # One address per request: the portal limits mail per address and day.
            email = f"b{len(ids)}-{id(key)}@b.test"
            req = services.submit_request(profile="server", csr=pem, requester_email=email)
            ids.append(req.public_id)
        return ids

    def approve(ids: list[str], lint: bool) -> float:
        settings.PREISSUANCE_LINT = lint
        seconds, _ = timed(lambda: [services.approve_request(i, agent=None) for i in ids])
        return len(ids) / seconds

    approve(pending(3), True)  # warm-up: pkilint's validators and the throwaway key
    on_rates, off_rates = [], []
    for round_number in range(args.rounds):
        order = (True, False) if round_number % 2 == 0 else (False, True)
        for lint in order:
            rate = approve(pending(args.n), lint)
            (on_rates if lint else off_rates).append(rate)
    ratios = [on / off for on, off in zip(on_rates, off_rates, strict=True)]
    print(
        json.dumps(
            {
                "bench": "lint",
                "db": args.db,
                "ca": args.ca,
                "baseline": args.baseline,
                "n": args.n,
                "rounds": args.rounds,
                "on_per_s": statistics.median(on_rates),
                "off_per_s": statistics.median(off_rates),
                "ratio_median": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
            }
        )
    )


if __name__ == "__main__":
    main()
