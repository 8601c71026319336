"""Soak: many customers' event histories, delivered at least once and out of order, through the real
HTTP endpoint to several worker processes while the sandbox injects faults and a worker is killed.

It computes the state the CRM's events describe (each customer's history folded in timestamp order)
and compares it with what the sandbox holds at the end. Mismatches must be 0.

    python -m bench.soak --customers 1000 --events 5 --workers 2 --concurrency 25  # the published run
    python -m bench.soak --customers 20 --events 5 --workers 2 --concurrency 4     # as in the test suite

Customer histories are coherent, as a CRM would send them: a create first, then updates (any subset
of fields), deletes, and creates again after a delete. Erasure requests go to their own external ids
(people known only by their purchases), whose seeded purchases must all end anonymised: an erasure
on a customer with record events would make the expected record depend on arrival order (events at
or before an erasure are dropped by design), so the two are kept apart here.

Throughout the run the sandbox also deletes customers out of band and creates each again at once with
the same values under a new id (`POST /admin/customers/reissue`), so the workers' cached platform ids
(jobs/id_cache.py) go stale mid-run: every write must find its customer again. A plain delete would
leave no state the CRM's events describe to compare against.

Merges (`customer.merged`) go to groups of their own: half merge a record into an existing survivor
(Pipedrive, Salesforce), half merge two records into a new id (HubSpot's `newObjectId`), each with
updates of every record before and after the merge. The survivor must end as the kept record's own
events before the merge and every event after it describe it, whichever id they were sent for; the
merged-away records must be gone. The records' creates go first in the delivery order, far more than
the reordering window ahead of their merges, as a CRM's records exist long before they are merged (a
merge delivered before the records it merges were ever created is a documented limit).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from redis import Redis
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from bench.stack import (
    CUSTOMERS_TOKEN,
    PERSONAL_DATA_TOKEN,
    SECRET,
    WEBHOOK_SECRET,
    bench_redis,
    flush,
    free_port,
    platform_env,
    print_table,
    start,
    stop,
    wait_ready,
)
from crmsync.cli.sender import signed_request
from crmsync.core.events import normalize_labels
from sandbox.config import SandboxConfig
from sandbox.faults import FaultSettings
from sandbox.server import RunningSandbox, start_in_thread

ANONYMISED = "XXX"
FAULTS = FaultSettings(
    unavailable_rate=0.05,
    throttle_rate=0.03,
    retry_after=1,
    slow_rate=0.02,
    slow_seconds=1.5,
    lost_response_rate=0.03,
    seed=7,
)
WORKER_ENV = {
    "API_TIMEOUT_SECONDS": "1",  # below the sandbox's slow responses: they time out
    "JOB_TIMEOUT_SECONDS": "8",
    "IN_FLIGHT_HOLD_SECONDS": "3",  # past the sandbox's slowest late write (1.5 s)
    "WORKER_MAINTENANCE_INTERVAL": "2",
    "RETRY_SCHEDULE": "1,1,2,2,3,3,5,5,5,5,5,5",  # short, so the soak ends; same shape of retries
    "LOG_LEVEL": "WARNING",
}


@dataclass(frozen=True)
class Event:
    webhook_id: str
    body: dict[str, Any]

    @property
    def external_id(self) -> str:
        return str(self.body["data"]["external_id"])


def customer_history(rng: random.Random, customer: int, count: int, start: datetime) -> list[Event]:
    """A coherent history for one customer: create, then updates/deletes/re-creates."""
    events: list[Event] = []
    alive = False
    external_id = f"soak-{customer}"
    for index in range(count):
        at = (start + timedelta(seconds=index, microseconds=customer)).isoformat()
        name = f"Customer {customer} v{index}"
        if not alive:
            kind, data = (
                "created",
                {"name": name, "description": f"desc {index}", "labels": ["Soak", f"L{index}"]},
            )
            alive = True
        elif rng.random() < 0.2:
            kind, data, alive = "deleted", {}, False
        else:
            fields = {"name": name, "description": f"desc {index}", "labels": [f"L{index}", "soak"]}
            chosen = rng.sample(sorted(fields), rng.randint(1, 3))
            kind, data = "updated", {key: fields[key] for key in chosen}
        body = {"type": f"customer.{kind}", "timestamp": at, "data": {"external_id": external_id, **data}}
        events.append(Event(f"soak-{customer}-{index}", body))
    return events


def expected_state(history: list[Event]) -> dict[str, Any] | None:
    """The customer record the CRM's events describe, folded in timestamp order."""
    state: dict[str, Any] | None = None
    for event in sorted(history, key=lambda e: e.body["timestamp"]):
        kind, data = event.body["type"], event.body["data"]
        if kind == "customer.created":
            state = {
                "name": data["name"],
                "description": data.get("description", ""),
                "labels": normalize_labels(data.get("labels", [])),
            }
        elif kind == "customer.updated" and state is not None:
            state.update({key: data[key] for key in ("name", "description") if key in data})
            if "labels" in data:
                state["labels"] = normalize_labels(data["labels"])
        elif kind == "customer.deleted":
            state = None
    return state


