"""The soak at a small size: duplicates, reordering, API faults and a SIGKILLed worker dyno (2 dynos of
4 worker processes each), end state exact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_small_soak_ends_with_no_mismatch_and_nothing_lost() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--customers", "20", "--events", "5", "--workers", "2",
         "--concurrency", "4"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    report = result.stdout
    assert result.returncode == 0, report[-4000:] + result.stderr[-4000:]
    assert "| mismatches (expected vs sandbox)        | 0" in report
    assert "| lost (no job for an event)              | 0" in report
    assert "| worker SIGKILLed mid-run                | yes" in report
