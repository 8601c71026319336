"""The code stays ruff- and mypy-clean and keeps its layers (import-linter): part of the test suite, so
CI enforces it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = [
    name
    for name in ("crmsync", "webhooks", "jobs", "sandbox", "tests", "bench", "tools")
    if any((ROOT / name).glob("*.py"))
]


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [("ruff", ["check", "."]), ("ruff", ["format", "--check", "."]), ("mypy", PACKAGES)],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_tool_passes(tool: str, arguments: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", tool, *arguments], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _lint_imports(root: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(lint_imports), *arguments], cwd=root, capture_output=True, text=True)


def test_imports_follow_the_layers() -> None:
    """`.importlinter`'s contracts: imports point down the layers, webhooks and jobs never import each
    other, the CRM sources neither each other nor the queue, and the service and the sandbox stay
    apart."""
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("crmsync/core/keys.py", "import crmsync.web", "layers"),
        ("crmsync/stray.py", "", "crmsync-exhaustive"),
        ("jobs/ordering.py", "import webhooks.body", "receiving-applying-independent"),
        ("webhooks/sources/pipedrive.py", "from webhooks.sources import hubspot", "sources-independent"),
        ("webhooks/sources/salesforce.py", "import crmsync.core.queue", "sources-without-queue"),
        ("webhooks/sources/hubspot.py", "import rq", "sources-without-queue"),
        ("crmsync/server/access_log.py", "import crmsync.web", "server-without-app"),
        ("crmsync/web/health.py", "import sandbox", "service-without-sandbox"),
    ],
)
def test_an_import_against_a_contract_fails_the_check(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    """The check CI runs fails on a violation: one import (or a module outside the layers) added to a
    copy of the code, which otherwise keeps every contract (test_imports_follow_the_layers)."""
    for package in ("crmsync", "webhooks", "jobs", "sandbox"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path)
    with (tmp_path / module).open("a") as source:
        source.write(f"{line}  # noqa\n")
    result = _lint_imports(tmp_path, "--no-cache", "--contract", contract)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Contracts: 0 kept, 1 broken." in result.stdout
    assert module.removesuffix(".py").replace("/", ".") in result.stdout.split("Broken contracts")[1]