def merge_group(
    rng: random.Random, group: int, count: int, start: datetime
) -> tuple[list[Event], dict[str, Any]]:
    """One merge and the updates around it; returns the events and the survivor's expected state."""
    into_new = group % 2 == 1
    first, second = f"merge-{group}-a", f"merge-{group}-b"
    survivor = f"merge-{group}-new" if into_new else first
    kept = first
    events: list[Event] = []

    def add(kind: str, external_id: str, second_at: int, data: dict[str, Any]) -> None:
        at = (start + timedelta(seconds=second_at, microseconds=group)).isoformat()
        body = {"type": f"customer.{kind}", "timestamp": at, "data": {"external_id": external_id, **data}}
        events.append(Event(f"merge-{group}-{len(events)}", body))

    state = {"name": f"Merge {group} a", "description": "first", "labels": normalize_labels(["Soak"])}
    add("created", first, 0, dict(state))
    add("created", second, 0, {"name": f"Merge {group} b", "description": "second", "labels": []})
    merged_at = count + 1
    for index in range(1, 2 * count + 2):
        if index == merged_at:
            add("merged", survivor, index, {"merged_ids": [first, second]})
            continue
        after = index > merged_at
        candidates = [first, second] + ([survivor] if after and into_new else [])
        external_id = rng.choice(candidates)
        fields: dict[str, Any] = {"name": f"Merge {group} v{index}", "description": f"desc {index}",
                                 "labels": [f"L{index}"]}  # fmt: skip
        data = {key: fields[key] for key in rng.sample(sorted(fields), rng.randint(1, 3))}
        add("updated", external_id, index, data)
        if after or external_id == kept:
            state.update({key: value for key, value in data.items() if key != "labels"})
            if "labels" in data:
                state["labels"] = normalize_labels(data["labels"])
    return events, {survivor: state, **{gone: None for gone in (first, second) if gone != survivor}}


def erasure_events(count: int, start: datetime) -> tuple[list[Event], list[dict[str, Any]]]:
    """Erasure requests for people known by their purchases, and those purchases to seed."""
    events, purchases = [], []
    for person in range(count):
        ids = [1_000_000 + person * 10 + n for n in range(1 + person % 3)]
        for purchase_id in ids:
            contact = {
                "id": purchase_id,
                "company": None,
                "firstName": "Han",
                "lastName": f"Solo{person}",
                "email": f"person{person}@example.com",
                "addressLine1": "1 Soak Way",
                "addressLine2": None,
                "postalCode": "1234",
                "city": "Tatooine",
                "country": {"id": "MT", "name": "Malta"},
                "state": None,
            }
            purchases.append(
                {
                    "id": purchase_id,
                    "customer": {"id": person},
                    "customerCountry": {"id": "MT"},
                    "billingContact": contact,
                    "deliveryContact": None,
                    "licenseeContact": None,
                }
            )
        body = {
            "type": "customer.erasure_requested",
            "timestamp": start.isoformat(),
            "data": {"external_id": f"erase-{person}", "purchase_ids": ids},
        }
        events.append(Event(f"erase-{person}", body))
    return events, purchases


def delivery_order(rng: random.Random, events: list[Event], duplicates: float, window: int) -> list[Event]:
    """Every event once, a share again (redeliveries), each moved up to `window` places."""
    deliveries = events + [event for event in events if rng.random() < duplicates]
    keyed = [(index + rng.uniform(0, window), event) for index, event in enumerate(deliveries)]
    return [event for _, event in sorted(keyed, key=lambda pair: pair[0])]


