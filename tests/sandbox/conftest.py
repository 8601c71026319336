"""Fixtures for the sandbox tests: a sandbox served over real HTTP, and small clients for its APIs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox import RunningSandbox, SandboxConfig, start_in_thread
from tests.sandbox.sandbox_testkit import CUSTOMERS_TOKEN, PERSONAL_DATA_TOKEN, ApiClient


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    """A sandbox with no data and faults off, serving on a free local port until the test ends."""
    running = start_in_thread(
        SandboxConfig(customers_token=CUSTOMERS_TOKEN, personal_data_token=PERSONAL_DATA_TOKEN)
    )
    yield running
    running.stop()


@pytest.fixture
def customers_api(sandbox: RunningSandbox) -> Iterator[ApiClient]:
    """A client of the sandbox's customers API holding the right token."""
    client = ApiClient(sandbox.customers_url, CUSTOMERS_TOKEN)
    yield client
    client.session.close()


@pytest.fixture
def personal_data_api(sandbox: RunningSandbox) -> Iterator[ApiClient]:
    """A client of the sandbox's personal-data API holding the right token."""
    client = ApiClient(sandbox.personal_data_url, PERSONAL_DATA_TOKEN)
    yield client
    client.session.close()


@pytest.fixture
def admin_api(sandbox: RunningSandbox) -> Iterator[ApiClient]:
    """A client of the sandbox's admin API, which takes the customers API's token."""
    client = ApiClient(sandbox.base_url + "/admin", CUSTOMERS_TOKEN)
    yield client
    client.session.close()
