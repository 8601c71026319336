"""Reconcile reports: what each run found and did, kept in Redis for RECONCILE_REPORT_RETENTION_DAYS.

A report holds counts, external ids per kind, the names of the fields an update changes, skipped
lines with their reasons, when and from which source — never a customer's values. `crmsync reconcile
--history`, the dashboard's Reconcile page and `/metrics` (the last run's drift) all read them here.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from redis import Redis

from crmsync.core.keys import RECONCILE_REPORTS_KEY, reconcile_report_key

from .reconcile_plan import ReconcilePlan

__all__ = ["ReconcileReport", "ReconcileReports", "KINDS", "STORED_IDS_PER_KIND"]

KINDS = ("create", "update", "delete")
# A report keeps at most this many external ids per kind (the counts stay exact), so one run against
# a very different export cannot fill Redis; the command's own output lists them all.
STORED_IDS_PER_KIND = 1000


@dataclass
class ReconcileReport:
    """One reconcile run. `outcome`: `planned` (a dry run), `applied` (queued), or `refused`."""

    run_id: str
    started_at: str
    finished_at: str
    source: str
    object: str
    export: str
    outcome: str
    counts: dict[str, int]
    external_ids: dict[str, list[str]]
    updated_fields: dict[str, list[str]]
    skipped_records: list[dict[str, Any]]
    max_deletes: int | None = None
    refused: str = ""
    queued: int = 0
    pages: int = 0
    truncated: bool = False
    job_ids: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, plan: ReconcilePlan, **run: Any) -> ReconcileReport:
        """A report of `plan` with the run's details (run_id, times, source, object, export, outcome...)."""
        external_ids = {
            "create": plan.create,
            "update": list(plan.update),
            "delete": plan.delete,
            "not_in_export": plan.not_in_export,
            "skipped": [item.external_id for item in plan.skipped.kept if item.external_id],
        }
        return cls(
            counts=plan.counts(),
            external_ids=external_ids,
            updated_fields=dict(plan.update),
            skipped_records=plan.skipped.to_json(),
            **run,
        )

    @property
    def drift(self) -> int:
        return sum(self.counts.get(kind, 0) for kind in KINDS)

    def to_json(self) -> dict[str, Any]:
        """The report as plain data, every id included (the command's --json output): the counts at
        the top level (`{"create": n, "update": n, ...}`), then the run's details and the ids."""
        return {**self.counts, **asdict(self)}

    def stored(self) -> dict[str, Any]:
        """The report as kept in Redis: at most STORED_IDS_PER_KIND ids per kind, no job ids."""
        data = self.to_json()
        data.pop("job_ids")
        limit = STORED_IDS_PER_KIND
        truncated = (
            any(len(ids) > limit for ids in self.external_ids.values()) or len(self.skipped_records) > limit
        )
        data["external_ids"] = {kind: ids[:limit] for kind, ids in self.external_ids.items()}
        data["updated_fields"] = dict(list(self.updated_fields.items())[:limit])
        data["skipped_records"] = self.skipped_records[:limit]
        data["truncated"] = truncated
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReconcileReport:
        names = cls.__dataclass_fields__
        return cls(**{name: value for name, value in data.items() if name in names})


class ReconcileReports:
    """The reports in Redis, newest first."""

    def __init__(self, redis: Redis, retention_days: int) -> None:
        self._redis = redis
        self._ttl = retention_days * 86_400

    def save(self, report: ReconcileReport) -> None:
        """Keep `report` for the retention period, and forget the index entries that outlived theirs."""
        now = time.time()
        with self._redis.pipeline() as pipe:
            pipe.set(reconcile_report_key(report.run_id), json.dumps(report.stored()), ex=self._ttl)
            pipe.zadd(RECONCILE_REPORTS_KEY, {report.run_id: now})
            pipe.zremrangebyscore(RECONCILE_REPORTS_KEY, "-inf", now - self._ttl)
            pipe.expire(RECONCILE_REPORTS_KEY, self._ttl)
            pipe.execute()

    def recent(self, limit: int = 50) -> list[ReconcileReport]:
        """The latest `limit` reports, newest first."""
        run_ids = [
            _text(run_id)
            for run_id in cast(list[bytes], self._redis.zrevrange(RECONCILE_REPORTS_KEY, 0, limit - 1))
        ]
        if not run_ids:
            return []
        found = self._redis.mget([reconcile_report_key(run_id) for run_id in run_ids])
        return [ReconcileReport.from_json(json.loads(raw)) for raw in found if raw is not None]

    def latest(self) -> ReconcileReport | None:
        """The newest report, if one is still kept."""
        reports = self.recent(limit=1)
        return reports[0] if reports else None

    def get(self, run_id: str) -> ReconcileReport | None:
        raw = self._redis.get(reconcile_report_key(run_id))
        return None if raw is None else ReconcileReport.from_json(json.loads(raw))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
