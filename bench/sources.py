"""CRM batches: the latency of one request carrying 100 HubSpot events or a 100-notification
Salesforce message, and the Redis round trips it takes, through gunicorn (Procfile settings).

    python -m bench.sources [--requests 50]

Round trips are counted with MONITOR: the commands the web processes send (those a Lua script runs
inside its one round trip are not counted). REDIS_URL's database is flushed; without it an embedded
redis-server is started on loopback.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable

import requests
from redis import Redis

from bench.stack import ROOT, bench_redis, flush, free_port, print_table, start, stop, wait_ready
from crmsync.cli.sender import hubspot_request, salesforce_message

HUBSPOT_SECRET = "bench-hubspot-secret-0123456789"
ORGANIZATION = "00D000000000001AAA"
TOKEN = "bench-salesforce-token-0123456789"
BATCH = 100

Request = Callable[[int], requests.Response]


def hubspot_batch(base: str) -> Request:
    url = f"{base}/webhooks/hubspot"

    def send(run: int) -> requests.Response:
        now = int(time.time() * 1000)
        events = [
            {"eventId": run * BATCH + n, "subscriptionId": 1, "portalId": 1, "appId": 1, "occurredAt": now,
             "subscriptionType": "company.propertyChange", "attemptNumber": 0, "objectId": run * BATCH + n,
             "changeSource": "CRM", "propertyName": "name", "propertyValue": f"Company {run}-{n}"}
            for n in range(BATCH)
        ]  # fmt: skip
        headers, body = hubspot_request(url, HUBSPOT_SECRET, events)
        return requests.post(url, data=body, headers=headers, timeout=30)

    return send


def salesforce_batch(base: str) -> Request:
    url = f"{base}/webhooks/salesforce?token={TOKEN}"

    def send(run: int) -> requests.Response:
        modified = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        notifications = [
            (f"04l{run:07d}{n:08d}", "Account",
             {"Id": f"001{run:07d}{n:08d}", "LastModifiedDate": modified, "Name": f"Company {run}-{n}",
              "Description": "Cargo to orbit", "IsDeleted": "false"})
            for n in range(BATCH)
        ]  # fmt: skip
        body = salesforce_message(ORGANIZATION, notifications)
        return requests.post(url, data=body, headers={"content-type": "text/xml"}, timeout=30)

    return send


def round_trips(redis_url: str, send: Callable[[], requests.Response]) -> int:
    """The commands other clients send to Redis while `send` runs (MONITOR; Lua's own left out)."""
    client = Redis.from_url(redis_url)
    seen: list[str] = []
    watching = threading.Event()

    def watch() -> None:
        with client.monitor() as monitor:
            watching.set()
            for entry in monitor.listen():
                if "bench-end-of-watch" in entry["command"]:
                    seen.append(f"end:{entry['client_port']}")
                    return
                if entry["client_type"] != "lua":
                    seen.append(f"{entry['client_port']}:{entry['command']}")

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    watching.wait(10)
    assert send().ok
    client.echo("bench-end-of-watch")
    watcher.join(10)
    ours = seen[-1].split(":", 1)[1]
    return sum(1 for line in seen[:-1] if line.split(":", 1)[0] != ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    rows = []
    with bench_redis() as redis_url:
        flush(redis_url)
        port = free_port()
        env = {"REDIS_URL": redis_url, "PORT": str(port), "HUBSPOT_CLIENT_SECRET": HUBSPOT_SECRET,
               "SALESFORCE_ORGANIZATION_IDS": ORGANIZATION, "SALESFORCE_WEBHOOK_TOKEN": TOKEN,
               "LOG_LEVEL": "WARNING"}  # fmt: skip
        web = start(
            ["gunicorn", "--config", "python:crmsync.server.gunicorn_conf", "crmsync.web:create_app()"], env
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", web)
            base = f"http://127.0.0.1:{port}"
            for label, request in (("HubSpot, 100 events", hubspot_batch(base)),
                                   ("Salesforce, 100 notifications", salesforce_batch(base))):  # fmt: skip
                for warm in range(3):
                    assert request(10_000 + warm).ok
                trips = round_trips(redis_url, lambda: request(20_000))  # noqa: B023
                latencies = []
                for run in range(args.requests):
                    started = time.perf_counter()
                    assert request(run).ok
                    latencies.append((time.perf_counter() - started) * 1000)
                latencies.sort()
                p95 = latencies[int(0.95 * (len(latencies) - 1))]
                rows.append(
                    [label, args.requests, f"{statistics.median(latencies):.1f}", f"{p95:.1f}", trips]
                )
        finally:
            stop(web)
    print_table(f"CRM batches through gunicorn ({ROOT.name})", ["request", "requests", "p50 ms", "p95 ms",
                "Redis round trips / request"], rows)  # fmt: skip


if __name__ == "__main__":
    main()
