"""The audit chain's cost per approval: approvals with the chain against the same approvals
with chaining switched off (rows saved unchained), in interleaved rounds so that drift on a
shared machine hits both alike. One transaction per approval (services.approve_request),
one thread; on PostgreSQL also several threads at once, where the chain's lock is held from
each approval's audit row to its commit. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import threading

from bench.common import fresh_database, setup_django, timed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("-n", type=int, default=200, help="approvals per round and mode")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    setup_django(fresh_database(args.db, "audit_chain"))

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID
    from django.db import connections
    from django.utils import timezone

    from requests_app import auditchain, pki, services

    services.create_ca("CN=Bench audit CA", key_type="p256")
    chained = auditchain.chain

    def unchained(events, *, using):
        for event in events:  # what the save did before the chain: a time, nothing else
            event.time = timezone.now()

    def csr(i: int) -> str:
        key = pki.generate_private_key("p256")  # one per request: a key waits in one request
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"a{i}.bench.test")])
        built = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(name)
            .sign(key, pki.signature_hash(key))
        )
        return built.public_bytes(serialization.Encoding.PEM).decode()

    serial = itertools.count()  # one address per request: the portal limits mail per address

    def submit(count: int) -> list[str]:
        return [
            services.submit_request(
                profile="server", csr=csr(i), requester_email=f"b{next(serial)}@bench.test"
            ).public_id
            for i in range(count)
        ]

    def approve_serially(ids):
        for public_id in ids:
            services.approve_request(public_id, agent=None)

    def approve_in_threads(ids):
        def work(part):
            try:
                approve_serially(part)
            finally:
                connections.close_all()

        threads = [
            threading.Thread(target=work, args=(ids[i :: args.threads],))
            for i in range(args.threads)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def measure(approve) -> tuple[list[float], float, float]:
        ratios, with_total, without_total = [], 0.0, 0.0
        for round_number in range(args.rounds):
            order = ("with", "without") if round_number % 2 == 0 else ("without", "with")
            seconds = {}
            for mode in order:
                ids = submit(args.n)
                auditchain.chain = chained if mode == "with" else unchained
                try:
                    seconds[mode], _ = timed(approve, ids)
                finally:
                    auditchain.chain = chained
            ratios.append(seconds["with"] / seconds["without"])
            with_total += seconds["with"]
            without_total += seconds["without"]
        return ratios, with_total, without_total

    def summary(ratios, with_total, without_total) -> dict:
        approvals = args.n * args.rounds
        return {
            "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "with_per_s": approvals / with_total,
            "without_per_s": approvals / without_total,
            "added_ms": (with_total - without_total) / approvals * 1000,
        }

    result = {"bench": "audit_chain", "db": args.db, "n": args.n, "rounds": args.rounds}
    result["serial"] = summary(*measure(approve_serially))
    if args.db == "postgres":
        result["threads"] = args.threads
        result["concurrent"] = summary(*measure(approve_in_threads))
    # The chains written with it on must still verify (rows written with it off are not in it).
    report = auditchain.verify()
    result["verified_rows"] = report.rows
    result["verify_problems_besides_unchained"] = sum(
        "not in the chain" not in p.what for p in report.problems
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
