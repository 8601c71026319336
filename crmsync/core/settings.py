"""Settings, read from the environment in this one place.

Each process role (web, worker) states which settings it needs; a missing or malformed one stops
the process at start-up with a message naming the variable, instead of failing on the first event.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from crmsync.core.keys import DEFAULT_DEDUP_TTL_SECONDS, DEFAULT_LEDGER_TTL_SECONDS

Role = Literal["web", "worker", "cli"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# Seconds before each retry, like the large webhook platforms: about 27 hours in all.
DEFAULT_RETRY_SCHEDULE = (5, 60, 300, 1800, 7200, 18000, 36000, 36000)
# What an erasure does to the customer record on the customers API, besides the purchases.
ERASURE_CUSTOMER_ACTIONS = ("none", "anonymize", "delete")
# What a write does when another customer holds the name (the platform's names are unique): `fail` as
# `name_conflict`, or `suffix`: write "{name} ({externalId})" instead (docs/crm-sources.md).
NAME_CONFLICT_POLICIES = ("fail", "suffix")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class ApiSettings:
    """Where one GraphQL API lives and how to authenticate to it."""

    url: str
    token: str
    # Requests per second across every worker process and dyno (jobs/rate_limit.py); 0: no limit.
    rate_limit: float = 0.0


@dataclass(frozen=True)
class Settings:
    """Everything the web and worker processes read from the environment."""

    redis_url: str = DEFAULT_REDIS_URL
    queue_name: str = "crmsync"
    max_body_bytes: int = 262_144
    # How long a client may take to send a whole request (from its first byte) before it is answered 408.
    body_timeout_seconds: int = 10
    dedup_ttl_seconds: int = DEFAULT_DEDUP_TTL_SECONDS
    customers_api: ApiSettings | None = None
    personal_data_api: ApiSettings | None = None
    api_timeout_seconds: float = 10.0
    job_timeout_seconds: int = 60
    retry_schedule: tuple[int, ...] = DEFAULT_RETRY_SCHEDULE
    ledger_ttl_seconds: int = DEFAULT_LEDGER_TTL_SECONDS
    erasure_customer_action: str = "none"
    name_conflict_policy: str = "fail"
    erasure_deadline_days: int = 30
    erasure_audit_retention_days: int = 400
    worker_maintenance_interval: int = 30
    worker_shutdown_grace_seconds: int = 20
    in_flight_hold_seconds: int = 30
    reconcile_report_retention_days: int = 30
    redis_reconnect_max_seconds: int = 10
    # Workers one worker dyno runs (`crmsync worker`: threads, jobs/dyno.py), each one job at a time.
    # Unset in the environment, it is derived from the dyno's memory (`default_worker_concurrency`).
    worker_concurrency: int = 1
    worker_concurrency_derived: bool = False
    # The processes those workers run in (jobs/dyno_processes.py); 0: one per 8 workers, at most one per CPU.
    worker_processes: int = 0
    # Fewer platform requests per event (docs/benchmarks.md); off only for a benchmark's baseline.
    id_cache: bool = True
    coalesce_events: bool = True
    # The operators' dashboard is off (404) unless a password is set; repr=False keeps secrets out of logs.
    dashboard_user: str = "operator"
    dashboard_password: str = field(default="", repr=False)
    dashboard_secret_key: str = field(default="", repr=False)
    metrics_token: str = field(default="", repr=False)
    # Proxies in front of the app whose X-Forwarded-For/-Proto are trusted, counted from the right:
    # 1 is Heroku's router (crmsync/web/proxies.py); 0 trusts none. X-Forwarded-Host never is.
    trusted_proxy_hops: int = 1
    # The webhook sources' own settings are theirs (webhooks/sources/registry.py); this file maps them.
    mappings_file: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, role: Role = "cli") -> Settings:
        """Read the settings a process of `role` needs; raise SettingsError naming what is wrong."""
        env = os.environ if environ is None else environ
        required = _REQUIRED[role]
        missing = [name for name in required if not env.get(name, "").strip()]
        if missing:
            raise SettingsError(f"missing required setting(s): {', '.join(missing)}")
        settings = cls(
            redis_url=_redis_url(env.get("REDIS_URL", "").strip() or DEFAULT_REDIS_URL),
            queue_name=_queue_name(env.get("QUEUE_NAME", "crmsync")),
            max_body_bytes=positive_int(env, "MAX_BODY_BYTES", 262_144),
            body_timeout_seconds=positive_int(env, "BODY_TIMEOUT_SECONDS", 10),
            dedup_ttl_seconds=positive_int(env, "DEDUP_TTL_SECONDS", DEFAULT_DEDUP_TTL_SECONDS),
            customers_api=_api(env, "CUSTOMERS_API"),
            personal_data_api=_api(env, "PERSONAL_DATA_API"),
            api_timeout_seconds=float(positive_int(env, "API_TIMEOUT_SECONDS", 10)),
            job_timeout_seconds=positive_int(env, "JOB_TIMEOUT_SECONDS", 60),
            retry_schedule=_schedule(env.get("RETRY_SCHEDULE", "")),
            ledger_ttl_seconds=positive_int(env, "LEDGER_TTL_SECONDS", DEFAULT_LEDGER_TTL_SECONDS),
            erasure_customer_action=_erasure_action(env.get("ERASURE_CUSTOMER_ACTION", "")),
            name_conflict_policy=_name_conflict_policy(env.get("NAME_CONFLICT_POLICY", "")),
            erasure_deadline_days=positive_int(env, "ERASURE_DEADLINE_DAYS", 30),
            erasure_audit_retention_days=_retention_days(env),
            worker_maintenance_interval=positive_int(env, "WORKER_MAINTENANCE_INTERVAL", 30),
            worker_shutdown_grace_seconds=positive_int(env, "WORKER_SHUTDOWN_GRACE_SECONDS", 20),
            # 0 turns the hold off: a deployment whose API never applies a request late may want that.
            in_flight_hold_seconds=positive_int(env, "IN_FLIGHT_HOLD_SECONDS", 30, allow_zero=True),
            redis_reconnect_max_seconds=positive_int(env, "REDIS_RECONNECT_MAX_SECONDS", 10),
            reconcile_report_retention_days=positive_int(env, "RECONCILE_REPORT_RETENTION_DAYS", 30),
            worker_concurrency=positive_int(env, "WORKER_CONCURRENCY", 0) or default_worker_concurrency(),
            worker_concurrency_derived=not env.get("WORKER_CONCURRENCY", "").strip(),
            id_cache=flag_setting(env, "ID_CACHE", default=True),
            coalesce_events=flag_setting(env, "COALESCE_EVENTS", default=True),
            worker_processes=positive_int(env, "WORKER_PROCESSES", 0, allow_zero=True),
            dashboard_user=env.get("DASHBOARD_USER", "").strip() or "operator",
            dashboard_password=secret_setting(env, "DASHBOARD_PASSWORD"),
            dashboard_secret_key=secret_setting(env, "DASHBOARD_SECRET_KEY"),
            metrics_token=secret_setting(env, "METRICS_TOKEN"),
            trusted_proxy_hops=positive_int(env, "TRUSTED_PROXY_HOPS", 1, allow_zero=True),
            mappings_file=env.get("CRMSYNC_MAPPINGS", "").strip(),
        )
        # The web also needs at least one webhook source: checked where it reads them (create_app).
        return settings


_REQUIRED: dict[Role, tuple[str, ...]] = {
    # The web needs at least one webhook source, whichever (webhooks/sources/registry.py).
    "web": (),
    "worker": (
        "CUSTOMERS_API_URL",
        "CUSTOMERS_API_TOKEN",
        "PERSONAL_DATA_API_URL",
        "PERSONAL_DATA_API_TOKEN",
    ),
    "cli": (),
}


# Workers per 512 MB (a standard-1x dyno) when WORKER_CONCURRENCY is unset. A worker waits 50-100 ms on
# the API per request and spends ~3-8 ms of CPU per event: 25 of them keep a standard dyno's share of
# CPU busy (200-230 events/s at 50 ms, docs/benchmarks.md) in ~100 MB, a fifth of its memory. Larger
# dynos get more in proportion to their memory (as Heroku's WEB_CONCURRENCY), at most 25 per CPU.
WORKERS_PER_512_MB = 25
# Where a container's memory limit is read: cgroup v2, then v1 (Heroku's own advice for dynos).
MEMORY_LIMIT_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def default_worker_concurrency(memory_bytes: int | None = None, cpus: int | None = None) -> int:
    """Workers for a dyno with `memory_bytes` (its cgroup's limit; a 512 MB dyno when none is found)
    and `cpus` CPUs: WORKERS_PER_512_MB per 512 MB, at most that many per CPU."""
    memory = memory_bytes if memory_bytes is not None else memory_limit_bytes()
    available = cpus if cpus is not None else len(os.sched_getaffinity(0))
    by_memory = WORKERS_PER_512_MB * (memory or 512 << 20) // (512 << 20)
    return max(1, min(by_memory, WORKERS_PER_512_MB * available))


def memory_limit_bytes() -> int | None:
    """This process's memory limit (its cgroup's), or None when there is none or it cannot be read."""
    for path in MEMORY_LIMIT_FILES:
        try:
            with open(path) as limit:
                value = limit.read().strip()
        except OSError:
            continue
        # "max" (v2) or a huge number (v1: no limit, rounded down to a page) mean unlimited.
        if value.isdigit() and int(value) < 1 << 50:
            return int(value)
        return None
    return None


def web_processes(env: Mapping[str, str]) -> tuple[int, int]:
    """The web's gunicorn worker processes (WEB_CONCURRENCY) and the threads of each (WEB_THREADS)."""
    return positive_int(env, "WEB_CONCURRENCY", 2), positive_int(env, "WEB_THREADS", 4)


