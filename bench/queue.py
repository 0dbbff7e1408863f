"""The queue at a million: 1,000,000 requests in every status and profile, then p50/p95 of
the agent pages and the admin changelist, measured in-process with Django's test client:
every page and a trivial view run `samples` requests once per round, in a shuffled order;
per page the per-round p50/p95 and the rate ratio page/trivial view, median [min-max].

The fixture is bulk-loaded with executemany (SQLite) or COPY (PostgreSQL), not through the
ORM, so it takes minutes. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import secrets
import time

from bench.common import fresh_database, interleaved, percentiles, ratios, setup_django, spread

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
STATUSES = ["pending"] * 10 + ["complete"] * 70 + ["rejected"] * 15 + ["canceled"] * 5
PROFILES = ["server", "user", "agent"]
#: Searches that open the request they name (the measure is the lookup and the redirect).
OPENS = {"agent search by request ID", "agent search by serial"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("-n", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=20, help="requests per page and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    setup_django(fresh_database(args.db, "queue"), DJANGO_SETTINGS_MODULE="bench.settings")

    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.test import Client

    from requests_app import services
    from requests_app.models import Certificate, CertificateRequest, StatusCount
    from tests.helpers.csrs import make_csr
    from tests.helpers.mfa import login_verified

    ca = services.create_ca("CN=Bench Queue CA", key_type="p256")
    sample = services.issue_certificate(
        profile="server", csr=make_csr(cn="sample.bench.test"), requester_email="s@bench.test"
    )
    csr_pem = sample.request.csr_pem
    cert_pem = sample.pem
    now = dt.datetime.now(dt.UTC)
    rng = random.Random(7)

    load_start = time.perf_counter()

    def stored(model):  # the columns an INSERT writes (not the key, not generated ones)
        return [
            f
            for f in model._meta.concrete_fields
            if not f.primary_key and not getattr(f, "generated", False)
        ]

    cert_fields = stored(Certificate)
    req_fields = stored(CertificateRequest)
    first_cert_id = Certificate.objects.order_by("-pk").values_list("pk", flat=True).first() + 1

    def cert_row(i: int, cert_id: int):
        serial = format(rng.getrandbits(159) | (1 << 158), "x")
        values = {
            "ca": ca.pk,
            "serial": serial,
            "subject": f"CN=h{i}.bench.test",
            "subject_search": f"h{i}.bench.test",
            "sans": json.dumps([f"DNS:h{i}.bench.test"]),
            "not_before": now,
            "not_after": now,
            "profile": PROFILES[i % 3],
            "pem": cert_pem,
            "fingerprint_sha256": format(cert_id, "064x"),
            "status": "valid",
            "created": now,
            "revoked_at": None,
            "revocation_reason": "",
            "invalidity_date": None,
            "superseded_by": None,
            "superseded_at": None,
        }
        return [values[f.name] for f in cert_fields]

    def req_row(i: int, status: str, cert_id: int | None):
        submitted = now - dt.timedelta(seconds=i * 60)
        values = {
            "public_id": "".join(secrets.choice(ALPHABET) for _ in range(20)),
            "profile": PROFILES[i % 3],
            "status": status,
            "csr_pem": csr_pem,
            "subject": f"CN=h{i}.bench.test",
            "key_type": "p256",
            "key_size": 256,
            "public_key_sha256": "0" * 64,
            "requested_sans": json.dumps([f"DNS:h{i}.bench.test"]),
            "requester_name": f"User {i}",
            "requester_email": f"u{i % 50000}@bench.test",
            "requester_note": "",
            "submitted_at": submitted,
            "updated_at": submitted,
            "acted_by": None,
            "agent_note": "rejected for the benchmark" if status == "rejected" else "",
            "certificate": cert_id,
            "renewal_of": None,
            "submitter_ip": None,
            "channel": "web",
            "encrypted_private_key": "",
            "key_erased_at": None,
            "email_confirmed_at": submitted if PROFILES[i % 3] != "server" else None,
            "email_confirmed_by": "the requester (mailed link)" if i % 3 else "",
            "agent_for": None,
        }
        return [values[f.name] for f in req_fields]

    counts = dict.fromkeys(["pending", "complete", "rejected", "canceled"], 0)
    cert_rows, req_rows = [], []
    cert_id = first_cert_id
    for i in range(args.n):
        status = STATUSES[rng.randrange(len(STATUSES))]
        counts[status] += 1
        if status == "complete":
            cert_rows.append(cert_row(i, cert_id))
            req_rows.append(req_row(i, status, cert_id))
            cert_id += 1
        else:
            req_rows.append(req_row(i, status, None))

    def load(model, fields, rows):
        table = model._meta.db_table
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                marks = ", ".join(["%s"] * len(fields))
                for start in range(0, len(rows), 20000):
                    cursor.executemany(
                        f"INSERT INTO {table} ({columns}) VALUES ({marks})",
                        rows[start : start + 20000],
                    )

    with transaction.atomic():
        load(Certificate, cert_fields, cert_rows)
        load(CertificateRequest, req_fields, req_rows)
        for status, count in counts.items():
            StatusCount.objects.filter(status=status).update(count=count + (status == "complete"))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    load_seconds = time.perf_counter() - load_start

    admin = get_user_model().objects.create_superuser("bench", "b@bench.test", "bench-password-1")
    client = Client()
    login_verified(client, admin)  # past the second factor, as agents are
    ids = list(
        CertificateRequest.objects.filter(status="complete").values_list(
            "public_id", "certificate__serial"
        )[:1000]
    )
    picks = [ids[rng.randrange(len(ids))] for _ in range(args.samples)]
    pages = {
        "agent list, first page": lambda k: "/agent/",
        "agent list, status filter": lambda k: "/agent/?status=pending",
        "agent search by request ID": lambda k: f"/agent/?q={picks[k][0]}",
        "agent search by serial": lambda k: f"/agent/?q={picks[k][1]}",
        "agent search by email": lambda k: f"/agent/?q=U{k}@bench.test",
        # The one search box's other kinds (a whole ID or serial above opens its request).
        "agent search, start of an email": lambda k: f"/agent/?q=u{k}@ben",
        "agent search, email domain": lambda k: "/agent/?q=%40bench.test",
        "agent search, start of a request ID": lambda k: f"/agent/?q={picks[k][0][:8]}",
        "agent search, subject text (rare)": lambda k: f"/agent/?q=h{k}9999.bench",
        "agent search, SAN": lambda k: f"/agent/?q=DNS:h{k}1.bench.test",
        "agent search, nothing found": lambda k: f"/agent/?q=nobody{k}%40nowhere.test",
        "agent request details": lambda k: f"/agent/requests/{picks[k][0]}/",
        "admin changelist": lambda k: "/admin/requests_app/certificaterequest/",
    }
    pages = {"trivial view": lambda k: "/bench/trivial/", **pages}
    latencies: dict[str, list[tuple[float, float]]] = {name: [] for name in pages}

    def side(name):
        def run():
            samples = []
            for k in range(args.samples):
                start = time.perf_counter()
                response = client.get(pages[name](k))
                samples.append(time.perf_counter() - start)
                # A whole request ID or serial opens its request (302); the rest are pages.
                expected = 302 if name in OPENS else 200
                assert response.status_code == expected, (
                    name,
                    response.status_code,
                    response.get("Location"),
                )
            latencies[name].append(percentiles(samples))
            return sum(samples), len(samples)

        return run

    for name in pages:
        client.get(pages[name](0))  # warm caches and templates
    rates = interleaved({name: side(name) for name in pages}, args.rounds, seed=args.seed)
    print(
        json.dumps(
            {
                "bench": "queue",
                "db": args.db,
                "n": args.n,
                "rounds": args.rounds,
                "samples": args.samples,
                "load_seconds": load_seconds,
                "pages": {
                    name: {
                        "p50_ms": spread([p50 for p50, _ in latencies[name]]),
                        "p95_ms": spread([p95 for _, p95 in latencies[name]]),
                        "ratio": spread(ratios(rates, name, "trivial view")),
                    }
                    for name in pages
                    if name != "trivial view"
                },
            }
        )
    )


if __name__ == "__main__":
    main()
