"""Failed jobs, for operators: list them (filtered, paged), replay them, discard them.

One module behind both the dashboard (pages and JSON API) and the `crmsync failed | replay | discard`
commands. What leaves it is identifiers, failure classes and redacted messages only: a job's
arguments hold the customer's personal data, and are read here only to redact messages once more.

A replay gets a fresh retry budget and runs `apply_event` again, so the ordering rules apply (an
event superseded meanwhile ends as "stale"). Each replay is a new attempt, never deduplicated away:
the attempts so far move to `earlier_attempts` followed by a "replay" entry, so the retry schedule
starts over from its first delay. A discard removes the job and keeps a record (identifiers and the
operator's reason) in the `crmsync:discarded` stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq.exceptions import DeserializationError
from rq.job import Job
from rq.queue import Queue
from rq.serializers import JSONSerializer

from crmsync.core import rq_internals
from crmsync.core.counters import record_operator_action
from crmsync.core.events import Event
from crmsync.core.keys import DISCARDED_KEY, KEEP_OPERATOR_RECORDS, REPLAYED_KEY
from crmsync.core.queue import EventJob, app_queue
from crmsync.core.redaction import redact
from crmsync.core.settings import Settings

from .time_filters import FailureFilter
from .tracebacks import exception_class
from .views import ActionResult, FailedJob, FailedPage, ReplayedJob

__all__ = ["FailedJobs", "MissingReason"]

log = logging.getLogger("crmsync.operations")

MAX_MESSAGE = 300
MAX_REASON = 500


class MissingReason(ValueError):
    """A discard needs a reason, so the record says why the event was dropped."""


@dataclass
class FailedJobs:
    """The failed registry of the app's queue, seen and acted on by operators."""

    redis: Redis
    settings: Settings
    queue: Queue = field(init=False)

    def __post_init__(self) -> None:
        self.queue = app_queue(self.redis, self.settings.queue_name)

    # -- reading ---------------------------------------------------------------------------------

    def find(self, where: FailureFilter | None = None, page: int = 1, per_page: int = 50) -> FailedPage:
        """The failed jobs matching `where`, newest failure first, one page at a time."""
        matching = self._matching(where or FailureFilter())
        page = max(1, page)
        start = (page - 1) * per_page
        items = [self._detailed(job) for job in matching[start : start + per_page]]
        return FailedPage(items=items, total=len(matching), page=page, per_page=per_page)

    def matching_ids(self, where: FailureFilter) -> list[str]:
        return [job.job_id for job in self._matching(where)]

    def get(self, job_id: str) -> FailedJob | None:
        """One failed job, or None when it is not (or no longer) in the failed registry."""
        if self.redis.zscore(self.queue.failed_job_registry.key, job_id) is None:
            return None
        (summary,) = self._summaries([job_id])
        return self._detailed(summary) if summary else None

    def history(self, job_id: str) -> list[dict[str, str]]:
        """Every attempt and replay of a job, oldest first, messages redacted; [] for an unknown job."""
        job = self._fetch(job_id)
        if job is None:
            return []
        values = _personal_values(job)
        return [
            {
                "at": str(attempt.get("at", "")),
                "class": str(attempt.get("class", "")),
                "message": redact(str(attempt.get("message", "")), values)[:MAX_MESSAGE],
            }
            for attempt in [*job.meta.get("earlier_attempts", []), *job.meta.get("attempts", [])]
        ]

    def _matching(self, where: FailureFilter) -> list[FailedJob]:
        job_ids = self.queue.failed_job_registry.get_job_ids()
        jobs = [job for job in self._summaries(job_ids) if job is not None and where.matches(job)]
        epoch = datetime.min.replace(tzinfo=UTC)
        return sorted(jobs, key=lambda job: (job.last_failed_at or epoch, job.job_id), reverse=True)

    def _summaries(self, job_ids: list[str]) -> list[FailedJob | None]:
        """Summaries from the jobs' meta, in one pipelined read that leaves their arguments alone."""
        rows = rq_internals.read_meta_and_end(self.redis, job_ids)
        return [_summary(job_id, meta, ended) for job_id, (meta, ended) in zip(job_ids, rows, strict=True)]

    def _detailed(self, summary: FailedJob) -> FailedJob:
        """Redact the message once more with the event's own values, and name unclassified failures."""
        job = self._fetch(summary.job_id)
        if job is None:
            return summary
        message = redact(summary.message, _personal_values(job))[:MAX_MESSAGE]
        failure_class = summary.failure_class
        if failure_class == "unknown":
            result = job.latest_result()
            failure_class = exception_class(result.exc_string if result else None)
        return FailedJob(**{**asdict(summary), "message": message, "failure_class": failure_class})

    def recent_replays(self, count: int = 50) -> list[ReplayedJob]:
        """The latest replays, newest first, with each job's status and outcome now."""
        entries: list[tuple[bytes, float]] = self.redis.zrevrange(  # type: ignore[assignment]
            REPLAYED_KEY, 0, count - 1, withscores=True
        )
        replayed = []
        for raw_id, at in entries:
            job = self._fetch(raw_id.decode())
            if job is None:
                continue
            result = job.return_value()
            replayed.append(
                ReplayedJob(
                    job_id=job.id,
                    type=str(job.meta.get("type", "")),
                    external_id=str(job.meta.get("external_id", "")),
                    replayed_at=datetime.fromtimestamp(float(at), UTC),
                    replays=int(job.meta.get("replays", 0)),
                    status=str(job.get_status().value),
                    outcome=result.get("outcome") if isinstance(result, dict) else None,
                    failure_class=job.meta.get("failure_class") if job.is_failed else None,
                )
            )
        return replayed

    def recent_discards(self, count: int = 50) -> list[dict[str, str]]:
        """The latest discard records, newest first."""
        entries: list[tuple[bytes, dict[bytes, bytes]]] = self.redis.xrevrange(  # type: ignore[assignment]
            DISCARDED_KEY, count=count
        )
        return [{name.decode(): value.decode() for name, value in fields.items()} for _, fields in entries]

    # -- acting ----------------------------------------------------------------------------------

    def replay(self, job_ids: Iterable[str], actor: str) -> list[ActionResult]:
        """Put each failed job back on the queue with a fresh retry budget."""
        return [self._replay_one(job_id, actor) for job_id in job_ids]

    def replay_matching(self, where: FailureFilter, actor: str) -> list[ActionResult]:
        return self.replay(self.matching_ids(where), actor)

    def discard(self, job_ids: Iterable[str], reason: str, actor: str) -> list[ActionResult]:
        """Drop failed jobs for good, keeping a record of identifiers and `reason`."""
        reason = reason.strip()[:MAX_REASON]
        if not reason:
            raise MissingReason("a discard needs a reason")
        return [self._discard_one(job_id, reason, actor) for job_id in job_ids]

    def _replay_one(self, job_id: str, actor: str) -> ActionResult:
        registry_key = self.queue.failed_job_registry.key
        outcome = ActionResult(job_id, "replayed")

        def requeue(pipe: Pipeline) -> None:
            nonlocal outcome
            # Claimed under WATCH: of two concurrent replays (or a replay and a discard) one wins.
            if pipe.zscore(registry_key, job_id) is None:
                outcome = ActionResult(job_id, "not_failed")
                return
            job = self._fetch(job_id)
            if job is None:
                outcome = ActionResult(job_id, "missing")
                return
            _start_over(job, actor, self.settings.retry_schedule)
            pipe.multi()
            pipe.zrem(registry_key, job_id)
            self.queue.enqueue_job(job, pipeline=pipe)
            rq_internals.wait_as_new(pipe, job_id, job.meta.get("external_id"))
            pipe.zadd(REPLAYED_KEY, {job_id: time.time()})
            pipe.zremrangebyrank(REPLAYED_KEY, 0, -KEEP_OPERATOR_RECORDS - 1)

        self.redis.transaction(requeue, registry_key)
        if outcome.status == "replayed":
            job_type = str(self._fetch_meta(job_id).get("type", "unknown"))
            record_operator_action(self.redis, "replayed", job_type)
            log.info("job replayed", extra={"event": "job_replayed", "job_id": job_id, "type": job_type})
        return outcome

    def _discard_one(self, job_id: str, reason: str, actor: str) -> ActionResult:
        registry_key = self.queue.failed_job_registry.key
        outcome = ActionResult(job_id, "discarded")
        job_type = "unknown"

        def drop(pipe: Pipeline) -> None:
            nonlocal outcome, job_type
            if pipe.zscore(registry_key, job_id) is None:
                outcome = ActionResult(job_id, "not_failed")
                return
            (summary,) = self._summaries([job_id])
            job = self._fetch(job_id)
            if summary is None or job is None:
                outcome = ActionResult(job_id, "missing")
                pipe.multi()
                pipe.zrem(registry_key, job_id)
                return
            job_type = summary.type
            record: dict[Any, Any] = {
                "job_id": job_id,
                "webhook_id": summary.webhook_id,
                "type": summary.type,
                "external_id": summary.external_id,
                "failure_class": summary.failure_class,
                "reason": reason,
                "by": actor,
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            pipe.multi()
            pipe.zrem(registry_key, job_id)
            pipe.xadd(DISCARDED_KEY, record, maxlen=KEEP_OPERATOR_RECORDS, approximate=True)
            job.delete(pipeline=pipe, remove_from_queue=False)

        self.redis.transaction(drop, registry_key)
        if outcome.status == "discarded":
            record_operator_action(self.redis, "discarded", job_type)
            log.info("job discarded", extra={"event": "job_discarded", "job_id": job_id, "type": job_type})
        return outcome

    def _fetch(self, job_id: str) -> Job | None:
        (job,) = EventJob.fetch_many([job_id], connection=self.redis, serializer=JSONSerializer)
        return job

    def _fetch_meta(self, job_id: str) -> dict[str, Any]:
        return rq_internals.read_meta(self.redis, job_id)


def _start_over(job: Job, actor: str, schedule: tuple[int, ...]) -> None:
    """A fresh retry budget and schedule, with this replay recorded as an attempt of its own."""
    replays = int(job.meta.get("replays", 0)) + 1
    replay = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "class": "replay",
        "message": f"replay {replays} by {actor}",
    }
    # The retry delay is chosen by the number of failures in `attempts`: starting a new list makes
    # the replayed job's retries follow the schedule from its first delay again.
    earlier = [*job.meta.get("earlier_attempts", []), *job.meta.get("attempts", [])]
    job.meta["earlier_attempts"] = [*earlier, replay]
    job.meta["attempts"] = []
    job.meta["replays"] = replays
    job.retries_left = len(schedule) or None
    job.retry_intervals = list(schedule) or None
    job.started_at = None
    job.ended_at = None