def positive_int(env: Mapping[str, str], name: str, default: int, allow_zero: bool = False) -> int:
    """The whole number `name` holds (> 0, or >= 0 with `allow_zero`), `default` when it is unset; a
    SettingsError naming it when it holds anything else."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from exc
    if value < 0 or (value == 0 and not allow_zero):
        raise SettingsError(f"{name} must be {'0 or more' if allow_zero else 'positive'}, got {value}")
    return value


def _api(env: Mapping[str, str], prefix: str) -> ApiSettings | None:
    url = env.get(f"{prefix}_URL", "").strip()
    token = env.get(f"{prefix}_TOKEN", "").strip()
    if not url and not token:
        return None
    if not re.match(r"^https?://[^\s/]+", url):
        raise SettingsError(f"{prefix}_URL must be an http(s) URL")
    if not token:
        raise SettingsError(f"{prefix}_TOKEN is required when {prefix}_URL is set")
    return ApiSettings(url=url, token=token, rate_limit=_rate(env, f"{prefix}_RATE_LIMIT"))


def _rate(env: Mapping[str, str], name: str) -> float:
    """Requests per second (decimals allowed, e.g. 0.5); unset means no limit."""
    raw = env.get(name, "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number of requests per second, got {raw!r}") from exc
    if not value > 0 or value == float("inf"):
        raise SettingsError(f"{name} must be a positive number of requests per second, got {raw!r}")
    return value


def require_together(env: Mapping[str, str], *names: str) -> bool:
    """Whether the settings `names`, which enable something only together, are all set; one set
    without the others is a mistake, not "off": a SettingsError names what is missing."""
    given = [name for name in names if env.get(name, "").strip()]
    if given and len(given) < len(names):
        missing = " and ".join(name for name in names if name not in given)
        raise SettingsError(f"{missing} is required when {given[0]} is set")
    return bool(given)


def url_setting(env: Mapping[str, str], name: str) -> str:
    """An optional http(s) URL."""
    value = env.get(name, "").strip()
    if value and not re.match(r"^https?://[^\s/]+", value):
        raise SettingsError(f"{name} must be an http(s) URL")
    return value


def flag_setting(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    """An optional true/false setting (true, 1, yes, on; false, 0, no, off)."""
    value = env.get(name, "").strip().lower()
    if value not in ("", "true", "false", "1", "0", "yes", "no", "on", "off"):
        raise SettingsError(f"{name} must be true or false")
    return default if not value else value in ("true", "1", "yes", "on")


def _redis_url(value: str) -> str:
    if not re.match(r"^(rediss?|unix)://", value):
        raise SettingsError("REDIS_URL must start with redis://, rediss:// or unix://")
    return value


def secret_setting(env: Mapping[str, str], name: str, min_length: int = 12) -> str:
    """An optional secret; when set it must be long enough to resist guessing."""
    value = env.get(name, "").strip()
    if value and len(value) < min_length:
        raise SettingsError(f"{name} must be at least {min_length} characters long")
    return value


def _queue_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", value):
        raise SettingsError("QUEUE_NAME may hold only letters, digits, '_' and '-'")
    return value


def _erasure_action(value: str) -> str:
    action = value.strip().lower() or "none"
    if action not in ERASURE_CUSTOMER_ACTIONS:
        raise SettingsError(f"ERASURE_CUSTOMER_ACTION must be one of {', '.join(ERASURE_CUSTOMER_ACTIONS)}")
    return action


def _name_conflict_policy(value: str) -> str:
    policy = value.strip().lower() or "fail"
    if policy not in NAME_CONFLICT_POLICIES:
        raise SettingsError(f"NAME_CONFLICT_POLICY must be one of {', '.join(NAME_CONFLICT_POLICIES)}")
    return policy


def _retention_days(env: Mapping[str, str]) -> int:
    # An audit entry must outlive the deadline it proves was met (or missed).
    days = positive_int(env, "ERASURE_AUDIT_RETENTION_DAYS", 400)
    if days <= positive_int(env, "ERASURE_DEADLINE_DAYS", 30):
        raise SettingsError("ERASURE_AUDIT_RETENTION_DAYS must be longer than ERASURE_DEADLINE_DAYS")
    return days


def _schedule(value: str) -> tuple[int, ...]:
    if not value.strip():
        return DEFAULT_RETRY_SCHEDULE
    try:
        delays = tuple(int(part) for part in value.split(","))
    except ValueError as exc:
        raise SettingsError("RETRY_SCHEDULE must be comma-separated whole seconds, e.g. 5,60,300") from exc
    if any(delay < 0 for delay in delays):
        raise SettingsError("RETRY_SCHEDULE delays must not be negative")
    return delays
