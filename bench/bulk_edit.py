"""Bulk edit at a rate-limited platform: platform requests per CRM change, counted by the sandbox.

    python -m bench.bulk_edit                    # the published run (~4 min with its baseline)
    python -m bench.bulk_edit --no-baseline      # crmsync's defaults only (~1 min)

The sandbox answers every call after 50 ms; one worker dyno (`crmsync worker`, default settings:
no WORKER_CONCURRENCY) with CUSTOMERS_API_RATE_LIMIT=50; the web process under gunicorn, HubSpot's
signature v3, `industry` mapped to labels. HubSpot creates 1,000 companies (a `company.creation` and
a `name` propertyChange each, in batches of 100), then a bulk edit changes `name`, `description` and
`industry` of all of them, one property after the other in batches of 100. The platform requests are
the sandbox's own count (its `/admin/rates`, every request its customers API received); convergence
is read from the sandbox's store in this process (every company holds all three new values), timed
from the bulk edit's first request. The same run is repeated with the id cache and coalescing off
(ID_CACHE=off COALESCE_EVENTS=off): the baseline, as every release before them behaved.

REDIS_URL's database is flushed; without it an embedded redis-server is started on loopback.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from redis import Redis
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from bench.stack import (
    CUSTOMERS_TOKEN,
    PERSONAL_DATA_TOKEN,
    bench_redis,
    flush,
    free_port,
    platform_env,
    print_table,
    start,
    wait_ready,
)
from bench.stack import stop as stop_process
from crmsync.cli.sender import hubspot_request
from sandbox.config import SandboxConfig
from sandbox.server import RunningSandbox, start_in_thread
from sandbox.state import state_of

HUBSPOT_SECRET = "bench-hubspot-secret-0123456789"
BATCH = 100
# `industry` feeds the labels (one label per ";"-separated value), as a HubSpot user would map it.
MAPPINGS = """[hubspot.fields]
name = "name"
description = "description"
labels = "industry"
"""
BASELINE = {"ID_CACHE": "off", "COALESCE_EVENTS": "off"}
# What `industry` "AEROSPACE;DEFENSE" becomes on the platform (labels are lower-cased).
LABELS = ["aerospace", "defense"]
ADMIN = {"Authorization": f"Bearer {CUSTOMERS_TOKEN}"}


@dataclass
class Stack:
    """A sandbox in this process, Redis, the web process and one worker dyno."""

    sandbox: RunningSandbox
    redis: Redis
    queue: str
    hubspot_url: str

    def platform_requests(self) -> int:
        """Requests the sandbox's customers API received since the last call (then counts from 0)."""
        total = int(requests.get(f"{self.sandbox.base_url}/admin/rates", headers=ADMIN, timeout=30)
                    .json()["customers"]["total"])  # fmt: skip
        requests.delete(f"{self.sandbox.base_url}/admin/rates", headers=ADMIN, timeout=30).raise_for_status()
        return total

    def companies(self) -> dict[str, dict[str, Any]]:
        """The sandbox's customers by external id, read from its store (no request counted)."""
        found = state_of(self.sandbox.app).store.search_customers(is_system=False)
        return {node["externalId"]: node for node in found}

    def drained(self) -> bool:
        """No job queued, running or waiting for a retry."""
        return not (
            self.redis.llen(f"rq:queue:{self.queue}")
            or StartedJobRegistry(self.queue, connection=self.redis).count
            or ScheduledJobRegistry(self.queue, connection=self.redis).count
        )

    def failed(self) -> int:
        return FailedJobRegistry(self.queue, connection=self.redis).count

    def send(self, events: list[dict[str, Any]]) -> None:
        """POST one HubSpot batch, signed v3, as HubSpot sends it."""
        headers, body = hubspot_request(self.hubspot_url, HUBSPOT_SECRET, events)
        response = requests.post(self.hubspot_url, data=body, headers=headers, timeout=30)
        assert response.ok, response.status_code


@contextmanager
def running_stack(worker_env: dict[str, str], latency_ms: int) -> Iterator[Stack]:
    """Start everything; the worker dyno gets `worker_env` on top of the deployment's settings."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per call otherwise
    sandbox = start_in_thread(SandboxConfig(CUSTOMERS_TOKEN, PERSONAL_DATA_TOKEN, api_latency_ms=latency_ms))
    queue = f"bench_{secrets.token_hex(4)}"
    with bench_redis() as redis_url, tempfile.NamedTemporaryFile("w", suffix=".toml") as mappings:
        mappings.write(MAPPINGS)
        mappings.flush()
        flush(redis_url)
        port = free_port()
        env = {
            "REDIS_URL": redis_url,
            "QUEUE_NAME": queue,
            "PORT": str(port),
            "HUBSPOT_CLIENT_SECRET": HUBSPOT_SECRET,
            "CRMSYNC_MAPPINGS": mappings.name,
            **platform_env(sandbox.customers_url, sandbox.personal_data_url),
            "LOG_LEVEL": "WARNING",
        }
        # The bench's own environment must not choose the dyno's concurrency for it.
        os.environ.pop("WORKER_CONCURRENCY", None)
        web = start(
            ["gunicorn", "--config", "python:crmsync.server.gunicorn_conf", "crmsync.web:create_app()"], env
        )
        dyno = start(["crmsync", "worker"], {**env, **worker_env})
        redis = Redis.from_url(redis_url)
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", web)
            yield Stack(sandbox, redis, queue, f"http://127.0.0.1:{port}/webhooks/hubspot")
        finally:
            stop_process(dyno)
            stop_process(web)
            redis.close()
            sandbox.stop()


def hubspot_event(
    event_id: int, company: int, occurred_ms: int, subscription: str, **extra: Any
) -> dict[str, Any]:
    """One HubSpot webhook event, shaped as HubSpot's docs show ("Webhooks API", example payload)."""
    return {"eventId": event_id, "subscriptionId": 1, "portalId": 1, "appId": 1, "occurredAt": occurred_ms,
            "subscriptionType": subscription, "attemptNumber": 0, "objectId": company, "changeSource": "CRM",
            **extra}  # fmt: skip


