"""Drain benchmark: events/s of one worker dyno (`crmsync worker`, the Procfile's `worker:` line, with
WORKER_CONCURRENCY workers over WORKER_PROCESSES processes) against a plain loop with the same number
of requests in flight (a thread pool, gql, kept-alive sessions, as the Customer.io sync tool does),
both against the sandbox answering every call after `--api-latency-ms`, in the same run. Also the
dyno's memory: PSS of all its processes together (/proc/PID/smaps_rollup), per concurrency level.

    python -m bench.drain --api-latency-ms 50                      # the published run (~6 min)
    python -m bench.drain --api-latency-ms 50 --levels 1,8,16,25,32 # PSS and events/s per level

REDIS_URL's database is flushed; without it an embedded redis-server is started on loopback.
"""

from __future__ import annotations

import argparse
import gc
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
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
    platform_env,
    print_table,
    redis_cpu_seconds,
    start,
    stop,
    wait_ready,
)
from bench.workload import mixed_events, purchases
from crmsync.core.events import Event
from crmsync.core.settings import Settings
from jobs.documents import DOCUMENTS
from webhooks.intake import Intake

__all__ = ["enqueue_backlog", "reset_sandbox", "sandbox_env", "worker_env", "group_pss_mb"]

# A queue of its own: a stray worker elsewhere on this machine that happens to reach the same Redis
# port (embedded servers pick free ports) must not take the benchmark's jobs.
QUEUE = f"bench_{secrets.token_hex(4)}"
# Heroku's standard dyno.
DYNO_MB = 512


@dataclass
class Drain:
    """One drain of a backlog."""

    label: str
    events: int
    seconds: float
    mutations: int
    failed: int = 0
    processes: int = 0
    pss_mb: float = 0.0
    client_cpu_ms: float = 0.0
    sandbox_cpu_ms: float = 0.0
    redis_cpu_ms: float = 0.0
    redis_commands: float = 0.0

    @property
    def per_second(self) -> float:
        return self.events / self.seconds


@dataclass
class Sandbox:
    port: int
    pid: int
    latency_s: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--api-latency-ms", type=int, default=50, help="added to every sandbox answer")
    parser.add_argument("--in-flight", type=int, default=25, help="the baseline's requests in flight")
    parser.add_argument("--concurrency", type=int, default=25, help="the dyno's WORKER_CONCURRENCY")
    parser.add_argument(
        "--levels", default="", help="also drain at these WORKER_CONCURRENCY levels (e.g. 1,8,16,32), "
        "60 events per process each, for events/s and PSS per level"
    )  # fmt: skip
    parser.add_argument(
        "--one-process", action="store_true", help="also drain the same backlog with WORKER_PROCESSES=1 "
        "(every worker a thread of one process), to show what the dyno's processes buy"
    )  # fmt: skip
    parser.add_argument(
        "--processes", default="", help="also drain the same backlog with WORKER_PROCESSES set to each of "
        "these (e.g. 3,4): processes of fewer threads each"
    )  # fmt: skip
    parser.add_argument(
        "--rate-limit", type=float, default=0, help="also drain with CUSTOMERS_/PERSONAL_DATA_API_RATE_LIMIT "
        "set to this (requests/s), from 2 dynos, and report the most requests the sandbox saw in a second"
    )  # fmt: skip
    options = parser.parse_args()
    levels = [int(level) for level in options.levels.split(",") if level]
    runs: list[Drain] = []
    with bench_redis() as redis_url:
        port = free_port()
        # Every GraphQL call answers after the latency (the sandbox's option; kept across its resets).
        latency = ["--api-latency-ms", f"{options.api_latency_ms:.0f}"]
        process = start(["crmsync", "sandbox", "--port", str(port), *latency], sandbox_env())
        try:
            wait_ready(f"http://127.0.0.1:{port}/healthz", process)
            sandbox = Sandbox(port, process.pid, options.api_latency_ms / 1000)
            runs.append(_plain_loop(sandbox, options.events, options.customers, options.in_flight))
            per_event = _backlog(redis_url, sandbox, options.events, options.customers)
            runs.append(_dyno(redis_url, sandbox, options.events, options.concurrency))
            for count in [1] * options.one_process + [int(n) for n in options.processes.split(",") if n]:
                _backlog(redis_url, sandbox, options.events, options.customers)
                runs.append(_dyno(redis_url, sandbox, options.events, options.concurrency, processes=count))
            for level in levels:
                events = max(200, 60 * level)
                _backlog(redis_url, sandbox, events, min(options.customers, events))
                runs.append(_dyno(redis_url, sandbox, events, level))
            limited = _rate_limited(redis_url, sandbox, options) if options.rate_limit else None
        finally:
            stop(process)
    _report(runs, per_event, options)
    if limited:
        _report_rate_limit(limited, options.rate_limit)


