"""The Markdown sections of `python -m bench.run`: each runs its benchmark(s) through `run`
(one process each, one JSON line back) and tabulates ratios as median [min-max]."""

from __future__ import annotations

import json

from bench.common import shown, table

# Issue 20's goals on the medians: single approval and bulk against raw, portal against peer.
SINGLE_GOALS = {("sqlite", "rsa2048"): 0.25, ("sqlite", "p256"): 0.15, ("postgres", "p256"): 0.12}
BULK_GOALS = {"sqlite": 0.6, "postgres": 0.5}
PEER_GOALS = {"p256": 1.5, "rsa2048": 10.0}


def goal(s: dict, target: float | None, digits: int = 3) -> str:
    """A spread with a check mark against target (on the median), or the spread alone."""
    if target is None:
        return shown(s, digits)
    mark = "✓" if s["median"] >= target else "✗"
    return f"{shown(s, digits)} {mark} (goal ≥ {target})"


def below(s: dict, limit: float) -> str:
    mark = "✓" if s["median"] < limit else "✗"
    return f"{shown(s, 1)} {mark} (< {limit})"


def failed(r: dict) -> str | None:
    if "error" in r:
        return f"error: {' '.join(r['error'])}"
    if "skipped" in r:
        return f"not run: {r['skipped']}"
    return None


def issuance(run, dbs: list[str], quick: bool) -> str:
    rows, lint_rows = [], []
    for db in dbs:
        for ca in ("rsa2048", "p256"):
            extra = ["--lint"] if db == "sqlite" else []
            n, rounds = ("40", "5") if quick else ("80", "7")
            r = run("issuance", "--db", db, "--ca", ca, "-n", n, "--rounds", rounds, *extra)
            if why := failed(r):
                rows.append([db, ca, why, "", "", "", "", ""])
                continue
            per_s, ratio = r["per_s"], r["ratios"]
            rows.append(
                [
                    db,
                    ca,
                    f"{per_s['raw']:.0f}",
                    f"{per_s['single']:.0f}",
                    goal(ratio["single/raw"], SINGLE_GOALS.get((db, ca))),
                    f"{per_s['bulk']:.0f}",
                    goal(ratio["bulk/raw"], BULK_GOALS[db]),
                    f"{r['rounds']} x {r['n']}",
                ]
            )
            if "single_lint/raw_lint" in ratio:
                lint_rows.append(
                    [
                        db,
                        ca,
                        f"{per_s['raw_lint']:.0f}",
                        f"{per_s['single_lint']:.0f}",
                        shown(ratio["single_lint/raw_lint"]),
                        shown(ratio["raw_lint/raw"]),
                    ]
                )
    headers = [
        "db",
        "CA key",
        "raw/s",
        "single/s",
        "single ÷ raw",
        "bulk/s",
        "bulk ÷ raw",
        "rounds x n",
    ]
    return (
        "## 1. Issuance: approvals against a script's full work\n\n"
        + table(headers, rows)
        + "\n\nRaw is what a script would do per certificate: load and verify the CSR, build it "
        "with the server profile's extensions and the CA's URLs, sign with the CA key loaded "
        "once, write PEM. Single is `services.approve_request` (server profile, pre-issuance "
        "linting off), bulk `services.approve_all_pending`. Each round runs every side once "
        "on fresh requests (submitted outside the timed part), in a shuffled order; rates are "
        "medians per second, ratios per round, median [min-max].\n\n"
        "### 1a. With pre-issuance linting (pkilint, RFC 5280)\n\n"
        + table(
            [
                "db",
                "CA key",
                "raw + lint/s",
                "single + lint/s",
                "single+lint ÷ raw+lint",
                "raw+lint ÷ raw (what linting costs a script)",
            ],
            lint_rows,
        )
        + "\n\nThe linting raw lints with the portal's wrapper (`pki.lint_builder`: a "
        "throwaway-key precertificate through pkilint), then signs; same rounds as above."
    )


def lint(run, quick: bool) -> str:
    rows = []
    for ca in ("rsa2048", "p256"):
        for baseline in (False, True):
            extra = ["--baseline"] if baseline else []
            n, rounds = ("20", "5") if quick else ("100", "5")
            r = run("lint", "--ca", ca, "-n", n, "--rounds", rounds, *extra)
            linters = "RFC 5280 + CA/B serverauth" if baseline else "RFC 5280"
            if why := failed(r):
                rows.append(["sqlite", ca, linters, why, "", ""])
                continue
            s = {"median": r["ratio_median"], "min": r["ratio_min"], "max": r["ratio_max"]}
            rows.append(
                [
                    "sqlite",
                    ca,
                    linters,
                    f"{r['on_per_s']:.0f}/s",
                    f"{r['off_per_s']:.0f}/s",
                    shown(s, 2),
                ]
            )
    return (
        "## 1b. Pre-issuance linting on and off (single approvals)\n\n"
        + table(["db", "CA key", "linters", "PREISSUANCE_LINT on", "off", "on ÷ off"], rows)
        + "\n\nInterleaved rounds (on/off, then off/on), median [min-max]."
    )


