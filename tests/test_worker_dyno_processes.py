"""A worker dyno of several processes (WORKER_PROCESSES, or one per 8 workers up to the CPUs), for real.

The workers are split over forked processes; each customer's events still apply in order, whichever
process takes them; SIGTERM to the dyno (Heroku's, to every process, or a `kill` of the parent
alone) lets every running job finish and exits; a process that dies is replaced and its jobs are
recovered and applied once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from redis import Redis
from rq import Worker
from rq.job import JobStatus

from crmsync.core.settings import Settings, SettingsError, default_worker_concurrency
from jobs.dyno_processes import dyno_processes, threads_per_process
from sandbox.server import RunningSandbox
from tests.support import (
    CUSTOMERS_TOKEN,
    PERSONAL_DATA_TOKEN,
    Dyno,
    Platform,
    customers,
    enqueue,
    event,
    set_faults,
    stats,
    status,
    wait_until,
)


def _processes() -> dict[int, tuple[int, int]]:
    """Every live process: pid -> (parent pid, process group), zombies left out."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # it ended meanwhile
            if fields[0] != "Z":
                found[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return found


def group_pids(group: int) -> set[int]:
    """The processes of a process group (a dyno started in its own session)."""
    return {pid for pid, (_, pgrp) in _processes().items() if pgrp == group}


def children(parent: int) -> set[int]:
    """The dyno's worker processes: its own children (RQ's scheduler is a child of the first)."""
    return {pid for pid, (ppid, _) in _processes().items() if ppid == parent}


def create(settings: Settings, redis: Redis, count: int, **overrides: int) -> list[str]:
    """Enqueue the creation of customers crm-0.., named C 0..; return their job ids."""
    return [
        enqueue(settings, redis, f"msg-{n}", event("created", f"crm-{n}", name=f"C {n}"), **overrides)
        for n in range(count)
    ]


def all_started(redis: Redis, job_ids: list[str]) -> bool:
    return all(status(redis, job_id) == JobStatus.STARTED for job_id in job_ids)


def settings_with(**env: str) -> Settings:
    return Settings.from_env({"REDIS_URL": "redis://127.0.0.1:6379/0", **env}, role="cli")


@pytest.mark.parametrize(
    ("env", "cpus", "processes"),
    [
        ({"WORKER_CONCURRENCY": "25"}, 2, 2),  # one per 8 workers would be 4: at most one per CPU
        ({"WORKER_CONCURRENCY": "25"}, 8, 4),
        ({"WORKER_CONCURRENCY": "8"}, 8, 1),
        ({"WORKER_CONCURRENCY": "9"}, 8, 2),
        ({"WORKER_CONCURRENCY": "1"}, 8, 1),
        ({"WORKER_CONCURRENCY": "25", "WORKER_PROCESSES": "3"}, 2, 3),  # the operator's word
        ({"WORKER_CONCURRENCY": "2", "WORKER_PROCESSES": "5"}, 8, 2),  # never a process without a worker
        ({"WORKER_CONCURRENCY": "25", "WORKER_PROCESSES": "0"}, 2, 2),  # 0: as unset
    ],
)
def test_the_processes_a_dyno_runs(env: dict[str, str], cpus: int, processes: int) -> None:
    assert dyno_processes(settings_with(**env), cpus=cpus) == processes


def test_the_workers_are_split_as_evenly_as_they_go() -> None:
    assert threads_per_process(25, 2) == [13, 12]
    assert threads_per_process(3, 3) == [1, 1, 1]
    assert threads_per_process(10, 4) == [3, 3, 2, 2]


def test_worker_processes_must_be_a_whole_number() -> None:
    with pytest.raises(SettingsError, match="WORKER_PROCESSES"):
        settings_with(WORKER_PROCESSES="two")


def test_two_processes_drain_many_customers_each_in_order(
    settings: Settings, redis: Redis, sandbox: RunningSandbox, platform: Platform, dyno: Dyno
) -> None:
    # Each customer's later update arrives first; whichever process takes which, the newer value wins.
    job_ids = []
    for n in range(12):
        newer = event("updated", f"crm-{n}", "2026-11-22T10:00:05Z", name=f"New {n}")
        older = event("created", f"crm-{n}", "2026-11-22T10:00:00Z", name=f"Old {n}")
        job_ids += [enqueue(settings, redis, f"upd-{n}", newer), enqueue(settings, redis, f"new-{n}", older)]
    process = dyno("--burst", WORKER_CONCURRENCY="4", WORKER_PROCESSES="2")
    assert process.wait(timeout=120) == 0  # every process ended with the queue empty, then the parent
    assert {status(redis, job_id) for job_id in job_ids} == {JobStatus.FINISHED}
    assert [customers(platform, f"crm-{n}")[0]["name"] for n in range(12)] == [f"New {n}" for n in range(12)]
    assert stats(sandbox)["mutations"]["createCustomer"] == 12


def test_the_workers_run_in_separate_processes_forked_from_the_dyno(
    settings: Settings, redis: Redis, sandbox: RunningSandbox, dyno: Dyno
) -> None:
    set_faults(sandbox, slow_rate=1.0, slow_seconds=2.0)
    job_ids = create(settings, redis, 4)
    process = dyno(WORKER_CONCURRENCY="4", WORKER_PROCESSES="2")
    wait_until(lambda: all_started(redis, job_ids), "4 jobs started")
    workers = Worker.all(connection=redis)
    assert len(workers) == 4
    assert {worker.pid for worker in workers} == children(process.pid)
    assert len(children(process.pid)) == 2


@pytest.mark.parametrize("to_the_group", [True, False], ids=["signal-every-process", "kill-the-parent"])
def test_sigterm_lets_every_process_finish_its_running_jobs_then_the_dyno_exits(
    settings: Settings,
    redis: Redis,
    sandbox: RunningSandbox,
    platform: Platform,
    dyno: Dyno,
    to_the_group: bool,
) -> None:
    set_faults(sandbox, slow_rate=1.0, slow_seconds=1.0)
    # Shares of 2 and 1: a process of threads, and a process of a single worker.
    process = dyno(WORKER_CONCURRENCY="3", WORKER_PROCESSES="2")
    job_ids = create(settings, redis, 3)
    wait_until(lambda: all_started(redis, job_ids), "3 jobs started")
    if to_the_group:
        os.killpg(process.pid, signal.SIGTERM)  # the parent then relays it: each process gets two
    else:
        os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=30) == 0  # SIGKILL would come 30 s after SIGTERM
    assert group_pids(process.pid) == set()  # no process of the dyno is left behind
    assert {status(redis, job_id) for job_id in job_ids} == {JobStatus.FINISHED}
    assert sorted(customer["name"] for n in range(3) for customer in customers(platform, f"crm-{n}")) == [
        "C 0", "C 1", "C 2"
    ]  # fmt: skip