def sandbox_env() -> dict[str, str]:
    return {"SANDBOX_CUSTOMERS_TOKEN": CUSTOMERS_TOKEN, "SANDBOX_PERSONAL_DATA_TOKEN": PERSONAL_DATA_TOKEN}


def worker_env(redis_url: str, port: int) -> dict[str, str]:
    """The worker's environment, as Heroku (or `crmsync dev`) would set it."""
    base = f"http://127.0.0.1:{port}"
    return {
        "REDIS_URL": redis_url,
        "QUEUE_NAME": QUEUE,
        **platform_env(f"{base}/customers/graphql", f"{base}/personal-data/graphql"),
    }


def reset_sandbox(port: int, customers: int, latency_s: float = 0.0) -> None:
    """Forget every customer, seed one purchase per customer (for the erasures), set the latency."""
    headers = {"Authorization": f"Bearer {CUSTOMERS_TOKEN}"}
    base = f"http://127.0.0.1:{port}/admin"
    requests.post(f"{base}/reset", headers=headers, timeout=10).raise_for_status()
    if latency_s:
        latency = {"api_latency_ms": round(latency_s * 1000)}
        requests.put(f"{base}/latency", json=latency, headers=headers, timeout=10).raise_for_status()
    requests.post(
        f"{base}/purchases", json=purchases(customers), headers=headers, timeout=30
    ).raise_for_status()


def _mutations(port: int) -> int:
    """Mutations the sandbox ran since its reset: the same count means the same work was done."""
    headers = {"Authorization": f"Bearer {CUSTOMERS_TOKEN}"}
    stats = requests.get(f"http://127.0.0.1:{port}/admin/stats", headers=headers, timeout=10).json()
    return sum(int(count) for count in stats["mutations"].values())


def enqueue_backlog(redis_url: str, port: int, events: int, customers: int, latency_s: float = 0.0) -> int:
    """Queue the mixed backlog through the Intake (what the web process does per request); return the
    Redis bytes the backlog uses."""
    flush(redis_url)
    reset_sandbox(port, customers, latency_s)
    settings = Settings.from_env({"REDIS_URL": redis_url, "QUEUE_NAME": QUEUE}, role="cli")
    redis = Redis.from_url(redis_url)
    before = int(redis.info("memory")["used_memory"])
    intake = Intake(redis, settings)
    for webhook_id, event in mixed_events(events, customers):
        intake.accept(Event(webhook_id=webhook_id, **event))
    used = int(redis.info("memory")["used_memory"]) - before
    redis.close()
    return used


def _backlog(redis_url: str, sandbox: Sandbox, events: int, customers: int) -> float:
    used = enqueue_backlog(redis_url, sandbox.port, events, customers, sandbox.latency_s)
    return used / events


def group_pss_mb(group: int) -> tuple[float, int]:
    """PSS of every process in a process group (a dyno's processes), in MB, and how many there are."""
    total_kb, count = 0, 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) != group:
                continue
            rollup = (entry / "smaps_rollup").read_text()
        except OSError:
            continue  # it ended meanwhile
        total_kb += next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
        count += 1
    return total_kb / 1024, count


