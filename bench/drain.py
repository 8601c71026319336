"""Drain benchmark: customer syncs/s for a backlog of mixed events through real `crmsync worker --burst`
processes (1, then 2) against the sandbox, and a plain gql loop doing the same GraphQL calls on a
kept-alive session against the same sandbox (once alone, once as 2 processes: the sandbox's own
ceiling), in the same run. Also the footprint: worker RSS and Redis memory per queued event.

    python -m bench.drain [--events 10000] [--customers 1000]

REDIS_URL's database is flushed; without it an embedded redis-server is started on loopback.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from gql import Client, GraphQLRequest
from gql.transport.requests import RequestsHTTPTransport
from redis import Redis
from rq.registry import FailedJobRegistry, FinishedJobRegistry

from bench.stack import (
    CUSTOMERS_TOKEN,
    PERSONAL_DATA_TOKEN,
    bench_redis,
    cpu_seconds,
    flush,
    free_port,
    print_table,
    rss_mb,
    start,
    stop,
    wait_ready,
)
from bench.workload import mixed_events, purchases
from crmsync.core.events import Event
from crmsync.core.settings import Settings
from jobs.documents import DOCUMENTS
from webhooks.intake import Intake

__all__ = ["enqueue_backlog", "reset_sandbox", "sandbox_env", "worker_env"]

# A queue of its own: a stray worker elsewhere on this machine that happens to reach the same Redis
# port (embedded servers pick free ports) must not take the benchmark's jobs.
QUEUE = f"bench_{secrets.token_hex(4)}"
_SANDBOX_PID = [0]


@dataclass
class Drain:
    """One drain of the backlog."""

    label: str
    events: int
    seconds: float
    mutations: int
    rss_mb: float = 0.0
    failed: int = 0
    client_cpu_ms: float = 0.0
    sandbox_cpu_ms: float = 0.0
    redis_commands: float = 0.0

    @property
    def per_second(self) -> float:
        return self.events / self.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument(
        "--ceiling-events",
        type=int,
        default=3_000,
        help="events for the 2-process plain loop (a rate, so a shorter run will do)",
    )
    parser.add_argument(
        "--api-latency-ms",
        type=float,
        default=0,
        help="added to every sandbox response, like a remote API's network and server time (default 0)",
    )
    options = parser.parse_args()
    _LATENCY_SECONDS[0] = options.api_latency_ms / 1000
    events, customers = options.events, options.customers
    runs: list[Drain] = []
    with bench_redis() as redis_url:
        port = free_port()
        sandbox = start(["crmsync", "sandbox", "--port", str(port)], sandbox_env())
        try:
            wait_ready(f"http://127.0.0.1:{port}/healthz", sandbox)
            _SANDBOX_PID[0] = sandbox.pid
            runs.append(_plain_loop(port, events, customers, processes=1))
            per_event = _backlog_then(redis_url, port, events, customers)
            runs.append(_workers(redis_url, port, events, customers, count=1))
            runs.append(_plain_loop(port, options.ceiling_events, customers, processes=2))
            _backlog_then(redis_url, port, events, customers)
            runs.append(_workers(redis_url, port, events, customers, count=2))
        finally:
            stop(sandbox)
    _report(runs, per_event)


_LATENCY_SECONDS = [0.0]


def sandbox_env() -> dict[str, str]:
    return {"SANDBOX_CUSTOMERS_TOKEN": CUSTOMERS_TOKEN, "SANDBOX_PERSONAL_DATA_TOKEN": PERSONAL_DATA_TOKEN}


def worker_env(redis_url: str, port: int) -> dict[str, str]:
    """The worker's environment, as Heroku (or `crmsync dev`) would set it."""
    base = f"http://127.0.0.1:{port}"
    return {
        "REDIS_URL": redis_url,
        "QUEUE_NAME": QUEUE,
        "CUSTOMERS_API_URL": f"{base}/customers/graphql",
        "CUSTOMERS_API_TOKEN": CUSTOMERS_TOKEN,
        "PERSONAL_DATA_API_URL": f"{base}/personal-data/graphql",
        "PERSONAL_DATA_API_TOKEN": PERSONAL_DATA_TOKEN,
    }


def reset_sandbox(port: int, customers: int) -> None:
    """Forget every customer and seed one purchase per customer, for the erasures."""
    headers = {"Authorization": f"Bearer {CUSTOMERS_TOKEN}"}
    base = f"http://127.0.0.1:{port}/admin"
    requests.post(f"{base}/reset", headers=headers, timeout=10).raise_for_status()
    if _LATENCY_SECONDS[0]:
        # The sandbox's "slow" fault on every request, well under the client timeout: plain latency.
        latency = {"slow_rate": 1.0, "slow_seconds": _LATENCY_SECONDS[0]}
        requests.put(f"{base}/faults", json=latency, headers=headers, timeout=10).raise_for_status()
    requests.post(
        f"{base}/purchases", json=purchases(customers), headers=headers, timeout=30
    ).raise_for_status()


