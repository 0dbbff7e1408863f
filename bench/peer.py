"""The peer row: django-ca 3.2.0 issuing one certificate at a time, in the same run as the
portal's single approvals and the raw script, rounds interleaved and shuffled.

django-ca runs in its own virtualenv (bench/.peer-venv, made on first use with `venv` and
pip's configured index) as a long-lived process (bench/peer_worker.py) that issues one round
per command; the portal and the raw side run here, against SQLite. Prints one JSON line, or
{"skipped": why} when django-ca's virtualenv cannot be made (no network, say).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from bench.common import ROOT, fresh_database, interleaved, ratios, setup_django, spread

PEER = "django-ca==3.2.0"
VENV = ROOT / "bench" / ".peer-venv"


def ensure_venv() -> str | None:
    """django-ca's interpreter, installing it on first use; None when that failed (logged)."""
    python = VENV / "bin" / "python"
    check = [str(python), "-I", "-c", "import django_ca; print(django_ca.__version__)"]
    if python.exists():
        found = subprocess.run(check, capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.strip() == PEER.split("==")[1]:
            return str(python)
    print(f"creating {VENV.name} with {PEER}", file=sys.stderr, flush=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(VENV)],
        [str(python), "-m", "pip", "install", "--quiet", PEER],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            print("\n".join(tail), file=sys.stderr)
            return None
    return str(python)


class Peer:
    """The django-ca process: one JSON line out per command in."""

    def __init__(self, python: str):
        self.process = subprocess.Popen(
            [python, "-I", str(ROOT / "bench" / "peer_worker.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.hello = self._read()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"django-ca's process ended (exit {self.process.wait()})")
        return json.loads(line)

    def side(self, key_type: str, n: int):
        def run_round():
            self.process.stdin.write(f"round {key_type} {n}\n")
            self.process.stdin.flush()
            answer = self._read()
            return answer["seconds"], answer["items"]

        return run_round

    def close(self) -> None:
        self.process.stdin.write("quit\n")
        self.process.stdin.close()
        self.process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ca", choices=["rsa2048", "p256"], default="p256")
    parser.add_argument("-n", type=int, default=200, help="certificates per side and round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    python = ensure_venv()
    if python is None:
        why = f"{PEER} could not be installed in its own virtualenv (no package index?)"
        print(json.dumps({"bench": "peer", "ca": args.ca, "skipped": why}))
        return
    setup_django(
        fresh_database("sqlite", f"peer_{args.ca}"),
        PREISSUANCE_LINT="False",
        REVOCATION_BASE_URL="http://ca.example.com",
    )
    from bench.issuance import Issuance

    peer = Peer(python)
    try:
        portal = Issuance(args.ca, 3)
        sides = {"raw": portal.raw(), "portal": portal.single(), "django-ca": None}
        sides["django-ca"] = peer.side(args.ca, 3)
        for side in sides.values():  # untimed: first use of each key, caches, imports
            side()
        portal.n = args.n
        sides["django-ca"] = peer.side(args.ca, args.n)
        rates = interleaved(sides, args.rounds, seed=args.seed)
    finally:
        peer.close()
    pairs = {
        "django-ca/raw": ("django-ca", "raw"),
        "portal/raw": ("portal", "raw"),
        "portal/django-ca": ("portal", "django-ca"),
    }
    print(
        json.dumps(
            {
                "bench": "peer",
                "db": "sqlite",
                "ca": args.ca,
                "peer": f"django-ca {peer.hello.get('django_ca')}",
                "n": args.n,
                "rounds": args.rounds,
                "rates": rates,
                "per_s": {name: sorted(v)[len(v) // 2] for name, v in rates.items()},
                "ratios": {name: spread(ratios(rates, a, b)) for name, (a, b) in pairs.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
