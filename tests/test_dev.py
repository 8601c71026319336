"""The README's first command: `crmsync dev` runs everything and the sample webhook reaches the sandbox."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support import free_port


def test_dev_command_runs_the_service_and_the_sample_webhook_changes_the_sandbox() -> None:
    env = {name: value for name, value in os.environ.items() if name != "REDIS_URL"}  # embedded Redis
    result = subprocess.run(
        [sys.executable, "-m", "crmsync", "dev", "--smoke", "--port", str(free_port()),
         "--sandbox-port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Send a signed sample webhook:" in result.stdout
    assert "send-sample" in result.stdout
    assert "sample webhook: HTTP 202" in result.stdout
    assert "sandbox now has customer crm-0001: Mars Missions" in result.stdout