def in_batches(events: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for first in range(0, len(events), BATCH):
        yield events[first : first + BATCH]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `condition` every 0.1 s; the monotonic time it first held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic()


@dataclass
class BulkEdit:
    label: str
    companies: int
    creation_requests: int
    creation_seconds: float
    edit_requests: int
    edit_seconds: float
    failed: int


def run(label: str, worker_env: dict[str, str], companies: int, latency_ms: int, rate_limit: int) -> BulkEdit:
    limits = {"CUSTOMERS_API_RATE_LIMIT": str(rate_limit), **worker_env}
    with running_stack(limits, latency_ms) as stack:
        ids = range(1, companies + 1)
        created_ms = int(time.time() * 1000) - 60_000
        creation = []
        for company in ids:
            creation.append(
                hubspot_event(2 * company, company, created_ms, "company.creation", changeFlag="NEW")
            )
            named = {"propertyName": "name", "propertyValue": f"Company {company}"}
            creation.append(
                hubspot_event(2 * company + 1, company, created_ms + 1, "company.propertyChange", **named)
            )
        started = time.monotonic()
        for batch in in_batches(creation):
            stack.send(batch)
        wait_for(lambda: len(stack.companies()) == companies and stack.drained(), 600, "the creation")
        creation_seconds = time.monotonic() - started
        creation_requests = stack.platform_requests()

        edited_ms = created_ms + 30_000
        edit = {
            "name": lambda company: f"Renamed {company}",
            "description": lambda company: f"Bulk-edited {company}",
            "industry": lambda company: "AEROSPACE;DEFENSE",
        }
        event_id = 10 * companies
        started = time.monotonic()
        for offset, (prop, value) in enumerate(edit.items()):
            events = []
            for company in ids:
                event_id += 1
                events.append(hubspot_event(event_id, company, edited_ms + offset, "company.propertyChange",
                                            propertyName=prop, propertyValue=value(company)))  # fmt: skip
            for batch in in_batches(events):
                stack.send(batch)

        def converged() -> bool:
            found = stack.companies()
            return len(found) == companies and all(
                node["name"] == f"Renamed {company}" and node["description"] == f"Bulk-edited {company}"
                and node["labels"] == LABELS
                for company in ids
                for node in [found.get(str(company), {})]
            )  # fmt: skip

        converged_at = wait_for(converged, 900, "the bulk edit to converge")
        edit_seconds = converged_at - started
        wait_for(stack.drained, 300, "the queue to drain")
        return BulkEdit(label, companies, creation_requests, creation_seconds, stack.platform_requests(),
                        edit_seconds, stack.failed())  # fmt: skip


def report(runs: list[BulkEdit], rate_limit: int, latency_ms: int) -> None:
    rows = [
        (r.label, r.companies, r.creation_requests, f"{r.creation_requests / r.companies:.2f}",
         f"{r.creation_seconds:.1f}", r.edit_requests, f"{r.edit_requests / r.companies:.2f}",
         f"{r.edit_seconds:.1f}", f"{r.edit_seconds / (r.companies / rate_limit):.2f}", r.failed)
        for r in runs
    ]  # fmt: skip
    print_table(
        f"Bulk edit: HubSpot, {latency_ms} ms API, CUSTOMERS_API_RATE_LIMIT={rate_limit}, one worker dyno "
        f"(default settings), platform requests counted by the sandbox",
        ("run", "companies", "creation requests", "per company", "creation s", "edit requests",
         "per company", "edit converged s", "x floor", "failed"),
        rows,
    )  # fmt: skip
    ours = runs[0]
    floor = ours.companies / rate_limit
    targets = [
        ("requests per company, creation", f"{ours.creation_requests / ours.companies:.2f}", "<= 1.1",
         ours.creation_requests <= 1.1 * ours.companies),
        ("requests per company, bulk edit", f"{ours.edit_requests / ours.companies:.2f}", "<= 1.3",
         ours.edit_requests <= 1.3 * ours.companies),
        ("bulk edit converged / floor", f"{ours.edit_seconds:.1f} s / {floor:.0f} s = "
         f"{ours.edit_seconds / floor:.2f}", "<= 1.5", ours.edit_seconds <= 1.5 * floor),
    ]  # fmt: skip
    met = [(name, value, target, "yes" if ok else "NO") for name, value, target, ok in targets]
    print_table("Targets (crmsync's defaults)", ("figure", "value", "target", "met"), met)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--companies", type=int, default=1000)
    parser.add_argument("--api-latency-ms", type=int, default=50)
    parser.add_argument("--rate-limit", type=int, default=50, help="CUSTOMERS_API_RATE_LIMIT (requests/s)")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the run with cache and coalescing off"
    )
    options = parser.parse_args()
    modes: list[tuple[str, dict[str, str]]] = [("crmsync (id cache, coalescing)", {})]
    if not options.no_baseline:
        modes.append(("baseline: ID_CACHE=off COALESCE_EVENTS=off", BASELINE))
    runs = [
        run(label, env, options.companies, options.api_latency_ms, options.rate_limit) for label, env in modes
    ]
    report(runs, options.rate_limit, options.api_latency_ms)


if __name__ == "__main__":
    main()
