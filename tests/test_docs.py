"""The README is the first page a newcomer reads: its first lines are the two commands, the very ones
CI runs, and it stays short; the examples of docs/operators.md say what the commands really print."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def shell_blocks(markdown: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", markdown, flags=re.S)


def test_the_readme_opens_with_the_two_commands_and_ci_runs_the_second() -> None:
    readme = (ROOT / "README.md").read_text()
    run_dev, run_tests = (block.strip() for block in shell_blocks(readme)[:2])
    assert run_dev.endswith("&& .venv/bin/crmsync dev")
    assert run_tests.endswith("&& .venv/bin/python -m pytest")
    assert (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1] == run_tests
    assert readme.index(run_dev) < readme.index(run_tests) < readme.index("---")


def test_the_readme_is_at_most_200_lines() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200
