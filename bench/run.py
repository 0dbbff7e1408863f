"""`make bench`: the benchmarks, side-by-side ratios in tables, written to bench/RESULTS.md.

Each benchmark runs in its own process (each sets Django up against its own database) and
prints one JSON line; bench/sections.py turns them into tables. Exits 0 even when a goal is
missed: the table says so.

    python -m bench.run                         every part; writes bench/RESULTS.md
    python -m bench.run --only issuance,peer    some parts (also: --only a --only b)
    python -m bench.run --quick                 small sizes, a try-out; never written
    python -m bench.run --no-write              print only

RESULTS.md is written from a full run, or from a partial one with --write (its header
names the parts that ran).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time

from bench import expiring, pkcs11, sections
from bench.common import ROOT, machine, postgres_available

PARTS = ["issuance", "lint", "peer", "queue", "expiring", "drain", "web", "audit", "acme", "pkcs11"]


def run(module: str, *args: str) -> dict:
    """python -m bench.<module> args, in its own process: its last JSON line, or an error."""
    print(f"running {module} {' '.join(args)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args], cwd=ROOT, capture_output=True, text=True
    )
    print(f"  {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        return {
            "bench": module,
            "error": (result.stderr or result.stdout).strip().splitlines()[-1:],
        }
    return json.loads(lines[-1])


def parse_only(values: list[str] | None) -> list[str]:
    """The parts named by --only (repeated or comma-separated), in PARTS' order; all if none."""
    if not values:
        return list(PARTS)
    named = {part.strip() for value in values for part in value.split(",") if part.strip()}
    unknown = named - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {PARTS}")
    return [part for part in PARTS if part in named]


def report(parts: list[str], dbs: list[str], quick: bool, runner=run) -> str:
    """The Markdown report of the given parts."""
    out = []
    builders = {
        "issuance": lambda: sections.issuance(runner, dbs, quick),
        "lint": lambda: sections.lint(runner, quick),
        "peer": lambda: sections.peer(runner, quick),
        "queue": lambda: sections.queue(runner, dbs, quick),
        "expiring": lambda: expiring.report(runner, dbs, quick),
        "drain": lambda: sections.drain(runner, quick),
        "web": lambda: sections.web(runner, quick),
        "audit": lambda: sections.audit(runner, dbs, quick),
        "acme": lambda: _acme_section(runner, quick),
        "pkcs11": lambda: pkcs11.section(runner, quick),
    }
    for part in parts:
        out.append(builders[part]())
    return "\n\n".join(out)


def _acme_section(runner, quick: bool) -> str:
    from bench.acme import section  # imports certbot's acme library: only when it runs

    return section(runner, quick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", metavar="PART", help=", ".join(PARTS))
    parser.add_argument("--quick", action="store_true", help="small sizes; never written")
    parser.add_argument("--no-write", action="store_true", help="print, do not write")
    parser.add_argument("--write", action="store_true", help="write even a partial run")
    args = parser.parse_args()
    parts = parse_only(args.only)
    dbs = ["sqlite"] + (["postgres"] if postgres_available() else [])
    started = dt.datetime.now(dt.UTC)
    body = report(parts, dbs, args.quick)
    minutes = (dt.datetime.now(dt.UTC) - started).total_seconds() / 60
    full = parts == PARTS
    header = (
        f"# Benchmarks\n\n{started:%Y-%m-%d %H:%M} UTC on {machine()}, {minutes:.0f} min; "
        f"databases: {', '.join(dbs)}; parts run: {', '.join(parts)}"
        + ("" if full else f" (not run: {', '.join(p for p in PARTS if p not in parts)})")
        + (" — quick sizes, not for comparison" if args.quick else "")
        + ".\n"
    )
    analysis = (ROOT / "bench" / "analysis.md").read_text().strip()
    text = "\n\n".join([header, body, analysis]) + "\n"
    print(text)
    if not args.no_write and not args.quick and (full or args.write):
        (ROOT / "bench" / "RESULTS.md").write_text(text)
        print("wrote bench/RESULTS.md", file=sys.stderr)


if __name__ == "__main__":
    main()