def test_a_process_that_dies_is_replaced_and_its_jobs_are_applied_once(
    settings: Settings, redis: Redis, sandbox: RunningSandbox, platform: Platform, dyno: Dyno
) -> None:
    set_faults(sandbox, slow_rate=1.0, slow_seconds=2.0)
    process = dyno(WORKER_CONCURRENCY="2", WORKER_PROCESSES="2")
    wait_until(lambda: len(children(process.pid)) == 2, "2 processes forked")
    # A short job timeout: the dead process's job counts as abandoned 5 s after it, not after a minute.
    job_ids = create(settings, redis, 2, job_timeout_seconds=3)
    wait_until(lambda: all_started(redis, job_ids), "2 jobs started")
    doomed = next(iter(children(process.pid)))
    os.kill(doomed, signal.SIGKILL)
    wait_until(lambda: len(children(process.pid)) == 2 and doomed not in children(process.pid), "replaced")
    set_faults(sandbox)
    wait_until(lambda: {status(redis, job_id) for job_id in job_ids} == {JobStatus.FINISHED}, "recovered")
    assert sorted(customer["name"] for n in range(2) for customer in customers(platform, f"crm-{n}")) == [
        "C 0", "C 1"
    ]  # fmt: skip
    assert stats(sandbox)["mutations"]["createCustomer"] == 2
    assert process.poll() is None  # the dyno itself kept running


def test_sigterm_stops_every_process_within_10_s_none_listening_on_rqs_command_channel(
    redis: Redis, dyno: Dyno
) -> None:
    # RQ's command channel is a pub/sub thread whose stop() waited up to 60 s with redis-py 8.2
    # (jobs/worker.py): no worker may start one, whether a main-thread worker or a thread.
    process = dyno(WORKER_CONCURRENCY="3", WORKER_PROCESSES="2")  # shares of 2 (threads) and 1
    wait_until(lambda: redis.info("clients")["blocked_clients"] == 3, "3 workers waiting for jobs")
    listeners = [client for client in redis.client_list() if int(client["sub"]) or int(client["psub"])]
    assert listeners == []
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert group_pids(process.pid) == set()


@pytest.mark.parametrize(
    ("overrides", "workers", "chosen_by"),
    [({}, default_worker_concurrency(), "memory"), ({"WORKER_CONCURRENCY": "3"}, 3, "WORKER_CONCURRENCY")],
)
def test_the_dyno_says_at_start_how_many_workers_it_runs_and_why(
    settings: Settings, redis: Redis, sandbox: RunningSandbox, overrides: dict[str, str], workers: int,
    chosen_by: str,
) -> None:  # fmt: skip
    assert settings.customers_api is not None and settings.personal_data_api is not None
    env = {name: value for name, value in os.environ.items() if name != "WORKER_CONCURRENCY"}
    env |= {"REDIS_URL": settings.redis_url, "CUSTOMERS_API_URL": settings.customers_api.url,
            "CUSTOMERS_API_TOKEN": CUSTOMERS_TOKEN, "PERSONAL_DATA_API_URL": settings.personal_data_api.url,
            "PERSONAL_DATA_API_TOKEN": PERSONAL_DATA_TOKEN, "LOG_LEVEL": "INFO", **overrides}  # fmt: skip
    command = [sys.executable, "-m", "crmsync", "worker", "--burst"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=True)
    lines = [json.loads(line) for line in done.stdout.splitlines() if "worker_dyno_started" in line]
    assert len(lines) == 1
    assert (lines[0]["workers"], lines[0]["chosen_by"]) == (workers, chosen_by)
    assert lines[0]["processes"] == dyno_processes(replace(settings, worker_concurrency=workers))
