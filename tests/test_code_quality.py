"""The code stays ruff- and mypy-clean and keeps its layers (import-linter): part of the test suite, so
CI enforces it."""

from __future__ import annotations

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


def test_imports_follow_the_layers() -> None:
    """`.importlinter`'s contracts: imports point down the layers, webhooks and jobs never import each
    other, and the service and the sandbox stay apart."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint_imports)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
