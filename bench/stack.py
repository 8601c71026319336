"""The pieces every benchmark starts: Redis, processes on free loopback ports, and their memory.

Processes are started the way Procfile and `crmsync dev` start them (same modules, same env
variables), so what is measured is what runs in production, minus the network.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from redis import Redis

from crmsync.cli import dev
from crmsync.cli.embedded_redis import start_embedded_redis

__all__ = [
    "platform_env",
    "ROOT",
    "SECRET",
    "WEBHOOK_SECRET",
    "CUSTOMERS_TOKEN",
    "PERSONAL_DATA_TOKEN",
    "bench_redis",
    "free_port",
    "start",
    "stop",
    "wait_ready",
    "rss_mb",
    "cpu_seconds",
    "redis_cpu_seconds",
    "children_of",
    "print_table",
]

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"bench-secret-0123456789abcdef012"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(SECRET).decode()
CUSTOMERS_TOKEN = "bench-customers-token"
PERSONAL_DATA_TOKEN = "bench-personal-data-token"


def platform_env(customers_url: str, personal_data_url: str) -> dict[str, str]:
    """The settings that point crmsync at the sandbox's two APIs, with the bench's tokens."""
    return {
        "CUSTOMERS_API_URL": customers_url,
        "CUSTOMERS_API_TOKEN": CUSTOMERS_TOKEN,
        "PERSONAL_DATA_API_URL": personal_data_url,
        "PERSONAL_DATA_API_TOKEN": PERSONAL_DATA_TOKEN,
    }


@contextmanager
def bench_redis() -> Iterator[str]:
    """REDIS_URL when set (its database is flushed between runs: point it at a spare one, e.g. /15),
    else an embedded redis-server on loopback for this run."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = start_embedded_redis()
    try:
        yield server.url
    finally:
        server.stop()


def flush(redis_url: str) -> None:
    """Empty the benchmark's Redis database, so each run starts from the same state."""
    client = Redis.from_url(redis_url)
    client.flushdb()
    client.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(
    args: Sequence[str], env: dict[str, str], quiet: bool = True, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a Python module as a child process; its logs are discarded (formatting them still runs),
    shown (`quiet` False), or appended to the file `log`."""
    output: int | IO[bytes] | None = subprocess.DEVNULL if quiet else None
    if log is not None:
        output = log.open("ab")
    # Its own process group, so a SIGKILL can take its children (RQ's scheduler) too, like a dyno's.
    return subprocess.Popen([sys.executable, "-m", *args], env={**os.environ, **env}, cwd=ROOT,
                            stdout=output, stderr=output, start_new_session=True)  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then wait (SIGKILL after 30 s, like Heroku)."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Wait until `url` answers 2xx, failing early if `process` dies."""
    dev.wait_ready(url, {f"process {process.args!r}": process}, timeout)


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (0 if it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_cpu_seconds(redis_url: str) -> float:
    """CPU time the Redis server has used so far, from INFO (works for a server in another container)."""
    client = Redis.from_url(redis_url)
    info = client.info("cpu")
    client.close()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def children_of(pid: int) -> list[int]:
    """Direct child processes (gunicorn's workers of its master)."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain-text table, also valid Markdown, so it can be pasted into docs/benchmarks.md."""
    cells = [[str(value) for value in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n### {title}\n")
    for index, row in enumerate(cells):
        print("| " + " | ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    sys.stdout.flush()
