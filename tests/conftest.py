"""Shared fixtures: a real Redis, the sandbox API and the web app, each over a real connection."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from types import CodeType, FunctionType
from typing import Any

import pytest
import requests
from click.testing import CliRunner, Result
from redis import Redis

from crmsync.cli import main
from crmsync.cli.embedded_redis import start_embedded_redis
from crmsync.core.settings import Settings
from crmsync.web import create_app
from jobs.worker import SyncWorker, build_worker
from sandbox.config import SandboxConfig
from sandbox.server import RunningSandbox, start_in_thread
from tests.support import (
    CUSTOMERS_TOKEN,
    DASHBOARD_PASSWORD,
    DASHBOARD_USER,
    PERSONAL_DATA_TOKEN,
    SALESFORCE_MAPPINGS,
    SECRET,
    SOURCES_ENV,
    STANDARD_ENV,
    Deliver,
    Dyno,
    kill_worker_groups,
    served,
    signed_request,
)

# Names whose use starts a process: what makes a test slow (seconds each: an interpreter, its imports).
STARTS_PROCESSES = frozenset({"subprocess", "Popen", "fork", "multiprocessing", "webdriver"})


def _starts_processes(function: Any, seen: set[Any]) -> bool:
    """Whether `function`, or a function of the tests it names (a helper, to some depth), names
    something that starts a process."""
    if not isinstance(function, FunctionType) or function in seen:
        return False
    seen.add(function)
    names = _names(function.__code__)
    if names & STARTS_PROCESSES:
        return True
    module_globals = function.__globals__
    return any(
        _starts_processes(module_globals.get(name), seen)
        for name in names
        if getattr(module_globals.get(name), "__module__", "").startswith("tests")
    )


def _names(code: CodeType) -> set[str]:
    """The global and attribute names a function's code uses, its nested functions' included."""
    nested = (_names(const) for const in code.co_consts if isinstance(const, CodeType))
    return set(code.co_names).union(*nested)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `slow` every test that starts a process: itself, a helper of the tests it calls, or a
    fixture it uses (worker processes, gunicorn, the browser, `crmsync` commands). A new test falls
    under the rule by what it does; `pytest -m "not slow"` is the edit loop's fast tier."""
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        fixtures = [defs[-1].func for defs in item._fixtureinfo.name2fixturedefs.values() if defs]
        seen: set[Any] = set()
        candidates = [item.function, *(func for func in fixtures if func.__module__.startswith("tests"))]
        if any(_starts_processes(candidate, seen) for candidate in candidates):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """REDIS_URL when set (the tests flush it), else an embedded redis-server for the session."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = start_embedded_redis()
    yield server.url
    server.stop()


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    """A client on an emptied database, so every test starts from nothing."""
    client = Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[RunningSandbox]:
    """The sandbox GraphQL APIs, served over HTTP on a free port for the whole session."""
    server = start_in_thread(
        SandboxConfig(customers_token=CUSTOMERS_TOKEN, personal_data_token=PERSONAL_DATA_TOKEN)
    )
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server: RunningSandbox) -> RunningSandbox:
    """The sandbox, reset to empty with faults off."""
    response = requests.post(
        f"{sandbox_server.base_url}/admin/reset",
        headers={"Authorization": f"Bearer {CUSTOMERS_TOKEN}"},
        timeout=5,
    )
    response.raise_for_status()
    return sandbox_server


@pytest.fixture(scope="session")
def settings(redis_url: str, sandbox_server: RunningSandbox) -> Settings:
    """Settings as the environment would give them, pointing at the test Redis and sandbox."""
    base = Settings.from_env(
        {
            "REDIS_URL": redis_url,
            "CUSTOMERS_API_URL": sandbox_server.customers_url,
            "CUSTOMERS_API_TOKEN": CUSTOMERS_TOKEN,
            "PERSONAL_DATA_API_URL": sandbox_server.personal_data_url,
            "PERSONAL_DATA_API_TOKEN": PERSONAL_DATA_TOKEN,
            "API_TIMEOUT_SECONDS": "2",
            # Keeps a customer locked briefly after a request that got no answer (see ordering).
            "IN_FLIGHT_HOLD_SECONDS": "1",
        },
        role="web",
    )
    # Immediate retries keep failure tests fast; the schedule's shape is tested on its own.
    return replace(base, retry_schedule=(0, 0))


@pytest.fixture(scope="session")
def web_server(settings: Settings) -> Iterator[str]:
    """The web app served over real HTTP in a thread for the session; yields its base URL."""
    with served(create_app(settings, environ=STANDARD_ENV)) as base_url:
        yield base_url


@pytest.fixture(scope="session")
def dashboard_server(settings: Settings) -> Iterator[str]:
    """The web app with the dashboard switched on (DASHBOARD_PASSWORD set), over real HTTP."""
    dashboard_on = replace(settings, dashboard_user=DASHBOARD_USER, dashboard_password=DASHBOARD_PASSWORD)
    app = create_app(dashboard_on, environ=STANDARD_ENV)
    with served(app) as base_url:
        yield base_url


# The mappings the CRM sources' end-to-end tests run with: HubSpot's labels from a property, the shared
# Salesforce mappings (labels from several fields, an erasure object); Pipedrive keeps its defaults.
SOURCE_MAPPINGS = (
    """
