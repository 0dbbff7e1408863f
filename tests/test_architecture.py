"""The architecture's rules as tests: the import-linter contracts hold on this tree, each of
them fails when someone breaks it, and surfaces (views, admin, commands) write nothing
themselves: every state change goes through requests_app.services."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")
PACKAGES = ("requests_app", "delivery", "ca_portal")

#: The modules people and clients act through; none of them may write to the database.
SURFACES = (
    "requests_app/views",
    "requests_app/admin.py",
    "requests_app/management",
    "requests_app/dogtag",
    "requests_app/revocation",
    "requests_app/rest",
    "delivery/views.py",
    "delivery/admin.py",
    "delivery/management",
)
#: Calls that write (or lock for writing): only services make them.
WRITES = frozenset(
    {
        "save",
        "create",
        "update",
        "delete",
        "bulk_create",
        "bulk_update",
        "get_or_create",
        "update_or_create",
        "select_for_update",
        "atomic",
        "send",
        "send_robust",
    }
)


def lint_imports(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_the_import_contracts_hold():
    """lint-imports finds every contract of pyproject.toml kept on this tree."""
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _module_path(tree: Path, dotted: str) -> Path:
    path = tree / Path(*dotted.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


@pytest.mark.parametrize(
    ("contract", "module", "line"),
    [
        ("pki-pure", "requests_app.pki", "from django.conf import settings"),
        ("no-delivery", "requests_app.views.agent", "import delivery.models"),
        (
            "services-public",
            "requests_app.views.agent",
            "from requests_app.services import records",
        ),
        ("signals-from-services", "requests_app.views.ee", "from requests_app import signals"),
        ("key-custody", "requests_app.views.ee", "from requests_app import keys"),
        (
            "adapters-independent",
            "requests_app.dogtag.views",
            "from requests_app.revocation import crl",
        ),
    ],
)
def test_each_contract_fails_when_broken(tmp_path, contract, module, line):
    """A copy of the tree with one forbidden import added breaks exactly that contract."""
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    assert lint_imports(tmp_path, "--contract", contract).returncode == 0
    target = _module_path(tmp_path, module)
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    result = lint_imports(tmp_path, "--contract", contract)
    assert result.returncode == 1, result.stdout
    assert "1 broken" in result.stdout


def writes_in(source: str) -> list[str]:
    """The write calls (by attribute name) in a module's source, as "line: name"."""
    return [
        f"{node.lineno}: {node.func.attr}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in WRITES
    ]


def _surface_modules() -> list[Path]:
    paths = []
    for entry in SURFACES:
        path = ROOT / entry
        if path.is_dir():
            paths += sorted(p for p in path.rglob("*.py") if "migrations" not in p.parts)
        elif path.exists():
            paths.append(path)
    return paths


def test_surfaces_write_only_through_services():
    """No view, admin or command saves, updates, deletes, locks, opens a transaction or sends
    a signal itself."""
    offenders = {
        str(path.relative_to(ROOT)): writes
        for path in _surface_modules()
        if (writes := writes_in(path.read_text()))
    }
    assert offenders == {}


@pytest.mark.parametrize(
    "snippet",
    [
        "req.save(update_fields=['status'])",
        "Certificate.objects.filter(pk=1).update(status='revoked')",
        "with transaction.atomic():\n    pass",
        "AuditEvent.objects.create(action='x')",
        "signals.certificate_issued.send(sender=None)",
    ],
)
def test_the_write_check_catches_a_write(snippet):
    """The check above is not vacuous: each kind of write is found."""
    assert writes_in(snippet)
