"""SoftHSM2 tokens for the PKCS#11 tests: each test gets its own token directory (through
SOFTHSM2_CONF) and a token with a label of its own, initialised by softhsm2-util."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
MODULE = next((path for path in MODULE_CANDIDATES if Path(path).is_file()), "")

#: Skip (with the reason) only where SoftHSM2 is not installed; CI installs it.
needs_softhsm = pytest.mark.skipif(
    shutil.which("softhsm2-util") is None or not MODULE,
    reason="SoftHSM2 is not installed (Debian: apt-get install softhsm2)",
)
needs_pkcs11_tool = pytest.mark.skipif(
    shutil.which("pkcs11-tool") is None, reason="OpenSC is not installed (apt-get install opensc)"
)

PIN = "71942268"
SO_PIN = "31415926"


@dataclass
class Token:
    """A SoftHSM2 token: its label, PINs, module, and the configuration naming its directory."""

    label: str
    pin: str
    so_pin: str
    module: str
    conf: Path
    directory: Path

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to see this token (add the portal's own settings)."""
        return {
            "SOFTHSM2_CONF": str(self.conf),
            "PKCS11_MODULE": self.module,
            "PKCS11_TOKEN_LABEL": self.label,
            "PKCS11_PIN": self.pin,
        }

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """softhsm2-util with this token's configuration."""
        return subprocess.run(
            ["softhsm2-util", *args],
            env={"SOFTHSM2_CONF": str(self.conf), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    def pkcs11_tool(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """OpenSC's pkcs11-tool on this token."""
        return subprocess.run(
            ["pkcs11-tool", "--module", self.module, "--token-label", self.label, *args],
            env={"SOFTHSM2_CONF": str(self.conf), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    def delete(self) -> None:
        """Take the token away, as pulling an HSM out would."""
        self.run("--delete-token", "--token", self.label)


def init_token(directory: Path, *, label: str | None = None, pin: str = PIN) -> Token:
    """A fresh token in its own directory (softhsm2-util --init-token --free)."""
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    token = Token(
        label=label or f"portal-{uuid.uuid4().hex[:8]}",
        pin=pin,
        so_pin=SO_PIN,
        module=MODULE,
        conf=conf,
        directory=tokens,
    )
    token.run("--init-token", "--free", "--label", token.label, "--pin", pin, "--so-pin", SO_PIN)
    return token


def use_token(token: Token, monkeypatch, settings) -> None:
    """Point this process (its PKCS#11 module, the settings) at the token; /healthz checks
    token keys, as in a deployment with PKCS11_MODULE set at start-up."""
    from requests_app import extensions, keys
    from requests_app.keys.pkcs11 import token_health
    from requests_app.keys.pkcs11.session import library

    monkeypatch.setitem(extensions._health_checks, "ca_key_tokens", token_health)
    monkeypatch.setenv("SOFTHSM2_CONF", str(token.conf))
    loaded = library(token.module)
    if loaded._lib is not None:  # SoftHSM2 reads SOFTHSM2_CONF when it is initialised
        keys.reset()
        loaded.reinitialize()
    settings.PKCS11_MODULE = token.module
    settings.PKCS11_TOKEN_LABEL = token.label
    settings.PKCS11_PIN = token.pin
    settings.PKCS11_PIN_FILE = ""
    keys.reset()