def _mutations(port: int) -> int:
    """Mutations the sandbox ran since its reset: the same count means the same work was done."""
    headers = {"Authorization": f"Bearer {CUSTOMERS_TOKEN}"}
    stats = requests.get(f"http://127.0.0.1:{port}/admin/stats", headers=headers, timeout=10).json()
    return sum(int(count) for count in stats["mutations"].values())


def enqueue_backlog(redis_url: str, port: int, events: int, customers: int) -> tuple[float, int]:
    """Queue the mixed backlog through the Intake (what the web process does per request).
    Returns (seconds taken, Redis bytes used by the backlog)."""
    flush(redis_url)
    reset_sandbox(port, customers)
    settings = Settings.from_env({"REDIS_URL": redis_url, "QUEUE_NAME": QUEUE}, role="cli")
    redis = Redis.from_url(redis_url)
    before = int(redis.info("memory")["used_memory"])
    intake = Intake(redis, settings)
    started = time.perf_counter()
    for webhook_id, event in mixed_events(events, customers):
        intake.accept(Event(webhook_id=webhook_id, **event))
    took = time.perf_counter() - started
    used = int(redis.info("memory")["used_memory"]) - before
    redis.close()
    return took, used


def _backlog_then(redis_url: str, port: int, events: int, customers: int) -> float:
    took, used = enqueue_backlog(redis_url, port, events, customers)
    print(f"queued {events} events in {took:.1f} s ({events / took:.0f}/s in one process); "
          f"Redis: {used / events:.0f} bytes per queued event")  # fmt: skip
    return used / events


def _workers(redis_url: str, port: int, events: int, customers: int, count: int) -> Drain:
    """Start `count` real `crmsync worker --burst` processes; time from the first job taken until the
    finished registry holds every job (process start-up is not counted; it is in the wall time)."""
    redis = Redis.from_url(redis_url)
    finished = FinishedJobRegistry(QUEUE, connection=redis)
    failed = FailedJobRegistry(QUEUE, connection=redis)
    queue_key = f"rq:queue:{QUEUE}"
    if redis.llen(queue_key) != events:
        raise RuntimeError(f"expected {events} queued jobs, found {redis.llen(queue_key)}")
    commands = _commands(redis)
    sandbox_cpu = cpu_seconds(_SANDBOX_PID[0])
    spawned = time.perf_counter()
    workers = [start(["crmsync", "worker", "--burst"], worker_env(redis_url, port)) for _ in range(count)]
    peak = worker_cpu = 0.0
    first = 0.0
    try:
        while redis.llen(queue_key) >= events and time.perf_counter() - spawned < 60:
            time.sleep(0.002)
        first = time.perf_counter()
        while finished.count + failed.count < events and any(w.poll() is None for w in workers):
            peak = max(peak, *(rss_mb(w.pid) for w in workers))
            worker_cpu = sum(cpu_seconds(w.pid) for w in workers)
            time.sleep(0.02)
        done = time.perf_counter()
        sandbox_cpu = cpu_seconds(_SANDBOX_PID[0]) - sandbox_cpu
        commands = _commands(redis) - commands
    finally:
        for worker in workers:
            worker.wait(timeout=120)
    wall = time.perf_counter() - spawned
    print(f"{count} worker(s): drained in {done - first:.1f} s ({wall:.1f} s with process start-up and exit)")
    result = Drain(f"crmsync worker x{count}", finished.count, done - first, _mutations(port), peak,
                   failed.count, worker_cpu / events * 1000, sandbox_cpu / events * 1000,
                   commands / events)  # fmt: skip
    redis.close()
    return result


def _commands(redis: Redis) -> int:
    return int(redis.info("stats")["total_commands_processed"])


def _plain_loop(port: int, events: int, customers: int, processes: int) -> Drain:
    """The same GraphQL calls as the workers make, from a plain loop on kept-alive gql sessions."""
    reset_sandbox(port, customers)
    backlog = mixed_events(events, customers)
    # Each process takes whole customers, so per-customer order holds as in the single loop.
    shares = [[pair for pair in backlog if int(pair[1]["data"]["external_id"][-5:]) % processes == index]
              for index in range(processes)]  # fmt: skip
    gc.collect()
    sandbox_cpu = cpu_seconds(_SANDBOX_PID[0])
    started, cpu = time.perf_counter(), time.process_time()
    if processes == 1:
        apply_all(port, shares[0])
    else:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            pool.starmap(apply_all, [(port, share) for share in shares])
    took, cpu = time.perf_counter() - started, time.process_time() - cpu
    sandbox_cpu = cpu_seconds(_SANDBOX_PID[0]) - sandbox_cpu
    label = "plain gql loop" + ("" if processes == 1 else f" x{processes} processes")
    # A pool's children are not counted in process_time: the client CPU is shown for one process only.
    client = cpu / events * 1000 if processes == 1 else 0.0
    return Drain(
        label,
        events,
        took,
        _mutations(port),
        client_cpu_ms=client,
        sandbox_cpu_ms=sandbox_cpu / events * 1000,
    )


