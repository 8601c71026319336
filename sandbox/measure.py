"""Measure what the sandbox promises a benchmark: `python -m sandbox.measure`.

1. With `api_latency_ms`, N concurrent calls finish in about one latency, not N of them.
2. A bulk seed of 100,000 customers, and a full listing of them in pages of 100 sorted by creation.
Prints one line per figure; timings are for reading, not for asserting.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from sandbox.config import SandboxConfig
from sandbox.server import start_in_thread

TOKEN = "measure-token"
LIST = """query($after: String) {
  customers(first: 100, after: $after, isSystem: false, sortBy: [{field: CREATED_AT, direction: ASC}]) {
    nodes { id externalId } pageInfo { hasNextPage endCursor }
  }
}"""


def main(concurrency: int = 25, latency_ms: int = 50, customers: int = 100_000) -> None:
    """Start a sandbox in this process and print the figures."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # One access-log line per call otherwise.
    sandbox = start_in_thread(SandboxConfig(TOKEN, "unused-token", api_latency_ms=latency_ms))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    query = {"query": "{ customers(first: 1) { totalCount } }"}

    def call(session: requests.Session) -> requests.Response:
        return session.post(sandbox.customers_url, json=query, headers=headers)

    try:
        with ThreadPoolExecutor(concurrency) as pool:
            sessions = [requests.Session() for _ in range(concurrency)]
            list(pool.map(call, sessions))  # Opens the kept-alive connections first.
            started = time.perf_counter()
            answers = list(pool.map(call, sessions))
            took = time.perf_counter() - started
        assert all(a.status_code == 200 for a in answers)
        print(f"{concurrency} concurrent calls at {latency_ms} ms latency: {took * 1000:.0f} ms in total")

        requests.put(f"{sandbox.base_url}/admin/latency", json={"api_latency_ms": 0}, headers=headers)
        started = time.perf_counter()
        seeded = requests.post(
            f"{sandbox.base_url}/admin/customers", json={"generate": {"count": customers}}, headers=headers
        )
        took = time.perf_counter() - started
        print(f"seed {customers} customers: {took * 1000:.0f} ms (HTTP {seeded.status_code})")
        session, after, pages, seen = requests.Session(), None, 0, 0
        started = time.perf_counter()
        while True:
            body = session.post(sandbox.customers_url, json={"query": LIST, "variables": {"after": after}},
                                headers=headers).json()["data"]["customers"]  # fmt: skip
            pages, seen = pages + 1, seen + len(body["nodes"])
            if not body["pageInfo"]["hasNextPage"]:
                break
            after = body["pageInfo"]["endCursor"]
        took = time.perf_counter() - started
        print(f"list {seen} customers in {pages} pages: {took:.2f} s ({took / pages * 1000:.1f} ms a page)")
    finally:
        sandbox.stop()


if __name__ == "__main__":
    main()
