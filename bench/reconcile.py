"""Reconcile at scale: `python -m bench.reconcile`.

A sandbox (its own process) seeded in bulk with N platform customers, and an N-record NDJSON export
with 1 % drift: a quarter of it new records (creates), half of it changed names (updates), a
quarter of the platform missing from the export (deletes, with --delete-missing). Then, each as
its own process, as an operator would run them:

1. `crmsync reconcile --delete-missing` (dry run),
2. the same with `--apply`, then `crmsync worker --burst` draining what it queued,
3. the dry run again, which must find no drift;
4. `crmsync import` of the same export into an empty Redis (every record queued; streamed, so its
   memory does not grow with the export), and the same import again (nothing is queued twice).

For each: wall time, peak RSS (the process's own maximum, from wait4), and the requests the
customers API received (the sandbox's counters), split into listing pages, lookups and mutations.
Targets (issue 10): peak RSS <= 150 MB; requests = listing pages + planned mutations.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from .stack import (
    CUSTOMERS_TOKEN,
    PERSONAL_DATA_TOKEN,
    ROOT,
    bench_redis,
    flush,
    free_port,
    platform_env,
    print_table,
    start,
    stop,
    wait_ready,
)

HEADERS = {"Authorization": f"Bearer {CUSTOMERS_TOKEN}"}
PAGE = 100


@dataclass
class Run:
    """One measured process."""

    step: str
    seconds: float
    peak_rss_mb: float
    requests: int
    mutations: int
    output: dict[str, Any]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000, help="platform customers (default 100,000)")
    parser.add_argument(
        "--drift", type=float, default=0.01, help="share of records that differ (default 0.01)"
    )
    options = parser.parse_args()
    port = free_port()
    with bench_redis() as redis_url, tempfile.TemporaryDirectory() as folder:
        flush(redis_url)
        sandbox = start(["crmsync", "sandbox", "--port", str(port)], sandbox_env())
        try:
            wait_ready(f"http://127.0.0.1:{port}/healthz", sandbox)
            admin = f"http://127.0.0.1:{port}/admin"
            seed(admin, options.customers)
            export = Path(folder) / "export.ndjson"
            planned = write_export(export, options.customers, options.drift)
            env = cli_env(redis_url, port)
            reconcile = ["reconcile", str(export), "--delete-missing", "--json"]
            runs = [
                measure("crmsync --version (the process's own floor)", admin, env, ["--version"]),
                measure("dry run", admin, env, reconcile),
                measure("--apply", admin, env, [*reconcile, "--apply"]),
                measure(
                    "worker --burst (applies the plan)", admin, env, ["worker", "--burst", "--no-scheduler"]
                ),
                measure("dry run again", admin, env, reconcile),
            ]
            flush(redis_url)  # An import into an empty ledger: every record is queued.
            runs.append(measure("import (the same export)", admin, env, ["import", str(export), "--json"]))
            runs.append(measure("import again", admin, env, ["import", str(export), "--json"]))
        finally:
            stop(sandbox)
    report(runs, options.customers, planned)


def sandbox_env() -> dict[str, str]:
    return {"SANDBOX_CUSTOMERS_TOKEN": CUSTOMERS_TOKEN, "SANDBOX_PERSONAL_DATA_TOKEN": PERSONAL_DATA_TOKEN}


def cli_env(redis_url: str, port: int) -> dict[str, str]:
    base = f"http://127.0.0.1:{port}"
    return {
        "REDIS_URL": redis_url,
        **platform_env(f"{base}/customers/graphql", f"{base}/personal-data/graphql"),
        "LOG_LEVEL": "WARNING",
    }


def seed(admin: str, customers: int) -> None:
    """crm-0 ... crm-(N-1), in creation order, bypassing the API (and its counters)."""
    recipe = {"count": customers, "start": 0, "description": "Account", "labels": ["tier-1"]}
    response = requests.post(f"{admin}/customers", json={"generate": recipe}, headers=HEADERS, timeout=120)
    response.raise_for_status()


def write_export(path: Path, customers: int, drift: float) -> dict[str, int]:
    """The export: the platform's customers less the first quarter of the drift (deleted in the CRM),
    half of the drift renamed, and a quarter of it new. Returns the planned counts."""
    changes = int(customers * drift)
    deletes, creates = changes // 4, changes // 4
    updates = changes - deletes - creates
    every = max(1, (customers - deletes) // max(1, updates))
    renamed = set(range(deletes, customers, every)[:updates])
    with path.open("w") as out:
        for n in range(deletes, customers + creates):
            name = f"Renamed {n}" if n in renamed else f"Customer {n}"
            out.write(json.dumps({"external_id": f"crm-{n}", "name": name, "description": "Account",
                                  "labels": ["tier-1"]}) + "\n")  # fmt: skip
    return {"create": creates, "update": len(renamed), "delete": deletes}


def measure(step: str, admin: str, env: dict[str, str], args: list[str]) -> Run:
    """Run `crmsync ARGS` as a process; its wall time, peak RSS and the API requests it caused."""
    requests.delete(f"{admin}/rates", headers=HEADERS, timeout=10).raise_for_status()
    requests.delete(f"{admin}/stats", headers=HEADERS, timeout=10).raise_for_status()
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "crmsync", *args], env={**os.environ, **env}, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"crmsync {' '.join(args)} exited with {process.returncode}")
    rates = requests.get(f"{admin}/rates", headers=HEADERS, timeout=10).json()
    stats = requests.get(f"{admin}/stats", headers=HEADERS, timeout=10).json()
    return Run(
        step=step,
        seconds=seconds,
        peak_rss_mb=usage.ru_maxrss / 1024,
        requests=int(rates["customers"]["total"]),
        mutations=sum(
            int(stats["mutations"][name]) for name in ("createCustomer", "updateCustomer", "deleteCustomer")
        ),
        output=json.loads(output) if output.strip().startswith(b"{") else {},
    )


def report(runs: list[Run], customers: int, planned: dict[str, int]) -> None:
    pages = -(-customers // PAGE)
    rows = []
    for run in runs:
        plan = run.output
        listing = plan.get("pages", 0)
        if "already_queued" in plan:
            counts = f"{plan['queued']:,} queued, {plan['already_queued']:,} already"
        else:
            counts = (
                "/".join(str(plan.get(kind, "-")) for kind in ("create", "update", "delete")) if plan else "-"
            )
        rows.append([
            run.step, f"{run.seconds:.1f}", f"{run.peak_rss_mb:.0f}", counts, run.requests, listing,
            run.requests - listing - run.mutations, run.mutations,
        ])  # fmt: skip
    print_table(
        f"reconcile: {customers:,} platform customers ({pages:,} pages), a {customers:,}-record export, "
        f"planned {planned['create']}/{planned['update']}/{planned['delete']} (create/update/delete)",
        [
            "step",
            "wall s",
            "peak RSS MB",
            "plan c/u/d",
            "API requests",
            "listing pages",
            "lookups",
            "mutations",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