def _group_cpu(group: int, seen: dict[int, float]) -> None:
    """Record the CPU seconds so far of each process of `group` (processes that end keep their last)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == group:
                    seen[int(entry.name)] = cpu_seconds(int(entry.name))
            except OSError:
                continue


def _dyno(redis_url: str, sandbox: Sandbox, events: int, concurrency: int, processes: int = 0) -> Drain:
    """`crmsync worker --burst` with WORKER_CONCURRENCY=`concurrency` (and WORKER_PROCESSES=`processes`
    if given): timed from the first job taken until the finished and failed registries hold every job
    (start-up is excluded)."""
    redis = Redis.from_url(redis_url)
    finished = FinishedJobRegistry(QUEUE, connection=redis)
    failed = FailedJobRegistry(QUEUE, connection=redis)
    queue_key = f"rq:queue:{QUEUE}"
    if redis.llen(queue_key) != events:
        raise RuntimeError(f"expected {events} queued jobs, found {redis.llen(queue_key)}")
    env = {**worker_env(redis_url, sandbox.port), "WORKER_CONCURRENCY": str(concurrency)}
    if processes:
        env["WORKER_PROCESSES"] = str(processes)
    label = f"worker dyno, WORKER_CONCURRENCY={concurrency}"
    label += f", WORKER_PROCESSES={processes}" if processes else ""
    dyno = start(["crmsync", "worker", "--burst"], env)
    cpu: dict[int, float] = {}
    pss = peak_processes = 0.0
    try:
        while redis.llen(queue_key) >= events and dyno.poll() is None:
            time.sleep(0.002)
        _group_cpu(dyno.pid, cpu)
        started_cpu = sum(cpu.values())
        commands, redis_cpu = _commands(redis), redis_cpu_seconds(redis_url)
        sandbox_cpu = cpu_seconds(sandbox.pid)
        first = time.perf_counter()
        while finished.count + failed.count < events and dyno.poll() is None:
            group_pss, count = group_pss_mb(dyno.pid)
            if group_pss > pss:
                pss, peak_processes = group_pss, count
            _group_cpu(dyno.pid, cpu)
            time.sleep(0.1)
        done = time.perf_counter()
        sandbox_cpu = cpu_seconds(sandbox.pid) - sandbox_cpu
        commands, redis_cpu = _commands(redis) - commands, redis_cpu_seconds(redis_url) - redis_cpu
    finally:
        stop(dyno)
    drained = finished.count + failed.count
    result = Drain(label, drained, done - first,
                   _mutations(sandbox.port), failed.count, int(peak_processes), pss,
                   (sum(cpu.values()) - started_cpu) / drained * 1000, sandbox_cpu / drained * 1000,
                   redis_cpu / drained * 1000, commands / drained)  # fmt: skip
    redis.close()
    return result


def _rate_limited(redis_url: str, sandbox: Sandbox, options: argparse.Namespace) -> dict[str, Any]:
    """Two dynos drain a backlog with both APIs rate-limited; the sandbox's request counts per API."""
    events = max(200, int(options.rate_limit * 10))  # ~18 customers-API calls per unit of the limit: ~20 s
    # Ten events per customer, so that each goes through its whole life, the erasure included.
    _backlog(redis_url, sandbox, events, max(1, events // 10))
    limit = f"{options.rate_limit:g}"
    env = {**worker_env(redis_url, sandbox.port), "WORKER_CONCURRENCY": str(options.concurrency),
           "CUSTOMERS_API_RATE_LIMIT": limit, "PERSONAL_DATA_API_RATE_LIMIT": limit}  # fmt: skip
    headers = {"Authorization": f"Bearer {CUSTOMERS_TOKEN}"}
    rates = f"http://127.0.0.1:{sandbox.port}/admin/rates"
    requests.delete(rates, headers=headers, timeout=10).raise_for_status()
    dynos = [start(["crmsync", "worker", "--burst"], env) for _ in range(2)]
    for dyno in dynos:
        dyno.wait(timeout=3600)
    received = requests.get(rates, headers=headers, timeout=10).json()
    return {"events": events, **{api: received[api] for api in ("customers", "personal-data")}}


def _report_rate_limit(limited: dict[str, Any], limit: float) -> None:
    print_table(
        f"Rate limit: {limit:g} requests/s per API, 2 worker dynos, {limited['events']} events",
        ["API", "requests", "most in a wall-clock second", "most in any sliding second", "limit", "met"],
        [[api, limited[api]["total"], limited[api]["max_per_second"], limited[api]["max_in_sliding_second"],
          f"{limit:g}", _met(limited[api]["max_in_sliding_second"] <= limit)]
         for api in ("customers", "personal-data")],
    )  # fmt: skip


def _commands(redis: Redis) -> int:
    return int(redis.info("stats")["total_commands_processed"])


def _plain_loop(sandbox: Sandbox, events: int, customers: int, in_flight: int) -> Drain:
    """The same GraphQL calls as the workers make, from `in_flight` threads on kept-alive gql sessions;
    each thread takes whole customers, so per-customer order holds as in the workers."""
    reset_sandbox(sandbox.port, customers, sandbox.latency_s)
    backlog = mixed_events(events, customers)
    shares = [[pair for pair in backlog if int(pair[1]["data"]["external_id"][-5:]) % in_flight == index]
              for index in range(in_flight)]  # fmt: skip
    gc.collect()
    sandbox_cpu = cpu_seconds(sandbox.pid)
    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(in_flight) as threads:
        list(threads.map(lambda share: apply_all(sandbox.port, share), shares))
    took, cpu = time.perf_counter() - started, time.process_time() - cpu
    sandbox_cpu = cpu_seconds(sandbox.pid) - sandbox_cpu
    return Drain(f"plain gql loop, {in_flight} requests in flight", events, took, _mutations(sandbox.port),
                 client_cpu_ms=cpu / events * 1000, sandbox_cpu_ms=sandbox_cpu / events * 1000)  # fmt: skip


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

    appliers: dict[str, Callable[[dict[str, Any]], None]] = {
        "customer.created": upsert, "customer.updated": upsert,
        "customer.deleted": delete, "customer.erasure_requested": erase,
    }  # fmt: skip
    for _, event in backlog:
        appliers[event["type"]](event["data"])


def _session(url: str, token: str) -> Any:
    transport = RequestsHTTPTransport(url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10,
                                      retries=0)  # fmt: skip
    return Client(transport=transport).connect_sync()


def _report(runs: list[Drain], per_event: float, options: argparse.Namespace) -> None:
    print(f"\nsandbox latency {options.api_latency_ms:g} ms per call; {options.events} events over "
          f"{options.customers} customers; Redis per queued event {per_event:.0f} B")  # fmt: skip
    print_table(
        "Drain runs",
        ["run", "events", "seconds", "events/s", "sandbox mutations", "failed", "processes", "PSS MB",
         "client CPU ms/event", "sandbox CPU ms/event", "Redis CPU ms/event", "Redis commands/event"],
        [[run.label, run.events, f"{run.seconds:.1f}", f"{run.per_second:.1f}", run.mutations, run.failed,
          run.processes or "", f"{run.pss_mb:.0f}" if run.pss_mb else "", f"{run.client_cpu_ms:.2f}",
          f"{run.sandbox_cpu_ms:.2f}", f"{run.redis_cpu_ms:.2f}" if run.redis_cpu_ms else "",
          f"{run.redis_commands:.1f}" if run.redis_commands else ""]
         for run in runs],
    )  # fmt: skip
    loop, dyno = runs[0], runs[1]
    ratio = dyno.per_second / loop.per_second
    print_table(
        "Drain targets (same-run ratios)",
        ["target", "measured", "baseline", "ratio", "target", "met"],
        [
            [f"one dyno (WORKER_CONCURRENCY={options.concurrency}) vs {options.in_flight} in flight",
             f"{dyno.per_second:.1f}/s", f"{loop.per_second:.1f}/s", f"{ratio:.2f}", ">= 0.80",
             _met(ratio >= 0.80)],
            ["the dyno's PSS (all its processes, peak)", f"{dyno.pss_mb:.0f} MB", "", "", f"<= {DYNO_MB} MB",
             _met(dyno.pss_mb <= DYNO_MB)],
            ["Redis per queued event", f"{per_event:.0f} B", "", "", "<= 1536 B", _met(per_event <= 1536)],
        ],
    )  # fmt: skip


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


if __name__ == "__main__":
    main()
