"""A Python load generator, for machines without `wrk`: several processes, each one connection at a
time over http.client (kept alive when the server allows), cycling through pre-signed deliveries.

It reports the same figures as bench/signed_requests.lua. Each process spends far less CPU per request
than a gunicorn worker does, but check the reported generator CPU share: wrk is the better yardstick.
"""

from __future__ import annotations

import http.client
import multiprocessing
import time
from dataclasses import dataclass, field

from bench.workload import line_request

__all__ = ["LoadResult", "run_load", "prepared_request"]


@dataclass
class LoadResult:
    """What one load run measured (latencies in microseconds)."""

    requests: int = 0
    duration_s: float = 0.0
    latencies_us: list[int] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    socket_errors: int = 0

    def percentile(self, share: float) -> int:
        ordered = sorted(self.latencies_us)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0


def prepared_request(line: str) -> tuple[str, dict[str, str], bytes]:
    """The path, headers and body of one line of a requests file: a batched CRM delivery (path TAB
    headers TAB body, bench/batch_requests.lua's format) or a signed single event (bench/workload.py)."""
    if line.startswith("/"):
        path, header_text, text = line.split("\t", 2)
        headers = dict(pair.split(": ", 1) for pair in header_text.split("\x1f") if pair)
        return path, headers, text.encode()
    headers, body = line_request(line)
    return "/webhooks/crm", headers, body


def _connection_loop(port: int, lines: list[str], seconds: float) -> LoadResult:
    prepared = [prepared_request(line) for line in lines]
    result = LoadResult()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    started = time.perf_counter()
    deadline = started + seconds
    index = 0
    while (now := time.perf_counter()) < deadline:
        path, headers, body = prepared[index % len(prepared)]
        index += 1
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            result.socket_errors += 1
            connection.close()
            continue
        result.latencies_us.append(int((time.perf_counter() - now) * 1e6))
        result.statuses[response.status] = result.statuses.get(response.status, 0) + 1
        if response.getheader("Connection", "").lower() == "close":
            connection.close()  # gunicorn's sync workers close after each answer; reconnect next time.
    result.duration_s = time.perf_counter() - started
    result.requests = len(result.latencies_us)
    return result


def run_load(port: int, lines: list[str], connections: int, seconds: float) -> LoadResult:
    """Drive `connections` concurrent clients for `seconds`; each takes every n-th pre-signed line."""
    slices = [(port, lines[offset::connections], seconds) for offset in range(connections)]
    with multiprocessing.Pool(connections) as pool:
        parts = pool.starmap(_connection_loop, slices)
    total = LoadResult(duration_s=max(part.duration_s for part in parts))
    for part in parts:
        total.requests += part.requests
        total.latencies_us += part.latencies_us
        total.socket_errors += part.socket_errors
        for status, count in part.statuses.items():
            total.statuses[status] = total.statuses.get(status, 0) + count
    return total
