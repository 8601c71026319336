"""Settings from the environment: defaults, required values per role, clear errors."""

from __future__ import annotations

import pytest

from crmsync.core.settings import (
    DEFAULT_RETRY_SCHEDULE,
    Settings,
    SettingsError,
    default_worker_concurrency,
)

WORKER_ENV = {
    "CUSTOMERS_API_URL": "https://api.example.test/api/",
    "CUSTOMERS_API_TOKEN": "t1",
    "PERSONAL_DATA_API_URL": "https://graph.example.test/",
    "PERSONAL_DATA_API_TOKEN": "t2",
}


def test_defaults_for_the_web_role() -> None:
    # The web's sources read their own settings (tests/sources/test_registry.py).
    settings = Settings.from_env({}, role="web")
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.max_body_bytes == 262_144
    assert settings.dedup_ttl_seconds >= 72 * 3600
    assert settings.retry_schedule == DEFAULT_RETRY_SCHEDULE
    assert sum(DEFAULT_RETRY_SCHEDULE) > 6 * 3600


@pytest.mark.parametrize("missing", sorted(WORKER_ENV))
def test_worker_role_names_each_missing_api_setting(missing: str) -> None:
    env = {name: value for name, value in WORKER_ENV.items() if name != missing}
    with pytest.raises(SettingsError, match=missing):
        Settings.from_env(env, role="worker")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MAX_BODY_BYTES": "0"}, "MAX_BODY_BYTES must be positive"),
        ({"IN_FLIGHT_HOLD_SECONDS": "-1"}, "IN_FLIGHT_HOLD_SECONDS must be 0 or more"),
        ({"REDIS_RECONNECT_MAX_SECONDS": "0"}, "REDIS_RECONNECT_MAX_SECONDS must be positive"),
        ({"CUSTOMERS_API_URL": "ftp://x", "CUSTOMERS_API_TOKEN": "t"}, "CUSTOMERS_API_URL must be an http"),
        ({"RETRY_SCHEDULE": "5,soon"}, "RETRY_SCHEDULE"),
        ({"QUEUE_NAME": "a:b"}, "QUEUE_NAME"),
    ],
)
def test_malformed_values_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env, role="web")


def test_the_in_flight_hold_can_be_turned_off_with_0() -> None:
    assert Settings.from_env({"IN_FLIGHT_HOLD_SECONDS": "0"}).in_flight_hold_seconds == 0
    assert Settings.from_env({}).in_flight_hold_seconds == 30


def test_the_redis_reconnect_backoff_is_capped_at_10_s_unless_set() -> None:
    assert Settings.from_env({}).redis_reconnect_max_seconds == 10
    assert Settings.from_env({"REDIS_RECONNECT_MAX_SECONDS": "30"}).redis_reconnect_max_seconds == 30


@pytest.mark.parametrize(
    ("memory_mb", "cpus", "workers"),
    [
        (512, 8, 25),  # Heroku standard-1x: 512 MB, 8 CPUs shared with other dynos
        (1024, 8, 50),  # standard-2x
        (2560, 2, 50),  # performance-m: 2.5 GB but 2 CPUs
        (256, 8, 12),
        (16, 8, 1),  # never none
        (None, 2, 25),  # no memory limit found: as on a standard dyno
    ],
)
def test_without_worker_concurrency_a_dyno_runs_25_workers_per_512_mb_and_cpu(
    memory_mb: int | None, cpus: int, workers: int
) -> None:
    memory = memory_mb << 20 if memory_mb is not None else 0
    assert default_worker_concurrency(memory, cpus) == workers


def test_worker_concurrency_set_in_the_environment_is_taken_as_it_is() -> None:
    settings = Settings.from_env({"WORKER_CONCURRENCY": "3"}, role="cli")
    assert (settings.worker_concurrency, settings.worker_concurrency_derived) == (3, False)
    derived = Settings.from_env({}, role="cli")
    assert (derived.worker_concurrency, derived.worker_concurrency_derived) == (
        default_worker_concurrency(),
        True,
    )
