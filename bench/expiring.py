"""The Expiring page at a million: 1,000,000 certificates (with their requests) expiring
over two years, some revoked, renewed or with a renewal waiting, then p50/p95 of the
agents' Expiring page (windows, profile filter, searches, a deep page) and of the queue
page that shows the 7- and 30-day counts, measured in-process with Django's test client,
in interleaved rounds. Prints the query plans (EXPLAIN) of the page's and the counts'
queries, and one JSON line.

The fixture is bulk-loaded with executemany (SQLite) or COPY (PostgreSQL), not through the
ORM.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import secrets
import sys
import time

from bench.common import fresh_database, percentiles, setup_django

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PROFILES = ["server", "user", "agent"]
CHANNELS = ["web"] * 6 + ["dogtag"] * 3 + ["acme"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("-n", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--reuse",
        metavar="NAME",
        help="keep the fixture between runs: a PostgreSQL database of that name, or an "
        "SQLite file at that path; loaded when it holds fewer than n certificates",
    )
    args = parser.parse_args()
    setup_django(
        reused_database(args.db, args.reuse) if args.reuse else fresh_database(args.db, "expiring")
    )

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from requests_app import expiry
    from requests_app.models import Certificate
    from tests.helpers.mfa import login_verified

    now = dt.datetime.now(dt.UTC)
    rng = random.Random(11)
    loaded = Certificate.objects.count() >= args.n
    if loaded:  # --reuse: the fixture of an earlier run (its window moved on a little)
        load_seconds, renewals = 0.0, -1
    else:
        load_seconds, renewals = load_fixture(args.n, now, rng)
    agent = get_user_model().objects.filter(username="bench").first()
    agent = agent or get_user_model().objects.create_superuser(
        "bench", "b@bench.test", "bench-pw-1"
    )
    client = login_verified(Client(), agent)
    soon = list(
        expiry.expiring(now=timezone.now(), within_days=30).values_list(
            "serial", "request__requester_email"
        )[:1000]
    )
    picks = [soon[rng.randrange(len(soon))] for _ in range(args.samples)]
    # Page 20 of the 90-day window: the Later link of page 19 (keyset paging: a cursor on
    # the last row's (not_after, id)); found once here, by OFFSET, outside the timing.
    page20 = "page=20"
    if hasattr(expiry, "encode_cursor"):
        last = expiry.expiring(now=timezone.now(), within_days=90).values_list("not_after", "pk")[
            19 * 50 - 1
        ]
        page20 = "after=" + expiry.encode_cursor(*last)
    pages = {
        "expiring, 7 days": lambda k: "/agent/expiring/?within=7",
        "expiring, 30 days": lambda k: "/agent/expiring/?within=30",
        "expiring, 90 days": lambda k: "/agent/expiring/?within=90",
        "expiring, 90 days, profile user": lambda k: "/agent/expiring/?within=90&profile=user",
        "expiring, 90 days, page 20": lambda k: f"/agent/expiring/?within=90&{page20}",
        "expiring, search serial": lambda k: f"/agent/expiring/?within=90&q={picks[k][0]}",
        "expiring, search email": lambda k: f"/agent/expiring/?within=90&q={picks[k][1]}",
        "expiring, search subject": lambda k: f"/agent/expiring/?within=30&q=h{k}7.bench",
        # The CN of a certificate in the window (u123@... holds CN=h123.bench.test).
        "expiring, search subject, found": lambda k: (
            "/agent/expiring/?within=90&q="
            + picks[k][1].split("@")[0].replace("u", "h", 1)
            + ".bench"
        ),
        # A prefix of a tenth of all CNs: too common to look up, matched along the window.
        "expiring, search subject, common prefix": lambda k: "/agent/expiring/?within=90&q=h1",
        "queue page with the counts": lambda k: "/agent/",
    }
    samples: dict[str, list[float]] = {name: [] for name in pages}
    for name, url in pages.items():  # warm caches and templates
        response = client.get(url(0))
        assert response.status_code == 200, (name, response.status_code)
    per_round = max(1, args.samples // args.rounds)
    for r in range(args.rounds):
        order = list(pages.items()) if r % 2 == 0 else list(reversed(pages.items()))
        for k in range(r * per_round, (r + 1) * per_round):
            for name, url in order:
                start = time.perf_counter()
                response = client.get(url(k))
                samples[name].append(time.perf_counter() - start)
                assert response.status_code == 200, (name, response.status_code)

    plans = explain(connection, expiry, picks)
    for name, plan in plans.items():
        print(f"--- EXPLAIN {name} ({args.db})\n{plan}", file=sys.stderr)
    results = {name: percentiles(values) for name, values in samples.items()}
    print(
        json.dumps(
            {
                "bench": "expiring",
                "db": args.db,
                "n": args.n,
                "load_seconds": load_seconds,
                "renewals": renewals,
                "pages": {
                    name: {"p50_ms": p50, "p95_ms": p95} for name, (p50, p95) in results.items()
                },
                "plans": plans,
            }
        )
    )


def load_fixture(n: int, now: dt.datetime, rng: random.Random) -> tuple[float, int]:
    """n certificates with their requests, bulk-loaded; (seconds, renewals made)."""
    from django.db import connection, transaction

    from requests_app import services
    from requests_app.models import Certificate, CertificateRequest
    from tests.helpers.csrs import make_csr

    services.create_ca("CN=Bench Expiring CA", key_type="p256")
    sample = services.issue_certificate(
        profile="server", csr=make_csr(cn="sample.bench.test"), requester_email="s@bench.test"
    )
    ca_id, cert_pem = sample.ca_id, sample.pem

    load_start = time.perf_counter()
    cert_fields = stored_fields(Certificate)
    req_fields = stored_fields(CertificateRequest)
    first_id = Certificate.objects.order_by("-pk").values_list("pk", flat=True).first() + 1

    def public_id() -> str:
        return "".join(secrets.choice(ALPHABET) for _ in range(20))

    cert_rows, req_rows = [], []
    renewal_targets = []
    for i in range(n):
        cert_id = first_id + i
        # Issued over the last two years for a year: not_after spread over +-365 days.
        not_after = now + dt.timedelta(seconds=rng.uniform(-365, 365) * 86400)
        profile = PROFILES[i % 3]
        revoked = rng.random() < 0.03
        values = {
            "ca": ca_id,
            "serial": format(rng.getrandbits(159) | (1 << 158), "x"),
            "subject": f"CN=h{i}.bench.test",
            "subject_search": f"h{i}.bench.test",
            "sans": json.dumps([f"DNS:h{i}.bench.test"]),
            "not_before": not_after - dt.timedelta(days=365),
            "not_after": not_after,
            "profile": profile,
            "pem": cert_pem,
            "fingerprint_sha256": format(cert_id, "064x"),
            "status": "revoked" if revoked else "valid",
            "created": not_after - dt.timedelta(days=365),
            "revoked_at": now if revoked else None,
            "revocation_reason": "keyCompromise" if revoked else "",
            "invalidity_date": None,
        }
        cert_rows.append([values.get(f.name, f.get_default()) for f in cert_fields])
        req_rows.append(req_row(i, cert_id, None, "complete", values, rng, public_id))
        if not revoked and now < not_after < now + dt.timedelta(days=90) and rng.random() < 0.1:
            renewal_targets.append((i, cert_id, values))
    # A tenth of what expires within 90 days has a renewal: half waiting for an agent, half
    # issued (renewed; the new certificate is not part of the fixture).
    for k, (i, cert_id, values) in enumerate(renewal_targets):
        status = "pending" if k % 2 else "complete"
        req_rows.append(req_row(i, None, cert_id, status, values, rng, public_id))

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
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        if connection.vendor == "postgresql":  # as autovacuum would: index-only scans
            cursor.execute("VACUUM ANALYZE")
    return time.perf_counter() - load_start, len(renewal_targets)


def req_row(i, cert_id, renewal_of, status, cert, rng, public_id):
    from requests_app.models import CertificateRequest

    submitted = cert["created"] if renewal_of is None else cert["not_after"]
    values = {
        "public_id": public_id(),
        "profile": cert["profile"],
        "status": status,
        "csr_pem": "",
        "subject": cert["subject"],
        "key_type": "p256",
        "key_size": 256,
        "public_key_sha256": "0" * 64,
        "requested_sans": cert["sans"],
        "requester_name": f"User {i}",
        "requester_email": f"u{i}@bench.test",
        "requester_note": "",
        "submitted_at": submitted,
        "updated_at": submitted,
        "acted_by": None,
        "agent_note": "",
        "certificate": cert_id,
        "renewal_of": renewal_of,
        "submitter_ip": None,
        "channel": CHANNELS[rng.randrange(len(CHANNELS))],
        "encrypted_private_key": "",
        "key_erased_at": None,
        "email_confirmed_at": None,
        "email_confirmed_by": "",
        "agent_for": None,
    }
    # A field another feature adds gets its default.
    return [values.get(f.name, f.get_default()) for f in stored_fields(CertificateRequest)]


def stored_fields(model) -> list:
    """The columns an INSERT or COPY writes: not the key, not generated ones (serial_sort)."""
    return [
        f
        for f in model._meta.concrete_fields
        if not f.primary_key and not getattr(f, "generated", False)
    ]


def reused_database(kind: str, name: str) -> str:
    """A DATABASE_URL for a kept fixture database (created when missing)."""
    if kind == "sqlite":
        return f"sqlite:///{name}"
    import psycopg

    from bench.common import PG_ADMIN_URL

    with psycopg.connect(
        PG_ADMIN_URL.replace("postgres://", "postgresql://"), autocommit=True
    ) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def explain(connection, expiry, picks) -> dict[str, str]:
    """The plans of the page's first page (30 days, and with a profile), a serial search
    and a capped count: each must walk an index, never the whole table."""
    from django.utils import timezone

    now = timezone.now()
    queries = {
        "page, 30 days": expiry.expiring(now=now, within_days=30)[:51],
        "page, 90 days, profile user": expiry.expiring(now=now, within_days=90, profile="user")[
            :51
        ],
        "search by serial": expiry.expiring(now=now, within_days=90, q=picks[0][0])[:51],
        "search by email": expiry.expiring(now=now, within_days=90, q=picks[0][1])[:51],
        "search by email, the lookup": expiry.lookup_query(picks[0][1]),
        "search by subject": expiry.expiring(now=now, within_days=30, q="h17.bench")[:51],
        "search by subject, the lookup": expiry.lookup_query("h17.bench")[:1001],
        "search by subject, common prefix (along the window)": expiry.expiring(
            now=now, within_days=90, q="h1"
        )[:51],
        "page 20 of 90 days (after a cursor)": expiry.expiring(
            now=now,
            within_days=90,
            after=expiry.expiring(now=now, within_days=90).values_list("not_after", "pk")[949],
        )[:51],
        "count, 30 days (capped)": expiry.expiring_between(now, now + dt.timedelta(days=30))
        .order_by()
        .values("pk")[: expiry.COUNT_CAP + 1],
    }
    return {name: qs.explain() for name, qs in queries.items()}


if __name__ == "__main__":
    main()


def report(run, dbs: list[str], quick: bool) -> str:
    """bench/run.py's section: this benchmark on each database, as a Markdown table."""
    from bench.common import table

    rows = []
    for db in dbs:
        r = run("expiring", "--db", db, "-n", "50000" if quick else "1000000")
        if "error" in r:
            rows.append([db, "error", str(r["error"]), "", ""])
            continue
        for name, page in r["pages"].items():
            ok = "✓" if page["p95_ms"] < 100 else "✗"
            rows.append(
                [
                    db,
                    name,
                    f"{page['p50_ms']:.1f}",
                    f"{page['p95_ms']:.1f} {ok} (< 100)",
                    f"{r['n']:,} certificates loaded in {r['load_seconds']:.0f} s",
                ]
            )
    return (
        "## 2b. The Expiring page at a million certificates (ms)\n\n"
        + table(["db", "page", "p50", "p95", "fixture"], rows)
        + "\n\nInterleaved rounds over the pages; the page and the queue's counts walk the "
        + "index certificate_expiry (status, not_after), or certificate_profile_expiry with a "
        + "profile (EXPLAIN in the benchmark's stderr)."
    )
