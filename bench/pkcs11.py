"""Issuance with the CA key in a PKCS#11 token (SoftHSM2) against the encrypted-file backend:
the same approvals (services.approve_request, one transaction each), by a CA of the same key
type in each backend, in interleaved rounds so that drift on a shared machine hits both
alike; and the signature alone (the backend's sign_certificate). Pre-issuance linting off.
Prints one JSON line. `section(run, quick)` is the table for bench/run.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench.common import fresh_database, setup_django, table, timed

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "bench-pin-1234"


def _token() -> dict[str, str]:
    """A SoftHSM2 token in a temporary directory; the environment that names it."""
    directory = Path(tempfile.mkdtemp(prefix="bench-softhsm-"))
    (directory / "tokens").mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\n")
    env = {"SOFTHSM2_CONF": str(conf)}
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", "bench", "--pin", PIN,
         "--so-pin", "bench-so-pin"],
        env={**os.environ, **env}, check=True, capture_output=True,
    )  # fmt: skip
    return env | {"PKCS11_MODULE": MODULE, "PKCS11_TOKEN_LABEL": "bench", "PKCS11_PIN": PIN}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--ca", choices=["rsa2048", "p256"], default="p256")
    parser.add_argument("-n", type=int, default=100, help="approvals per round and backend")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if shutil.which("softhsm2-util") is None or not Path(MODULE).is_file():
        raise SystemExit("SoftHSM2 is not installed (apt-get install softhsm2)")
    setup_django(fresh_database(args.db, f"pkcs11_{args.ca}"), PREISSUANCE_LINT="False", **_token())

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID
    from django.db import transaction

    from requests_app import keys, pki, services
    from requests_app.models import CertificateAuthority

    cas = {
        "file": services.create_ca(f"CN=Bench file {args.ca} CA", key_type=args.ca),
        "token": services.create_ca(
            f"CN=Bench token {args.ca} CA", key_type=args.ca, force=True, key_backend="pkcs11"
        ),
    }

    def make_default(ca) -> None:
        with transaction.atomic():  # the bench switches CAs directly; no service does this
            CertificateAuthority.objects.update(is_default=False)
            CertificateAuthority.objects.filter(pk=ca.pk).update(is_default=True)
        CertificateAuthority.objects.forget_default()

    key = pki.generate_private_key("p256")

    def csr(i: int) -> str:
        # A key of its own each: a second pending request for one key is refused.
        own = pki.generate_private_key("p256")
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"k{i}.bench.test")])
        built = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(name)
            .sign(own, pki.signature_hash(own))
        )
        return built.public_bytes(serialization.Encoding.PEM).decode()

    def approve(ids):
        for public_id in ids:
            services.approve_request(public_id, agent=None)

    builders = [
        pki.ocsp_responder_builder(
            ca_cert=cas["file"].certificate, public_key=key.public_key(), validity_days=1
        )
        for _ in range(args.n)
    ]

    def sign_only(ca):
        backend = keys.backend_for(ca)
        for builder in builders:
            backend.sign_certificate(ca, builder)

    approvals = {"ratios": [], "file": 0.0, "token": 0.0}
    signatures = {"ratios": [], "file": 0.0, "token": 0.0}
    for round_number in range(args.rounds):
        order = ("file", "token") if round_number % 2 == 0 else ("token", "file")
        seconds, signing = {}, {}
        for mode in order:
            make_default(cas[mode])
            ids = [
                services.submit_request(
                    profile="server",
                    csr=csr(i),
                    requester_email=f"b{round_number}{mode}{i}@bench.test",
                ).public_id
                for i in range(args.n)
            ]
            seconds[mode], _ = timed(approve, ids)
            signing[mode], _ = timed(sign_only, cas[mode])
        for totals, measured in ((approvals, seconds), (signatures, signing)):
            totals["ratios"].append(measured["token"] / measured["file"])
            totals["file"] += measured["file"]
            totals["token"] += measured["token"]

    def summary(totals) -> dict:
        count = args.n * args.rounds
        return {
            "ratio_median": statistics.median(totals["ratios"]),
            "ratio_min": min(totals["ratios"]),
            "ratio_max": max(totals["ratios"]),
            "file_per_s": count / totals["file"],
            "token_per_s": count / totals["token"],
        }

    print(
        json.dumps(
            {
                "bench": "pkcs11",
                "db": args.db,
                "ca": args.ca,
                "n": args.n,
                "rounds": args.rounds,
                "approvals": summary(approvals),
                "signatures": summary(signatures),
            }
        )
    )


def section(run, quick: bool) -> str:
    """The table for bench/run.py: token against file, per key type."""
    rows = []
    for ca in ("p256", "rsa2048"):
        r = run("pkcs11", "--ca", ca, "-n", "30" if quick else "100", "--rounds", "7")
        if "error" in r:
            rows.append([ca, "error", str(r["error"]), "", ""])
            continue
        for what in ("approvals", "signatures"):
            m = r[what]
            rows.append(
                [
                    ca,
                    "approvals (one transaction each)" if what == "approvals" else "signature only",
                    f"{m['file_per_s']:.0f}/s",
                    f"{m['token_per_s']:.0f}/s",
                    f"{m['ratio_median']:.2f} [{m['ratio_min']:.2f}-{m['ratio_max']:.2f}]",
                ]
            )
    return (
        "## The CA key in a PKCS#11 token (SoftHSM2) against the encrypted file\n\n"
        + table(
            [
                "CA key",
                "measured",
                "file backend",
                "PKCS#11 token",
                "time ratio token/file, median [min-max]",
            ],
            rows,
        )
        + "\n\nInterleaved rounds on SQLite, pre-issuance linting off; the token is SoftHSM2 "
        "(a software token: a network HSM adds its round trip to every signature)."
    )


if __name__ == "__main__":
    main()
