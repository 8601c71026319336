"""Names of crmsync's own Redis keys, in one place so web, worker and tools agree on them."""

from __future__ import annotations

import hashlib

PREFIX = "crmsync"


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def job_id_for(webhook_id: str) -> str:
    """An RQ-safe job id (`[A-Za-z0-9_-]+`) derived from the sender's delivery id, which may hold `.:/`."""
    return _JOB_ID_PREFIX + _hash(webhook_id)[:40]


_JOB_ID_PREFIX = "evt_"
_JOB_ID_HASH_AT = len(_JOB_ID_PREFIX)


def payload_key(job_id: str) -> str:
    """An event job's argument, the event's payload as JSON, kept beside the job's hash and living as
    long as it (crmsync.core.rq_internals.EventJob)."""
    return f"{PREFIX}:payload:{job_id}"


def delivery_key(job_id: str) -> str:
    """Remembers an accepted delivery id for the dedup window (value 1), named by the first 128 bits
    of the hash its job id (`job_id_for`) holds, which are plenty against collisions; one of these is
    kept per event for days. Taken from the job id, the delivery id is hashed once per event."""
    return f"{PREFIX}:delivery:{job_id[_JOB_ID_HASH_AT : _JOB_ID_HASH_AT + 32]}"


def customer_state_key(external_id: str) -> str:
    """Per-customer ordering state: last applied event timestamp, its webhook id, tombstone."""
    return f"{PREFIX}:customer:{_hash(external_id)}"


def customer_lock_key(external_id: str) -> str:
    """Per-customer lock so two workers never apply events for one customer at once."""
    return f"{PREFIX}:lock:{_hash(external_id)}"


def customer_ids_key(external_id: str) -> str:
    """The hash holding the platform id of the customer with this external id (jobs/id_cache.py),
    field: the external id. The ids are spread over 4,096 hashes of a few dozen fields each, which
    Redis keeps as compact listpacks: ~70 B an entry, against ~250 B as a key of its own."""
    return f"{PREFIX}:platform-ids:{_hash(external_id)[:3]}"


def erasure_steps_key(webhook_id: str) -> str:
    """The purchase ids an erasure has already anonymised, so retries resume where they stopped."""
    return f"{PREFIX}:erasure:{_hash(webhook_id)}:done"


def customer_alias_key(external_id: str) -> str:
    """Where a merged-away external id now lives (hash: `survivor`, the merge's `version`, `kept` when
    its customer was re-keyed to the survivor), so its later events reach the survivor."""
    return f"{PREFIX}:alias:{_hash(external_id)}"


def merge_steps_key(webhook_id: str) -> str:
    """Which merged id a merge re-keyed to its survivor, written before the call, so a retry after a
    lost answer still knows which customer the survivor's record came from."""
    return f"{PREFIX}:merge:{_hash(webhook_id)}:rekeyed"


def customer_jobs_key(external_id: str) -> str:
    """The ids of the jobs accepted for one customer, so an erasure finds them without a scan."""
    return f"{PREFIX}:customer-jobs:{_hash(external_id)}"


# The erasure audit trail: one stream for all erasures, identifiers and outcomes only.
ERASURE_AUDIT_KEY = f"{PREFIX}:erasures"


# -- one platform API's shared request rate (jobs/rate_limit.py) ----------------------------------------


def api_turn_key(api: str) -> str:
    """When the next request to `api` may be sent (µs, Redis's clock), shared by every worker."""
    return f"{PREFIX}:api:{api}:next-turn"


def api_pause_key(api: str) -> str:
    """Exists while every call to `api` is paused after a 429 (expires with its Retry-After)."""
    return f"{PREFIX}:api:{api}:paused"


# The turn key outlives the turn it holds by this much (ms), so an idle API leaves nothing behind.
API_TURN_TTL_MARGIN_MS = 1000


# -- TTLs (seconds) -------------------------------------------------------------------------------

