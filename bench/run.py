"""`make bench`: every benchmark, side-by-side ratios in a table, written to bench/RESULTS.md.

Each benchmark runs in its own process (each sets Django up against its own database) and
prints one JSON line; this script turns them into tables. Exits 0 even when a goal is
missed: the table says so. `--quick` runs smaller sizes (for a try-out, not for RESULTS.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys

from bench import expiring, pkcs11
from bench.common import ROOT, machine, postgres_available, table


def run(module: str, *args: str) -> dict:
    print(f"running {module} {' '.join(args)}", file=sys.stderr, flush=True)
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args], cwd=ROOT, capture_output=True, text=True
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        return {
            "bench": module,
            "error": (result.stderr or result.stdout).strip().splitlines()[-1:],
        }
    return json.loads(lines[-1])


def goal(value: float, target: float) -> str:
    return f"{value:.2f} {'✓' if value >= target else '✗'} (goal ≥ {target})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    quick = args.quick
    dbs = ["sqlite"] + (["postgres"] if postgres_available() else [])
    sections = [f"# Benchmarks\n\n{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {machine()}.\n"]

    rows = []
    for db in dbs:
        for ca in ("rsa2048", "p256"):
            r = run("issuance", "--db", db, "--ca", ca, "-n", "300" if quick else "2000")
            if "error" in r:
                rows.append([db, ca, "error", str(r["error"]), "", ""])
                continue
            rows.append(
                [
                    db,
                    ca,
                    f"{r['raw_per_s']:.0f}/s",
                    f"{r['single_per_s']:.0f}/s: {goal(r['single_ratio'], 0.25)}",
                    f"{r['bulk_per_s']:.0f}/s: {goal(r['bulk_ratio'], 0.5)}",
                    str(r["n"]),
                ]
            )
    sections.append(
        "## 1. Issuance (approvals per second, ratio to raw cryptography; without "
        "pre-issuance linting, see 1b)\n\n"
        + table(
            [
                "db",
                "CA key",
                "raw (verify CSR, build, sign)",
                "(a) one transaction each",
                "(b) bulk path",
                "n",
            ],
            rows,
        )
    )

    rows = []
    for ca in ("rsa2048", "p256"):
        for baseline in (False, True):
            extra = ["--baseline"] if baseline else []
            r = run(
                "lint", "--ca", ca, "-n", "40" if quick else "200", "--rounds",
                "3" if quick else "5", *extra,
            )  # fmt: skip
            linters = "RFC 5280 + CA/B serverauth" if baseline else "RFC 5280"
            if "error" in r:
                rows.append(["sqlite", ca, linters, "error", str(r["error"]), ""])
                continue
            rows.append(
                [
                    "sqlite",
                    ca,
                    linters,
                    f"{r['on_per_s']:.0f}/s",
                    f"{r['off_per_s']:.0f}/s",
                    f"{r['ratio_median']:.2f} [{r['ratio_min']:.2f}-{r['ratio_max']:.2f}]",
                ]
            )
    sections.append(
        "## 1b. Pre-issuance linting (approvals per second, one transaction each)\n\n"
        + table(
            ["db", "CA key", "linters", "PREISSUANCE_LINT on", "off", "ratio on/off"],
            rows,
        )
        + "\n\nInterleaved rounds (on/off, then off/on) of the same number of approvals; the "
        + "ratio is the median over rounds [min-max]."
    )

    rows = []
    for db in dbs:
        r = run("queue", "--db", db, "-n", "50000" if quick else "1000000")
        if "error" in r:
            rows.append([db, "error", str(r["error"]), "", ""])
            continue
        for name, page in r["pages"].items():
            limit = 250 if name.startswith("admin") else 100
            ok = "✓" if page["p95_ms"] < limit else "✗"
            rows.append(
                [
                    db,
                    name,
                    f"{page['p50_ms']:.1f}",
                    f"{page['p95_ms']:.1f} {ok} (< {limit})",
                    f"{r['n']:,} rows loaded in {r['load_seconds']:.0f} s",
                ]
            )
    sections.append(
        "## 2. The queue at a million (ms)\n\n"
        + table(["db", "page", "p50", "p95", "fixture"], rows)
    )

    sections.append(expiring.report(run, dbs, quick))

    if "postgres" in dbs:
        r = run("drain", "-n", "500" if quick else "5000")
        if "error" in r:
            body = f"error: {r['error']}"
        else:
            body = (
                table(
                    ["sender", "messages/s", "ratio to raw (new connection per message)"],
                    [
                        ["raw smtplib, a connection per message", f"{r['raw_per_s']:.0f}", "1.00"],
                        [
                            "raw smtplib, one kept connection",
                            f"{r['raw_kept_per_s']:.0f}",
                            f"{r['raw_kept_per_s'] / r['raw_per_s']:.2f}",
                        ],
                        [
                            "1 db_worker",
                            f"{r['one_worker_per_s']:.0f}",
                            goal(r["one_worker_ratio"], 0.5),
                        ],
                        [
                            "2 db_workers",
                            f"{r['two_workers_per_s']:.0f}",
                            f"{r['two_workers_ratio']:.2f}",
                        ],
                        [
                            "1 db_worker, synchronous_commit=off",
                            f"{r['one_worker_async_per_s']:.0f}",
                            f"{r['one_worker_async_ratio']:.2f}",
                        ],
                    ],
                )
                + f"\n\n{r['n']} messages to a local aiosmtpd server, PostgreSQL."
            )
        sections.append("## 3. Delivery drain\n\n" + body)

    r = run("web", "--seconds", "2" if quick else "5", "--rounds", "1" if quick else "3")
    if "error" in r or "skipped" in r:
        body = str(r.get("error") or r.get("skipped"))
    else:
        body = (
            table(
                ["page", "requests/s", "trivial view requests/s", "ratio"],
                [
                    [name, f"{p['per_s']:.0f}", f"{p['trivial_per_s']:.0f}", goal(p["ratio"], 0.5)]
                    for name, p in r["pages"].items()
                ],
            )
            + f"\n\ngunicorn with {r['workers']} workers (one per core), wrk -t2 -c16 on loopback, "
            + "SQLite; median of alternating runs."
        )
    sections.append("## 4. Pages under load\n\n" + body)

    rows = []
    for db in dbs:
        r = run("audit_chain", "--db", db, "-n", "50" if quick else "200", "--rounds", "7")
        if "error" in r:
            rows.append([db, "error", str(r["error"]), "", ""])
            continue
        for mode in ("serial", "concurrent"):
            if mode not in r:
                continue
            m = r[mode]
            label = "one at a time" if mode == "serial" else f"{r['threads']} threads at once"
            rows.append(
                [
                    db,
                    label,
                    f"{m['with_per_s']:.0f}/s",
                    f"{m['without_per_s']:.0f}/s",
                    f"{m['ratio_median']:.2f} [{m['ratio_min']:.2f}-{m['ratio_max']:.2f}], "
                    f"{m['added_ms']:+.2f} ms",
                ]
            )
    sections.append(
        "## 5. The audit chain's cost per approval\n\n"
        + table(
            [
                "db",
                "approvals",
                "with the chain",
                "without",
                "time ratio with/without, median [min-max], per approval",
            ],
            rows,
        )
        + "\n\nInterleaved rounds of single approvals (services.approve_request)."
    )

    from bench.acme import section as acme_section  # ACME orders against the services

    sections.append(acme_section(run, quick))
    sections.append(pkcs11.section(run, quick))  # the CA key in SoftHSM2 against the file

    sections.append((ROOT / "bench" / "analysis.md").read_text().strip())
    report = "\n\n".join(sections) + "\n"
    print(report)
    if not args.no_write and not quick:
        (ROOT / "bench" / "RESULTS.md").write_text(report)


if __name__ == "__main__":
    main()
