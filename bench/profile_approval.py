"""Where one single approval's time goes: the numbers bench/analysis.md cites.

    python -m bench.profile_approval                 SQLite, and PostgreSQL when reachable
    python -m bench.profile_approval --db sqlite --ca rsa2048 -n 300

For each database, in a process of its own: n approvals (services.approve_request, server
profile, linting off) timed end to end; then the same number again under cProfile, with
every SQL statement timed (connection.execute_wrapper) and counted per approval, and the
profile's cumulative CPU time split into: the SQL statements (compile + execute), signing,
begin/commit, the certificate_issued signal, and the rest. Prints Markdown, then one JSON
line. Profiling slows Python code more than C code: shares, not absolute times, are the
point of the second pass; the first pass's ms/approval is unprofiled.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from bench.common import ROOT, fresh_database, postgres_available, setup_django, table

# (path suffix, function name) of the frames whose cumulative time makes up a share.
BUCKETS = {
    "SQL statements (compile + execute)": [
        ("django/db/models/sql/compiler.py", "execute_sql"),
    ],
    "signing (the CA key)": [("requests_app/pki/keys.py", "sign")],
    "begin/commit": [
        ("django/db/backends/base/base.py", "commit"),
        ("django/db/backends/base/base.py", "set_autocommit"),
    ],
    "certificate_issued signal (receivers)": [("django/dispatch/dispatcher.py", "send")],
    "CSR load and checks": [("requests_app/pki/csr.py", "load_csr")],
}


def statement_kind(sql: str) -> str:
    """'UPDATE requests_app_statuscount' and the like: the verb and the first table."""
    verb = sql.lstrip().split(None, 1)[0].upper()
    table_name = re.search(r'(?:FROM|INTO|UPDATE)\s+"?([\w.]+)"?', sql, re.IGNORECASE)
    kind = f"{verb} {table_name.group(1) if table_name else sql.strip()[:40]}".strip()
    if verb == "SELECT" and "FOR UPDATE" in sql.upper():
        kind += " FOR UPDATE"
    return kind


def measure(db: str, key_type: str, n: int) -> dict:
    setup_django(
        fresh_database(db, f"profile_{key_type}"),
        PREISSUANCE_LINT="False",
        REVOCATION_BASE_URL="http://ca.example.com",
    )
    from django.db import connection

    from bench.issuance import Issuance

    bench = Issuance(key_type, 5)
    bench.single()()  # warm: the key's first use, caches
    bench.n = n
    approvals = bench.single()  # a side: submits n (untimed), approves them (timed)
    seconds, done = approvals()
    ms_per_approval = seconds / done * 1000

    times: dict[str, float] = defaultdict(float)
    counts: Counter = Counter()

    def wrapper(execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            kind = statement_kind(sql)
            times[kind] += time.perf_counter() - start
            counts[kind] += 1

    from requests_app import services

    ids = bench._submit()
    # CPU time, not wall time: on a shared machine a descheduled process would otherwise
    # charge its waits to whatever frame it was in. Waits on the disk or the server show as
    # the gap between the two passes' ms per approval and the statements' timed ms.
    profile = cProfile.Profile(time.process_time)
    with connection.execute_wrapper(wrapper):
        profile.enable()
        start = time.perf_counter()
        for public_id in ids:
            services.approve_request(public_id, agent=None)
        profiled_seconds = time.perf_counter() - start
        profile.disable()
    stats = pstats.Stats(profile).stats
    total = sum(tt for (_, _, tt, _, _) in stats.values())  # own times add up to the whole
    shares = {}
    for bucket, frames in BUCKETS.items():
        cumulative = 0.0
        for (filename, _, function), (_, _, _, ct, callers) in stats.items():
            # Only outermost calls: a caller of the same name in that file counted them.
            if function in [f for suffix, f in frames if filename.endswith(suffix)] and not any(
                c[2] == function and c[0] == filename for c in callers
            ):
                cumulative += ct
        shares[bucket] = cumulative / total
    # The steps of services.decisions._approve: each callee's time when called from there.
    approve_key = next(
        k
        for k in stats
        if k[0].endswith("requests_app/services/decisions.py") and k[2] == "_approve"
    )
    steps = {}
    for (filename, _, function), (_, _, _, _, callers) in stats.items():
        if approve_key in callers:
            name = f"{Path(filename).name}:{function}"
            steps[name] = steps.get(name, 0.0) + callers[approve_key][3] / total
    steps = dict(sorted(steps.items(), key=lambda item: item[1], reverse=True))
    shares["all of _approve (inside the transaction)"] = stats[approve_key][3] / total
    top = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:10]
    top_own = [
        (f"{Path(filename).parent.name}/{Path(filename).name}:{function}", tt / total)
        for (filename, _, function), (_, _, tt, _, _) in top
    ]
    statements = {
        kind: {"per_approval": counts[kind] / n, "ms": times[kind] / n * 1000}
        for kind in sorted(times, key=times.get, reverse=True)
    }
    return {
        "db": db,
        "ca": key_type,
        "n": n,
        "ms_per_approval": ms_per_approval,
        "profiled_ms_per_approval": profiled_seconds / n * 1000,
        "statements_per_approval": sum(counts.values()) / n,
        "statement_ms_per_approval": sum(times.values()) / n * 1000,
        "statements": statements,
        "shares": shares,
        "top_own": top_own,
        "approve_steps": steps,
    }


def markdown(r: dict) -> str:
    lines = [
        f"### {r['db']}, {r['ca']}: {r['ms_per_approval']:.2f} ms an approval "
        f"({r['statements_per_approval']:.1f} statements, plus begin/commit)\n",
        table(
            ["statement", "per approval", "ms per approval (timed around execute)"],
            [
                [kind, f"{s['per_approval']:.2f}", f"{s['ms']:.3f}"]
                for kind, s in r["statements"].items()
            ],
        ),
        "",
        table(
            ["share of the profiled approval (cProfile, cumulative)", "%"],
            [[name, f"{share * 100:.1f}"] for name, share in r["shares"].items()],
        ),
        "",
        table(
            ["steps of services.decisions._approve (cumulative, share of the whole)", "%"],
            [[name, f"{share * 100:.1f}"] for name, share in r["approve_steps"].items()],
        ),
        "",
        table(
            ["most own CPU time (cProfile tottime)", "%"],
            [[name, f"{share * 100:.1f}"] for name, share in r["top_own"]],
        ),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgres"])
    parser.add_argument("--ca", choices=["rsa2048", "p256"], default="p256")
    parser.add_argument("-n", type=int, default=300)
    args = parser.parse_args()
    if args.db:
        r = measure(args.db, args.ca, args.n)
        print(markdown(r))
        print(json.dumps({"bench": "profile_approval", **r}))
        return
    dbs = ["sqlite"] + (["postgres"] if postgres_available() else [])
    for db in dbs:  # each database in a process of its own (Django is set up once per process)
        command = [sys.executable, "-m", "bench.profile_approval", "--db", db, "--ca", args.ca]
        subprocess.run([*command, "-n", str(args.n)], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