# Defaults of the settings DEDUP_TTL_SECONDS (a delivery id is remembered; above CRMs' retry windows)
# and LEDGER_TTL_SECONDS (per-customer ordering state, after its last change).
DEFAULT_DEDUP_TTL_SECONDS = 72 * 3600
DEFAULT_LEDGER_TTL_SECONDS = 30 * 86_400

# A hash of cached platform ids lives this long after its last write; a stale id costs a lookup only.
CUSTOMER_ID_TTL_SECONDS = 30 * 86_400
# A merge's steps are remembered as long as an erasure's, well past any retry schedule.
MERGE_STEPS_TTL_SECONDS = 35 * 86_400
# Erasure steps are remembered well past the longest retry schedule, so a replay does not redo them.
ERASURE_STEPS_TTL_SECONDS = 35 * 86_400
# The customer's job index: longer than a failed job is kept (JOB_FAILURE_TTL) plus its retries. A
# queued job's payload expires after as long (crmsync.core.rq_internals.EventJob).
CUSTOMER_JOBS_TTL_SECONDS = 62 * 86_400
# RQ keeps a finished job a day, a failed one 30 days (for replay or discard).
JOB_RESULT_TTL_SECONDS = 86_400
JOB_FAILURE_TTL_SECONDS = 30 * 86_400


# -- per-minute counters of webhooks and job outcomes (the dashboard's overview and chart, /metrics) --

# Three hours: the overview's two-hour chart is always whole, whatever the clock skew between processes.
MINUTE_COUNTER_TTL = 3 * 3600


def minute_counter_key(outcome: str, minute: int) -> str:
    """Deliveries with `outcome` in one minute (unix time // 60)."""
    return f"{PREFIX}:webhooks:{outcome}:{minute}"


def job_minute_counter_key(outcome: str, minute: int) -> str:
    """Job attempts that ended with `outcome` (succeeded, stale, retried, failed) in one minute."""
    return f"{PREFIX}:jobs:{outcome}:{minute}"


# -- native CRM sources' items (webhooks/sources): ignored ones counted, rejected ones kept -----------

# Counters of ignored and rejected items per source (hash field "source|outcome|type"), for /metrics and
# the dashboard; refreshed on every write, so only a source silent for a year loses its totals.
SOURCE_ITEMS_KEY = f"{PREFIX}:metrics:source_items"
SOURCE_ITEMS_TTL_SECONDS = 365 * 86_400
# The last rejected items (reason and identifiers, never values), for the dashboard and the CLI.
REJECTED_ITEMS_KEY = f"{PREFIX}:sources:rejected"
REJECTED_ITEMS_KEPT = 1_000
REJECTED_ITEMS_TTL_SECONDS = 30 * 86_400


# -- job metrics, kept in Redis for the web's /metrics (crmsync.core.counters) -------------------------

JOB_OUTCOMES_KEY = f"{PREFIX}:metrics:jobs"
JOB_DURATIONS_KEY = f"{PREFIX}:metrics:job_duration"
# Freshness: from an event's enqueue (its webhook's 2xx) to the answer of the write that applied it.
FRESHNESS_KEY = f"{PREFIX}:metrics:freshness"
OPERATOR_ACTIONS_KEY = f"{PREFIX}:metrics:operator"

# -- operators' records of replays and discards (crmsync.operations) --------------------------------

DISCARDED_KEY = f"{PREFIX}:discarded"
REPLAYED_KEY = f"{PREFIX}:replayed"
# How many replay and discard records are kept.
KEEP_OPERATOR_RECORDS = 10_000

# -- reconcile reports (crmsync.operations.reconcile_reports) -----------------------------------

# One JSON string per run, kept for RECONCILE_REPORT_RETENTION_DAYS, and an index of the runs by
# start time (a sorted set).
RECONCILE_REPORTS_KEY = f"{PREFIX}:reconcile:reports"


def reconcile_report_key(run_id: str) -> str:
    """One reconcile run's report (counts and external ids, no customer data)."""
    return f"{PREFIX}:reconcile:report:{run_id}"
