"""Issuance: approving N pending requests through the services, against cryptography alone.

(a) one transaction per request (services.approve_request), (b) the bulk path
(services.approve_all_pending), (raw) load + verify the CSR, build, sign, with nothing else.
Pre-issuance linting is off here (bench/lint.py measures it).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from bench.common import fresh_database, setup_django, timed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--ca", choices=["rsa2048", "p256"], default="p256")
    parser.add_argument("-n", type=int, default=2000)
    args = parser.parse_args()
    # Without pre-issuance linting, so that the ratios measure the portal's own overhead;
    # bench/lint.py measures what linting costs.
    setup_django(fresh_database(args.db, f"issuance_{args.ca}"), PREISSUANCE_LINT="False")

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID
    from django.conf import settings

    from requests_app import keys, pki, services

    ca = services.create_ca(f"CN=Bench {args.ca} CA", key_type=args.ca)
    # The raw loop signs with the key itself, as a script without the portal would.
    key_file = Path(keys.backend_for(ca).key_location(ca))
    ca_key = pki.load_private_key(key_file.read_bytes(), settings.CA_KEY_PASSPHRASE)
    ca_cert = ca.certificate

    # CSRs are made beforehand and not timed (P-256 requester keys: fast to generate).
    csrs = []
    for i in range(args.n):
        key = pki.generate_private_key("p256")
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"h{i}.bench.test")]))
            .sign(key, pki.signature_hash(key))
        )
        csrs.append(csr.public_bytes(serialization.Encoding.PEM).decode())

    def raw_loop():
        for pem in csrs:
            csr = x509.load_pem_x509_csr(pem.encode())
            assert csr.is_signature_valid
            pki.issue_certificate(
                ca_cert=ca_cert,
                ca_key=ca_key,
                public_key=csr.public_key(),
                subject=csr.subject,
                sans=[x509.DNSName(csr.subject.rfc4514_string()[3:])],
                extended_key_usages=["serverAuth"],
                validity_days=90,
                ca_issuers_url="http://x/ca.cer",
                crl_url="http://x/crl",
                now=dt.datetime.now(dt.UTC),
            )

    def submit_all():
        return [
            services.submit_request(
                profile="server", csr=pem, requester_email="b@bench.test"
            ).public_id
            for pem in csrs
        ]

    raw_seconds, _ = timed(raw_loop)

    ids = submit_all()
    single_seconds, _ = timed(lambda: [services.approve_request(i, agent=None) for i in ids])

    submit_all()
    bulk_seconds, result = timed(services.approve_all_pending, agent=None)
    assert len(result.approved) == args.n, result.refused[:3]

    print(
        json.dumps(
            {
                "bench": "issuance",
                "db": args.db,
                "ca": args.ca,
                "n": args.n,
                "raw_per_s": args.n / raw_seconds,
                "single_per_s": args.n / single_seconds,
                "bulk_per_s": args.n / bulk_seconds,
                "single_ratio": raw_seconds / single_seconds,
                "bulk_ratio": raw_seconds / bulk_seconds,
            }
        )
    )


if __name__ == "__main__":
    main()