def _summary(job_id: str, meta: dict[str, Any] | None, ended: datetime | None) -> FailedJob | None:
    if meta is None:
        return None  # The job hash expired; the registry entry is left for RQ's cleanup.
    failures = [
        attempt
        for attempt in [*meta.get("earlier_attempts", []), *meta.get("attempts", [])]
        if attempt.get("class") != "replay"
    ]
    times = [_moment(attempt.get("at")) for attempt in failures]
    known = [moment for moment in times if moment is not None]
    return FailedJob(
        job_id=job_id,
        webhook_id=str(meta.get("webhook_id", "")),
        type=str(meta.get("type", "unknown")),
        external_id=str(meta.get("external_id", "")),
        failure_class=str(meta.get("failure_class") or "unknown"),
        message=str(failures[-1].get("message", "")) if failures else "",
        attempts=len(failures),
        replays=int(meta.get("replays", 0)),
        first_failed_at=known[0] if known else ended,
        # A failure that never reached apply_event's handler (timeout, lost worker) has no attempt entry.
        last_failed_at=max([*known, ended]) if ended else (known[-1] if known else None),
        coalesced=tuple(str(webhook_id) for webhook_id in meta.get("coalesced", [])),
    )


def _moment(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _personal_values(job: Job) -> list[str]:
    try:
        return Event.from_payload(job.args[0]).personal_values()
    except (DeserializationError, IndexError, KeyError, TypeError):
        return []
