"""Where the time goes: py-spy samples a real web worker under load, or a real `crmsync worker --burst`.

    REDIS_URL=redis://127.0.0.1:6379/15 python -m bench.profile ingest [--seconds 8]
    REDIS_URL=redis://127.0.0.1:6379/15 python -m bench.profile drain [--events 4000]

Needs py-spy (`pip install -e '.[bench]'`). Prints the functions with the largest inclusive and
self shares of the samples (wall clock: waiting on sockets counts), and keeps the raw stacks in
`--out` for a flamegraph.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import requests

from bench.stack import (
    CUSTOMERS_TOKEN,
    SECRET,
    WEBHOOK_SECRET,
    bench_redis,
    children_of,
    flush,
    free_port,
    start,
    stop,
    wait_ready,
)
from bench.workload import signed_lines

# This checkout's root, as py-spy prints it in a frame's path: crmsync's own modules shown relative to it.
REPOSITORY = f"{Path(__file__).resolve().parents[1]}/"
STANDARD_LIBRARY = f"/lib/python{sys.version_info.major}.{sys.version_info.minor}/"

__all__ = ["summarise"]

_IDLE = ["--idle"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("path", choices=["ingest", "drain"])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=None, help="keep the raw (collapsed) stacks here")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--cpu", action="store_true", help="on-CPU samples only (default: wall clock)")
    options = parser.parse_args()
    if not _py_spy_path():
        sys.exit("py-spy is not installed: pip install -e '.[bench]'")
    global _IDLE
    _IDLE = [] if options.cpu else ["--idle"]
    with bench_redis() as redis_url, tempfile.TemporaryDirectory(prefix="crmsync-profile-") as scratch:
        out = options.out or Path(scratch) / "stacks.txt"
        if options.path == "ingest":
            _profile_ingest(redis_url, Path(scratch), out, options.seconds)
        else:
            _profile_drain(redis_url, out, options.events)
        summarise(out.read_text(), options.top)


def _profile_ingest(redis_url: str, scratch: Path, out: Path, seconds: float) -> None:
    """Sample one of the two gunicorn workers while wrk drives signed deliveries at both."""
    from bench.ingest import LUA

    flush(redis_url)
    port = free_port()
    env = {"PORT": str(port), "WEBHOOK_SECRET": WEBHOOK_SECRET, "REDIS_URL": redis_url}
    server = start(
        ["gunicorn", "--config", "python:crmsync.server.gunicorn_conf", "crmsync.web:create_app()"], env
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", server)
        lines = scratch / "requests.tsv"
        lines.write_text("\n".join(signed_lines(SECRET, int(4000 * (seconds + 2)))) + "\n")
        load = subprocess.Popen(["wrk", "-t", "1", "-c", "16", "-d", f"{seconds + 2:.0f}s", "-s", str(LUA),
                                 f"http://127.0.0.1:{port}/webhooks/crm", "--", str(lines), "1"],
                                stdout=subprocess.DEVNULL)  # fmt: skip
        time.sleep(1)
        _py_spy(["--pid", str(children_of(server.pid)[0]), "--duration", f"{seconds:.0f}"], out)
        load.wait()
    finally:
        stop(server)


def _profile_drain(redis_url: str, out: Path, events: int) -> None:
    """Enqueue `events` mixed events, then run one burst worker under py-spy until the queue is empty."""
    from bench.drain import enqueue_backlog, reset_sandbox, sandbox_env, worker_env

    flush(redis_url)
    port = free_port()
    sandbox = start(["crmsync", "sandbox", "--port", str(port)], sandbox_env())
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", sandbox)
        customers = max(1, events // 10)
        reset_sandbox(port, customers)
        enqueue_backlog(redis_url, port, events, customers)
        env = worker_env(redis_url, port)
        command = [sys.executable, "-m", "crmsync", "worker", "--burst"]
        _py_spy(["--subprocesses", "--", *command], out, env)
        headers = {"Authorization": f"Bearer {CUSTOMERS_TOKEN}"}
        stats = requests.get(f"http://127.0.0.1:{port}/admin/stats", headers=headers, timeout=5).json()
        print(f"sandbox mutations: {stats}")
    finally:
        stop(sandbox)


def _py_spy(arguments: list[str], out: Path, env: dict[str, str] | None = None) -> None:
    import os

    command = [_py_spy_path(), "record", *_IDLE, "--rate", "500", "--format", "raw", "--output", str(out),
               "--nonblocking", *arguments]  # fmt: skip
    subprocess.run(command, check=True, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)  # fmt: skip


def _py_spy_path() -> str:
    """py-spy on PATH, or next to this interpreter (a venv that is not activated)."""
    beside = Path(sys.executable).with_name("py-spy")
    return shutil.which("py-spy") or (str(beside) if beside.exists() else "")


def summarise(collapsed: str, top: int) -> None:
    """Print inclusive and self shares per function from py-spy's collapsed stacks."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = [_short(frame) for frame in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    print(f"\n{total} samples\n\n### Inclusive (time in the function and what it calls)\n")
    for frame, count in inclusive.most_common(top):
        print(f"{count / total:6.1%}  {frame}")
    print("\n### Self (time in the function's own code)\n")
    for frame, count in own.most_common(top):
        print(f"{count / total:6.1%}  {frame}")


def _short(frame: str) -> str:
    """`fn (path/to/site-packages/pkg/mod.py:12)` -> `fn (pkg/mod.py)`; line numbers are dropped so
    one function is counted once."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", STANDARD_LIBRARY, REPOSITORY):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


if __name__ == "__main__":
    main()
