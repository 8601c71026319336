"""The fast tier (`pytest -m "not slow"`) leaves out exactly the tests that start a process, by the
rule in tests/conftest.py: whatever the test, its helpers or its fixtures start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def collected(*arguments: str) -> set[str]:
    listed = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *arguments],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return {line.split("::")[1].split("[")[0] for line in listed.splitlines() if "::" in line}


def test_the_fast_tier_leaves_out_every_test_that_starts_a_process() -> None:
    files = ("tests/test_worker_dyno.py", "tests/test_heroku.py", "tests/test_tiers.py")
    fast = collected("-m", "not slow", *files)
    # Through the `dyno` fixture, through a helper (start_gunicorn), through a module fixture (slug).
    assert "test_three_workers_take_three_jobs_at_once" not in fast
    assert "test_gunicorn_refuses_to_start_with_a_bad_setting_and_names_it" not in fast
    assert "test_the_buildpacks_slug_carries_no_dev_or_test_dependency" not in fast
    assert "test_the_fast_tier_leaves_out_every_test_that_starts_a_process" not in fast
    # What starts nothing stays in the fast tier (the certificate's tests run openssl, a process).
    assert fast == {"test_app_json_describes_every_setting_the_service_reads",
                    "test_the_container_runs_the_procfiles_commands_from_the_lock"}  # fmt: skip
    assert fast | collected("-m", "slow", *files) == collected(*files)