def deliver_all(url: str, deliveries: list[Event], on_progress: Any) -> Counter[str]:
    """POST every delivery (signed at send time) from a pool of keep-alive sessions."""
    statuses: Counter[str] = Counter()
    local = threading.local()
    lock = threading.Lock()

    def post(event: Event) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        headers, body = signed_request(SECRET, event.body, event.webhook_id)
        for _ in range(20):  # a 5xx from our own service is redelivered, as a CRM would
            status = session.post(url, data=body, headers=headers, timeout=30).status_code
            if status < 500:
                break
        with lock:
            statuses[str(status)] += 1
            on_progress(sum(statuses.values()))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(post, deliveries))
    return statuses


def actual_customers(sandbox: RunningSandbox) -> dict[str, dict[str, Any]]:
    """Every customer in the sandbox, paged through its API sorted by creation."""
    query = """query ($after: String) {
      customers(first: 100, after: $after, isSystem: false, sortBy: [{field: CREATED_AT, direction: ASC}]) {
        nodes { name description externalId labels } pageInfo { hasNextPage endCursor } } }"""
    found: dict[str, dict[str, Any]] = {}
    after: str | None = None
    while True:
        page = _graphql(sandbox.customers_url, CUSTOMERS_TOKEN, query, {"after": after})["customers"]
        for node in page["nodes"]:
            found[node["externalId"]] = {key: node[key] for key in ("name", "description", "labels")}
        if not page["pageInfo"]["hasNextPage"]:
            return found
        after = page["pageInfo"]["endCursor"]