[hubspot.fields]
name = "name"
description = "description"
labels = "industry"
"""
    + SALESFORCE_MAPPINGS
)


@pytest.fixture(scope="session")
def sources_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The session's settings with SOURCE_MAPPINGS; the app built with SOURCES_ENV serves every source
    of the registry (test credentials)."""
    mappings = tmp_path_factory.mktemp("mappings") / "mappings.toml"
    mappings.write_text(SOURCE_MAPPINGS)
    return replace(settings, mappings_file=str(mappings))


@pytest.fixture(scope="session")
def sources_server(sources_settings: Settings) -> Iterator[str]:
    """The web app with every CRM source enabled, served over real HTTP for the session."""
    with served(create_app(sources_settings, environ=SOURCES_ENV)) as base_url:
        yield base_url


@pytest.fixture
def crm(sources_server: str, redis: Redis, sandbox: RunningSandbox) -> str:
    """The base URL of the app with every CRM source, with Redis emptied and the sandbox reset."""
    return sources_server


@pytest.fixture
def dashboard(dashboard_server: str, redis: Redis, sandbox: RunningSandbox) -> str:
    """The dashboard's base URL, with Redis emptied and the sandbox reset for this test."""
    return f"{dashboard_server}/dashboard"


@pytest.fixture
def web(web_server: str, redis: Redis, sandbox: RunningSandbox) -> str:
    """The webhook URL, with Redis emptied and the sandbox reset for this test."""
    return f"{web_server}/webhooks/crm"


@pytest.fixture
def deliver(web: str) -> Deliver:
    """POST a signed delivery of `event`; keyword arguments override headers, body or signing."""

    def _deliver(
        event: dict[str, Any],
        webhook_id: str | None = None,
        secret: bytes = SECRET,
        timestamp: int | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> requests.Response:
        signed_headers, signed_body = signed_request(secret, event, webhook_id, timestamp)
        return requests.post(web, data=body if body is not None else signed_body,
                             headers={**signed_headers, **(headers or {})}, timeout=10)  # fmt: skip

    return _deliver


@pytest.fixture
def cli(settings: Settings, sandbox: RunningSandbox, redis: Redis) -> Callable[..., Result]:
    """Run `crmsync ARGS...` in this process, as an operator would, against the test Redis (emptied)
    and the sandbox (reset); an exception fails the test instead of becoming an exit code."""
    env = {
        "REDIS_URL": settings.redis_url,
        "CUSTOMERS_API_URL": sandbox.customers_url,
        "CUSTOMERS_API_TOKEN": CUSTOMERS_TOKEN,
    }

    def run(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    return run


@pytest.fixture
def worker(settings: Settings, redis: Redis) -> Iterator[SyncWorker]:
    """A real RQ worker (in this process) whose `work(burst=True)` drains the queue."""
    built = build_worker(settings, redis)
    yield built
    built.runtime.close()


@pytest.fixture
def platform(sandbox: RunningSandbox) -> Callable[..., dict[str, Any]]:
    """Query the sandbox's customers API over GraphQL, as a client of the platform would."""

    def _query(query: str, variables: dict[str, Any] | None = None, api: str = "customers") -> dict[str, Any]:
        url, token = (
            (sandbox.customers_url, CUSTOMERS_TOKEN)
            if api == "customers"
            else (sandbox.personal_data_url, PERSONAL_DATA_TOKEN)
        )
        response = requests.post(
            url,
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        response.raise_for_status()
        return dict(response.json())

    return _query


@pytest.fixture
def dyno(settings: Settings, redis: Redis) -> Iterator[Dyno]:
    """Start `crmsync worker` (the Procfile's worker line) with WORKER_CONCURRENCY and other settings
    from the environment, in its own process group, as a dyno; killed with its group at the end."""
    started: list[subprocess.Popen[bytes]] = []
    assert settings.customers_api is not None and settings.personal_data_api is not None
    env = {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "CUSTOMERS_API_URL": settings.customers_api.url,
        "CUSTOMERS_API_TOKEN": CUSTOMERS_TOKEN,
        "PERSONAL_DATA_API_URL": settings.personal_data_api.url,
        "PERSONAL_DATA_API_TOKEN": PERSONAL_DATA_TOKEN,
        "WORKER_MAINTENANCE_INTERVAL": "1",
        "IN_FLIGHT_HOLD_SECONDS": "1",
        "LOG_LEVEL": "WARNING",
    }

    def start(*arguments: str, **overrides: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "crmsync", "worker", *arguments]
        process = subprocess.Popen(command, env={**env, **overrides}, start_new_session=True)
        started.append(process)
        return process

    yield start
    kill_worker_groups(started, redis)