def apply_all(port: int, backlog: list[tuple[str, dict[str, Any]]]) -> None:
    """Apply each event with the minimum of GraphQL: lookup + create/update/delete, or the erasure."""
    base = f"http://127.0.0.1:{port}"
    customers = _session(f"{base}/customers/graphql", CUSTOMERS_TOKEN)
    personal = _session(f"{base}/personal-data/graphql", PERSONAL_DATA_TOKEN)

    def run(name: str, variables: dict[str, Any], on: Any = customers) -> dict[str, Any]:
        return dict(on.execute(GraphQLRequest(DOCUMENTS[name], variable_values=variables)))

    def find(external_id: str) -> str | None:
        nodes = run("find_customer", {"externalId": external_id})["customers"]["nodes"]
        return str(nodes[0]["id"]) if nodes else None

    appliers: dict[str, Callable[[dict[str, Any]], None]] = {}

    def upsert(data: dict[str, Any]) -> None:
        fields = {key: value for key, value in data.items() if key != "external_id"}
        if "labels" in fields:
            fields["labels"] = list(dict.fromkeys(label.lower() for label in fields["labels"]))
        customer_id = find(data["external_id"])
        if customer_id is None:
            fields.setdefault("description", "")
            run("create_customer", {"input": {"externalId": data["external_id"], **fields}})
        else:
            run("update_customer", {"input": {"id": customer_id, **fields}})

    def delete(data: dict[str, Any]) -> None:
        customer_id = find(data["external_id"])
        if customer_id is not None:
            run("delete_customer", {"input": {"id": customer_id}})

    def erase(data: dict[str, Any]) -> None:
        for purchase in data["purchase_ids"]:
            run("delete_personal_customer_data", {"purchaseId": purchase}, on=personal)

    appliers.update({"customer.created": upsert, "customer.updated": upsert,
                     "customer.deleted": delete, "customer.erasure_requested": erase})  # fmt: skip
    for _, event in backlog:
        appliers[event["type"]](event["data"])


def _session(url: str, token: str) -> Any:
    transport = RequestsHTTPTransport(url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10,
                                      retries=0)  # fmt: skip
    return Client(transport=transport).connect_sync()


def _report(runs: list[Drain], per_event: float) -> None:
    print_table(
        "Drain runs",
        ["run", "events", "seconds", "events/s", "sandbox mutations", "failed", "client CPU ms/event",
         "sandbox CPU ms/event", "Redis commands/event", "peak RSS MB"],
        [[run.label, run.events, f"{run.seconds:.1f}", f"{run.per_second:.0f}", run.mutations, run.failed,
          f"{run.client_cpu_ms:.2f}" if run.client_cpu_ms else "", f"{run.sandbox_cpu_ms:.2f}",
          f"{run.redis_commands:.1f}" if run.redis_commands else "",
          f"{run.rss_mb:.1f}" if run.rss_mb else ""]
         for run in runs],
    )  # fmt: skip
    loop, one, loop2, two = runs
    ratio_one = one.per_second / loop.per_second
    ratio_two = two.per_second / one.per_second
    ceiling = loop2.per_second / loop.per_second
    rss = max(one.rss_mb, two.rss_mb)
    print_table(
        "Drain targets (same-run ratios)",
        ["target", "measured", "baseline", "ratio", "target", "met"],
        [
            ["1 worker vs plain gql loop", f"{one.per_second:.0f}/s", f"{loop.per_second:.0f}/s",
             f"{ratio_one:.2f}", ">= 0.80", _met(ratio_one >= 0.80)],
            ["2 workers vs 1 worker", f"{two.per_second:.0f}/s", f"{one.per_second:.0f}/s",
             f"{ratio_two:.2f}", ">= 1.60", _met(ratio_two >= 1.60)],
            ["sandbox ceiling: 2 loops vs 1", f"{loop2.per_second:.0f}/s", f"{loop.per_second:.0f}/s",
             f"{ceiling:.2f}", "(limit for the line above)", ""],
            ["worker RSS (peak)", f"{rss:.1f} MB", "", "", "<= 100 MB", _met(rss <= 100)],
            ["Redis per queued event", f"{per_event:.0f} B", "", "", "<= 2048 B", _met(per_event <= 2048)],
        ],
    )  # fmt: skip


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


if __name__ == "__main__":
    main()