def _graphql(url: str, token: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """`data` of one GraphQL request to the sandbox, as an API client would send it."""
    reply = requests.post(url, json={"query": query, "variables": variables},
                          headers={"Authorization": f"Bearer {token}"}, timeout=30)  # fmt: skip
    return dict(reply.json()["data"])


def anonymised(sandbox: RunningSandbox, purchase_id: int) -> bool:
    query = "query ($id: Int!) { purchase(id: $id) { billingContact { firstName lastName city } } }"
    reply = _graphql(sandbox.personal_data_url, PERSONAL_DATA_TOKEN, query, {"id": purchase_id})
    contact = reply["purchase"]["billingContact"]
    return all(value == ANONYMISED for value in contact.values())


def wait_drained(redis: Redis, job_ids: list[str], timeout: float) -> dict[str, Job]:
    """Wait until every accepted job has finished or failed for good; return them."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = [job for job in Job.fetch_many(job_ids, connection=redis, serializer=JSONSerializer) if job]
        pending = [
            job for job in jobs if job.get_status(refresh=False) not in (JobStatus.FINISHED, JobStatus.FAILED)
        ]
        if not pending:
            return {job.id: job for job in jobs}
        if time.monotonic() > deadline:
            for job in pending[:10]:  # identifiers and states only: what an operator would look at
                attempts = [attempt.get("class") for attempt in job.meta.get("attempts", [])]
                state = f"{job.get_status(refresh=False)}, worker {job.worker_name}"
                print(f"pending {job.id}: {state}, enqueued {job.enqueued_at}, started {job.started_at}, "
                      f"attempts {attempts}")  # fmt: skip
            raise SystemExit(f"{len(pending)} jobs still pending after {timeout:.0f} s")
        time.sleep(0.5)


class OutOfBand(threading.Thread):
    """Reissues `per_second` random customers a second (out of band) until stopped; counts them."""

    def __init__(
        self, sandbox: RunningSandbox, external_ids: list[str], per_second: float, seed: int
    ) -> None:
        super().__init__(name="out-of-band", daemon=True)
        self.sandbox, self.external_ids, self.per_second = sandbox, external_ids, per_second
        self.rng = random.Random(seed)
        self.stopped = threading.Event()
        self.reissued = 0

    def run(self) -> None:
        admin = {"Authorization": f"Bearer {CUSTOMERS_TOKEN}"}
        while self.per_second > 0 and not self.stopped.wait(1 / self.per_second):
            chosen = self.rng.choice(self.external_ids)
            reply = requests.post(f"{self.sandbox.base_url}/admin/customers/reissue",
                                  json={"external_ids": [chosen]}, headers=admin, timeout=30)  # fmt: skip
            self.reissued += int(reply.json()["reissued"])


def _quiet_sandbox_log() -> None:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def run(
    customers: int, events_per_customer: int, workers: int, duplicates: float, window: int, seed: int,
    concurrency: int = 1, reissue_per_second: float = 20, logs: Path | None = None,
) -> int:  # fmt: skip
    rng = random.Random(seed)
    start_at = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    histories = {
        f"soak-{n}": customer_history(rng, n, events_per_customer, start_at) for n in range(customers)
    }
    erasures, purchases = erasure_events(max(1, customers // 10), start_at)
    merges: list[Event] = []
    merged_states: dict[str, Any] = {}
    for group in range(max(2, customers // 10)):
        group_events, group_states = merge_group(rng, group, max(1, events_per_customer // 2), start_at)
        merges += group_events
        merged_states.update(group_states)
    merged_creates = [event for event in merges if event.body["type"] == "customer.created"]
    merges_after = [event for event in merges if event.body["type"] != "customer.created"]
    events = (merged_creates + [event for history in histories.values() for event in history] + erasures
              + merges_after)  # fmt: skip
    deliveries = delivery_order(rng, events, duplicates, window)

    _quiet_sandbox_log()
    config = SandboxConfig(CUSTOMERS_TOKEN, PERSONAL_DATA_TOKEN)
    sandbox = start_in_thread(config)
    admin = {"Authorization": f"Bearer {CUSTOMERS_TOKEN}"}
    requests.post(
        f"{sandbox.base_url}/admin/purchases", json=purchases, headers=admin, timeout=30
    ).raise_for_status()
    with bench_redis() as redis_url:
        flush(redis_url)
        port = free_port()
        env = {
            **WORKER_ENV,
            "REDIS_URL": redis_url,
            "PORT": str(port),
            "WEBHOOK_SECRET": WEBHOOK_SECRET,
            **platform_env(sandbox.customers_url, sandbox.personal_data_url),
            "WORKER_CONCURRENCY": str(concurrency),
        }
        web = start(
            ["gunicorn", "--config", "python:crmsync.server.gunicorn_conf", "crmsync.web:create_app()"], env
        )
        if logs is not None:
            # Every job's outcome and failure, per worker dyno, to follow a mismatch's events.
            logs.mkdir(parents=True, exist_ok=True)
            env["LOG_LEVEL"] = "INFO"
        pool = [
            start(["crmsync", "worker"], env, log=logs / f"worker-{n}.log" if logs else None)
            for n in range(workers)
        ]
        killed = False
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", web)
            requests.put(
                f"{sandbox.base_url}/admin/faults", json=FAULTS.to_json(), headers=admin, timeout=30
            ).raise_for_status()
            kill_at = len(deliveries) // 3

            def progress(sent: int) -> None:
                nonlocal killed
                if sent >= kill_at and not killed:
                    killed = True
                    # The whole process group, as when a dyno dies: its workers and their scheduler.
                    os.killpg(pool[0].pid, signal.SIGKILL)  # mid-run, mid-job most likely

            out_of_band = OutOfBand(sandbox, sorted(histories), reissue_per_second, seed)
            out_of_band.start()
            started = time.monotonic()
            statuses = deliver_all(f"http://127.0.0.1:{port}/webhooks/crm", deliveries, progress)
            redis = Redis.from_url(redis_url)
            job_ids = sorted({_job_id(event.webhook_id) for event in events})
            jobs = wait_drained(redis, job_ids, timeout=600)
            elapsed = time.monotonic() - started
            out_of_band.stopped.set()
            out_of_band.join()
            fault_stats = requests.get(f"{sandbox.base_url}/admin/stats", headers=admin, timeout=30).json()
            requests.put(f"{sandbox.base_url}/admin/faults", json={}, headers=admin, timeout=30)
            actual = actual_customers(sandbox)
            erased_ok = sum(
                all(anonymised(sandbox, pid) for pid in e.body["data"]["purchase_ids"]) for e in erasures
            )
            outcomes = Counter(_outcome(job) for job in jobs.values())
            failed_by_class = Counter(
                "/".join(attempt.get("class", "?") for attempt in job.meta.get("attempts", [])[-2:])
                for job in jobs.values() if _outcome(job) == "failed"
            )  # fmt: skip
            for job in [job for job in jobs.values() if _outcome(job) == "failed"][:5]:
                last = [(a.get("class"), a.get("message")) for a in job.meta.get("attempts", [])][-3:]
                print(f"failed {job.id}: {job.meta.get('type')} {job.meta.get('external_id')}: {last}")
            retried = sum(1 for job in jobs.values() if job.meta.get("attempts"))
        finally:
            for process in [*pool, web]:
                stop(process)
            sandbox.stop()

    expected = {external_id: expected_state(history) for external_id, history in histories.items()}
    expected.update(merged_states)
    wrong = [external_id for external_id, state in expected.items() if actual.get(external_id) != state]
    for external_id in wrong[:10]:
        print(
            f"mismatch {external_id}: expected {expected[external_id]}, sandbox has {actual.get(external_id)}"
        )
    mismatches = len(wrong)
    mismatches += sum(1 for external_id in actual if external_id not in expected)
    mismatches += len(erasures) - erased_ok
    lost = len(events) - len(jobs)  # accepted events whose job vanished, or never accepted at all
    rows = [
        ("events (distinct)", len(events)),
        ("deliveries sent (incl. redeliveries)", len(deliveries)),
        ("accepted (202)", statuses["202"]),
        ("duplicates (200)", statuses["200"]),
        ("other answers", sum(n for status, n in statuses.items() if status not in ("200", "202"))),
        ("applied", outcomes["applied"] + outcomes["noop"]),
        ("coalesced (in another event's write)", outcomes["coalesced"]),
        ("stale-skipped", outcomes["stale"]),
        ("retried (jobs with >= 1 failed attempt)", retried),
        ("failed", f"{outcomes['failed']} {dict(failed_by_class)}" if failed_by_class else 0),
        ("lost (no job for an event)", lost),
        ("faults injected", sum(fault_stats.get("faults", {}).values())),
        ("worker SIGKILLed mid-run", "yes" if killed else "no"),
        ("customers re-created out of band", out_of_band.reissued),
        ("customers expected to exist", sum(1 for state in expected.values() if state)),
        ("erasures completed", f"{erased_ok}/{len(erasures)}"),
        (
            "merges (with updates around each)",
            sum(e.body["type"] == "customer.merged" for e in merges),
        ),
        ("mismatches (expected vs sandbox)", mismatches),
        ("wall time (s)", f"{elapsed:.1f}"),
    ]
    print_table(
        f"Soak: {customers} customers x {events_per_customer} events, {workers} worker dynos x "
        f"WORKER_CONCURRENCY={concurrency}",
        ("", "value"),
        rows,
    )
    return 1 if mismatches or lost or outcomes["failed"] else 0


def _job_id(webhook_id: str) -> str:
    from crmsync.core.keys import job_id_for

    return job_id_for(webhook_id)


def _outcome(job: Job) -> str:
    if job.get_status(refresh=False) == JobStatus.FAILED:
        return "failed"
    result = job.return_value(refresh=True)
    return str(result.get("outcome")) if isinstance(result, dict) else "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=5, help="events per customer")
    parser.add_argument("--workers", type=int, default=3, help="worker dynos (`crmsync worker` processes)")
    parser.add_argument("--concurrency", type=int, default=1, help="each dyno's WORKER_CONCURRENCY")
    parser.add_argument("--duplicates", type=float, default=0.2, help="share of events delivered twice")
    parser.add_argument("--window", type=int, default=50, help="how far a delivery may move in the order")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reissue-per-second", type=float, default=20,
                        help="customers deleted and re-created out of band per second (0: none)")  # fmt: skip
    parser.add_argument("--logs", type=Path, help="write each worker dyno's log (INFO) to this directory")
    args = parser.parse_args()
    sys.exit(run(args.customers, args.events, args.workers, args.duplicates, args.window, args.seed,
                 args.concurrency, args.reissue_per_second, args.logs))  # fmt: skip


if __name__ == "__main__":
    main()