def peer(run, quick: bool) -> str:
    rows = []
    for ca in ("p256", "rsa2048"):
        n, rounds = ("20", "5") if quick else (("100", "7") if ca == "p256" else ("30", "7"))
        r = run("peer", "--ca", ca, "-n", n, "--rounds", rounds)
        if why := failed(r):
            rows.append([ca, why, "", "", "", "", "", ""])
            continue
        per_s, ratio = r["per_s"], r["ratios"]
        rows.append(
            [
                ca,
                f"{per_s['django-ca']:.0f}",
                f"{per_s['portal']:.0f}",
                f"{per_s['raw']:.0f}",
                shown(ratio["django-ca/raw"]),
                shown(ratio["portal/raw"]),
                goal(ratio["portal/django-ca"], PEER_GOALS[ca], 2),
                f"{r['rounds']} x {r['n']}",
            ]
        )
    return (
        "## 1c. Against django-ca 3.2.0, one certificate at a time (SQLite)\n\n"
        + table(
            [
                "CA key",
                "django-ca/s",
                "portal/s",
                "raw/s",
                "django-ca ÷ raw",
                "portal ÷ raw",
                "portal ÷ django-ca",
                "rounds x n",
            ],
            rows,
        )
        + "\n\ndjango-ca 3.2.0 in its own virtualenv (made by the bench on first use), a tiny "
        "project on SQLite, a CA per key type made with `CertificateAuthority.objects.init()` "
        "and its key where django-ca keeps it by default (the storages backend: a file); each "
        "certificate is one `Certificate.objects.create_cert()` with the server profile, as "
        "its API does. It runs as a long-lived process that runs a round on command, so its "
        "rounds interleave (shuffled) with the portal's single approvals (server profile, "
        "linting off) and the raw script's, in one run."
    )


def queue(run, dbs: list[str], quick: bool) -> str:
    rows = []
    for db in dbs:
        r = run("queue", "--db", db, "-n", "50000" if quick else "1000000")
        if why := failed(r):
            rows.append([db, why, "", "", "", ""])
            continue
        for name, page in r["pages"].items():
            limit = 250 if name.startswith("admin") else 100
            rows.append(
                [
                    db,
                    name,
                    shown(page["p50_ms"], 1),
                    below(page["p95_ms"], limit),
                    shown(page["ratio"]),
                    f"{r['n']:,} rows loaded in {r['load_seconds']:.0f} s",
                ]
            )
    return (
        "## 2. The queue at a million (ms)\n\n"
        + table(["db", "page", "p50", "p95", "rate ÷ trivial view", "fixture"], rows)
        + "\n\nDjango's test client in process; each round runs every page (and a trivial "
        "view) a few times, pages shuffled; p50 and p95 per round, median [min-max]."
    )


def drain(run, quick: bool) -> str:
    """bench/drain.py's own rows. Contract: its last stdout line is JSON with "rows", a list
    of {column label: text}, and optionally "notes" (text) and "goals" (list of text)."""
    r = run("drain", *(["--quick"] if quick else []))
    if quick and "error" in r and any("--quick" in line for line in r["error"]):
        r = run("drain")  # an older drain without --quick
    if why := failed(r):
        return f"## 3. Delivery drain\n\n{why}"
    if isinstance(r.get("rows"), list) and r["rows"]:
        headers = []
        for row in r["rows"]:
            headers += [key for key in row if key not in headers]
        body = table(headers, [[str(row.get(h, "")) for h in headers] for row in r["rows"]])
    else:  # not the contract: show what it printed rather than nothing
        body = table(["key", "value"], [[k, json.dumps(v)] for k, v in r.items()])
    extra = [str(r["notes"])] if r.get("notes") else []
    extra += [f"- {g}" for g in r.get("goals") or []]
    return "## 3. Delivery drain\n\n" + "\n\n".join([body, *extra])


def web(run, quick: bool) -> str:
    r = run("web", "--seconds", "1" if quick else "3", "--rounds", "5")
    if why := failed(r):
        return f"## 4. Pages under load\n\n{why}"
    rows = [
        [name, f"{p['per_s']:.0f}", f"{p['trivial_per_s']:.0f}", goal(p["ratio"], 0.5, 2)]
        for name, p in r["pages"].items()
    ]
    return (
        "## 4. Pages under load\n\n"
        + table(["page", "requests/s", "trivial view requests/s", "page ÷ trivial"], rows)
        + f"\n\ngunicorn with {r['workers']} workers (one per core), `wrk -t2 -c16` for "
        f"{r['seconds']} s per side on loopback, SQLite; every page and the trivial view once "
        f"per round, shuffled, {r['rounds']} rounds; median [min-max]."
    )


def audit(run, dbs: list[str], quick: bool) -> str:
    rows = []
    for db in dbs:
        r = run("audit_chain", "--db", db, "-n", "50" if quick else "200", "--rounds", "7")
        if why := failed(r):
            rows.append([db, why, "", "", ""])
            continue
        for mode in ("serial", "concurrent"):
            if mode not in r:
                continue
            m = r[mode]
            s = {"median": m["ratio_median"], "min": m["ratio_min"], "max": m["ratio_max"]}
            label = "one at a time" if mode == "serial" else f"{r['threads']} threads at once"
            rows.append(
                [
                    db,
                    label,
                    f"{m['with_per_s']:.0f}/s",
                    f"{m['without_per_s']:.0f}/s",
                    f"{shown(s, 2)}, {m['added_ms']:+.2f} ms",
                ]
            )
    return (
        "## 5. The audit chain's cost per approval\n\n"
        + table(
            ["db", "approvals", "with the chain", "without", "time with ÷ without, per approval"],
            rows,
        )
        + "\n\nInterleaved rounds of single approvals (services.approve_request), "
        "median [min-max]."
    )
