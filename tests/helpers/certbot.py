"""certbot, run as a real client against a live portal: a throwaway configuration, work and
logs directory under the test's tmp, the portal's directory URL, and the hook scripts that
update the local DNS server (tests/helpers/dns.py) for dns-01.

    bot = Certbot(tmp_path, directory=portal.directory, http01_port=portal.http01_port)
    bot.run("register", "--eab-kid", kid, "--eab-hmac-key", key, "-m", "ops@example.test")
    bot.run("certonly", "--standalone", "-d", "www.example.test")
    bot.live("www.example.test") / "fullchain.pem"
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

#: The venv's certbot (requirements-dev.txt), else Debian's.
CERTBOT = shutil.which("certbot", path=os.path.dirname(sys.executable)) or shutil.which("certbot")

#: The project's root: the hook scripts run `python -m tests.helpers.dns` from there.
ROOT = Path(__file__).resolve().parents[2]


class CertbotFailed(AssertionError):
    def __init__(self, args: list[str], result: subprocess.CompletedProcess, log: str):
        self.result = result
        super().__init__(
            f"certbot {' '.join(args)} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}\n--- log (tail)\n{log}"
        )


class Certbot:
    """certbot with its own directories, talking to one ACME directory URL."""

    def __init__(self, tmp: Path, *, directory: str, http01_port: int, timeout: float = 180):
        self.root = Path(tmp) / "certbot"
        self.directory = directory
        self.http01_port = http01_port
        self.timeout = timeout
        for sub in ("config", "work", "logs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def base_args(self) -> list[str]:
        return [
            "--server",
            self.directory,
            "--config-dir",
            str(self.root / "config"),
            "--work-dir",
            str(self.root / "work"),
            "--logs-dir",
            str(self.root / "logs"),
            "--non-interactive",
            "--agree-tos",
            "--no-random-sleep-on-renew",
            "--http-01-port",
            str(self.http01_port),
            "--http-01-address",
            "127.0.0.1",
            # An RSA key by default would cost the tests a second each; certbot's ECDSA default
            # (P-256) is what most deployments now get.
            "--key-type",
            "ecdsa",
        ]

    def run(self, subcommand: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run `certbot SUBCOMMAND ARGS` (subcommand-specific flags after the common ones)."""
        assert CERTBOT, "certbot is not installed (pip install certbot, requirements-dev.txt)"
        argv = [CERTBOT, subcommand, *self.base_args(), *args]
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=self.timeout,
            check=False,
            cwd=self.root,
            env=os.environ | {"PYTHONPATH": str(ROOT)},
        )
        if check and result.returncode != 0:
            raise CertbotFailed(argv[1:], result, self.log_tail())
        return result

    def log_tail(self, lines: int = 60) -> str:
        log = self.root / "logs" / "letsencrypt.log"
        if not log.exists():
            return "(no log)"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def live(self, lineage: str) -> Path:
        """The live directory of a lineage (cert.pem, chain.pem, fullchain.pem, privkey.pem)."""
        return self.root / "config" / "live" / lineage

    def accounts(self) -> list[Path]:
        """The account directories certbot saved (one per registration)."""
        return [p.parent for p in (self.root / "config" / "accounts").rglob("regr.json")]

    def dns_hooks(self, zone: Path) -> tuple[str, str]:
        """--manual-auth-hook and --manual-cleanup-hook commands that put the validation
        (CERTBOT_VALIDATION) into the zone file as _acme-challenge.CERTBOT_DOMAIN, and take
        it out again."""
        scripts = []
        for action in ("add", "remove"):
            script = self.root / f"dns-{action}.sh"
            script.write_text(
                "#!/bin/sh\n"
                "set -e\n"
                f'cd "{ROOT}"\n'
                f'exec "{sys.executable}" -m tests.helpers.dns "{zone}" {action} '
                '"_acme-challenge.$CERTBOT_DOMAIN" "$CERTBOT_VALIDATION"\n'
            )
            script.chmod(0o755)
            scripts.append(str(script))
        return scripts[0], scripts[1]
