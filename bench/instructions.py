"""Web work per request, counted instead of timed: the instructions a gunicorn web worker executes
for one signed single-event webhook, crmsync against the floor (bare Flask + one Redis `SET`), and the
steps between them (bench/bare_app.py).

    python -m bench.instructions [--requests 400]      # needs valgrind (apt-get install -y valgrind)

A shared VM's steal moves every timed figure by tens of percent between runs; callgrind's count of
user-space instructions is the same within 0.5 % run after run. Each app runs under
`valgrind --tool=callgrind` with the Procfile's gunicorn settings and one process; it gets 100
warm-up requests and then either none or `--requests` more, sent one after another on one
connection, and the difference between the two runs' worker counts, over `--requests`, is the
figure. The kernel's share of a request (socket reads and writes) is not counted, on either side.
REDIS_URL's database is flushed; without it an embedded redis-server is started on loopback.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench.stack import ROOT, SECRET, WEBHOOK_SECRET, bench_redis, flush, free_port, print_table
from bench.workload import line_request, signed_lines

APPS = {
    "floor: bare Flask + 1 Redis SET": "bench.bare_app:create_redis_app()",
    # The steps between the two (bench/bare_app.py), as `bench.ingest --decompose` runs them.
    "floor + signature and contract checks": "bench.bare_app:create_verifying_app()",
    "floor + checks + crmsync's accept script": "bench.bare_app:create_enqueueing_app()",
    "crmsync, 1 event per request": "crmsync.web:create_app()",
}
WARM_UP = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--requests", type=int, default=400)
    options = parser.parse_args()
    per_request: dict[str, float] = {}
    with bench_redis() as redis_url:
        for label, app in APPS.items():
            counts = [worker_instructions(redis_url, app, requests, f"{label[:5]}{requests}")
                      for requests in (0, options.requests)]  # fmt: skip
            per_request[label] = (counts[1] - counts[0]) / options.requests
    floor = per_request["floor: bare Flask + 1 Redis SET"]
    rows = [[label, f"{count:,.0f}", f"{count / floor:.2f}"] for label, count in per_request.items()]
    print_table(f"Web worker instructions per single-event request ({options.requests} requests, callgrind)",
                ["app", "instructions / request", "/ floor"], rows)  # fmt: skip


def worker_instructions(redis_url: str, app: str, requests: int, tag: str) -> int:
    """User-space instructions of the gunicorn worker process that served WARM_UP + `requests`."""
    flush(redis_url)
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "WEBHOOK_SECRET": WEBHOOK_SECRET, "PORT": str(port),
           "WEB_CONCURRENCY": "1", "LOG_LEVEL": "WARNING", "PATH": _path()}  # fmt: skip
    # Under valgrind a busy worker could miss gunicorn's 20 s heartbeat and be replaced mid-run, its
    # successor counting part of the requests: hence the longer timeout, and the check below.
    command = ["valgrind", "--tool=callgrind", "--trace-children=yes", "--callgrind-out-file=/dev/null",
               "gunicorn", "--config", "python:crmsync.server.gunicorn_conf",
               "--timeout", "600", app]  # fmt: skip
    server = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        _wait_for_port(port, server)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for body, headers in _deliveries(WARM_UP + requests, tag):
            connection.request("POST", "/webhooks/crm", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 202:
                raise RuntimeError(f"{app} answered {response.status}")
        connection.close()
    finally:
        server.send_signal(signal.SIGTERM)
        _, errors = server.communicate(timeout=600)
    # Two processes report: gunicorn's arbiter (which serves nothing) and the worker, the larger.
    counts = [int(count) for count in re.findall(r"Collected : (\d+)", errors)]
    if len(counts) != 2 or errors.count("Booting worker") != 1:
        raise RuntimeError(f"{app}: the worker was replaced during the run; run the bench again")
    return max(counts)


def _deliveries(count: int, tag: str) -> Iterator[tuple[bytes, dict[str, str]]]:
    for line in signed_lines(SECRET, count, None, tag=tag):
        headers, body = line_request(line)
        yield body, headers


def _wait_for_port(port: int, server: subprocess.Popen[str], timeout: float = 300) -> None:
    """gunicorn under valgrind takes tens of seconds to start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("gunicorn under valgrind exited before listening (is valgrind installed?)")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"gunicorn under valgrind did not listen on {port} within {timeout:.0f} s")


def _path() -> str:
    # gunicorn from this interpreter's environment, whatever PATH says.
    return f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


if __name__ == "__main__":
    main()
