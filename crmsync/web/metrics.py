"""`GET /metrics` in Prometheus's text format: the web's own counters, and what the workers left in Redis.

Web-side counters (webhooks received: webhooks/metrics.py) live in prometheus-client. Under gunicorn,
whose workers are separate processes, they use its multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set up
by crmsync/server/gunicorn_conf.py), so every scrape sums all of them; elsewhere (tests, `flask run`) a
plain registry. Workers run where nothing can scrape them, so their figures are kept in Redis
(crmsync/core/counters.py) and read here, together with the queue's gauges and the erasure audit trail's
counts and the last reconcile run's drift, at scrape time.
Labels are event types and fixed codes only, never customer data.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Collection, Iterator
from datetime import datetime

from flask import Blueprint, Response, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from redis import Redis
from redis.exceptions import RedisError

from crmsync.core.counters import read_job_figures, read_source_items
from crmsync.core.keys import ERASURE_AUDIT_KEY
from crmsync.core.settings import Settings
from crmsync.erasure.audit import erasure_summary
from crmsync.operations.activity import read_snapshot
from crmsync.operations.reconcile_reports import KINDS, ReconcileReport, ReconcileReports
from webhooks.errors import error_response
from webhooks.metrics import WEB_REGISTRY
from webhooks.sources.registry import NAMES

__all__ = ["bp", "QueueCollector", "SourcesCollector", "render_metrics"]

bp = Blueprint("metrics", __name__)

# The erasure counts fold the whole audit stream (crmsync/erasure/audit.py reads it in pages of 500), so
# a scrape reads it only while it holds at most this many entries: at 5-10 entries per erasure, some
# 1,000-2,000 erasures within ERASURE_AUDIT_RETENTION_DAYS, where a handful a month is expected. Past
# it crmsync_erasures is left out (alert on its absence) and crmsync_erasure_audit_entries, an O(1)
# XLEN, says why; `crmsync erasures` and the dashboard still list every erasure.
ERASURE_SCAN_LIMIT = 10_000


class QueueCollector:
    """Reads the queue's gauges, the workers' job figures and the erasure counts from Redis at each scrape."""

    def __init__(self, redis: Redis, queue_name: str, erasure_deadline_days: int) -> None:
        self._redis = redis
        self._queue_name = queue_name
        self._erasure_deadline_days = erasure_deadline_days

    def collect(self) -> Iterator[Metric]:
        try:
            snapshot = read_snapshot(self._redis, self._queue_name)
            figures = read_job_figures(self._redis)
            source_items = read_source_items(self._redis)
            audit_entries = int(self._redis.xlen(ERASURE_AUDIT_KEY))
            erasures = (
                erasure_summary(self._redis, self._erasure_deadline_days)
                if audit_entries <= ERASURE_SCAN_LIMIT
                else None
            )
        except RedisError:
            yield GaugeMetricFamily("crmsync_redis_up", "Whether Redis answered this scrape.", value=0)
            return
        yield GaugeMetricFamily("crmsync_redis_up", "Whether Redis answered this scrape.", value=1)
        yield GaugeMetricFamily("crmsync_queue_depth", "Jobs waiting in the queue.", value=snapshot.queued)
        yield GaugeMetricFamily(
            "crmsync_scheduled_retries", "Failed attempts waiting for their retry.", value=snapshot.scheduled
        )
        yield GaugeMetricFamily(
            "crmsync_failed_jobs", "Jobs in the failed registry (replay or discard).", value=snapshot.failed
        )
        yield GaugeMetricFamily(
            "crmsync_workers_alive", "Workers with a live heartbeat.", value=snapshot.workers_alive
        )
        yield GaugeMetricFamily(
            "crmsync_oldest_queued_job_age_seconds",
            "How long the job at the head of the queue has waited (0 when empty).",
            value=snapshot.oldest_queued_age_seconds,
        )
        jobs = CounterMetricFamily(
            "crmsync_jobs", "Job attempts by event type and outcome.", labels=["type", "outcome"]
        )
        for (event_type, outcome), count in sorted(figures.outcomes.items()):
            jobs.add_metric([event_type, outcome], count)
        yield jobs
        actions = CounterMetricFamily(
            "crmsync_operator_actions", "Failed jobs replayed or discarded.", labels=["type", "action"]
        )
        for (event_type, action), count in sorted(figures.operator_actions.items()):
            actions.add_metric([event_type, action], count)
        yield actions
        durations = HistogramMetricFamily(
            "crmsync_job_duration_seconds", "How long applying an event took.", labels=["type"]
        )
        for event_type, (buckets, total) in sorted(figures.durations.items()):
            durations.add_metric([event_type], buckets, total)
        yield durations
        freshness = HistogramMetricFamily(
            "crmsync_event_freshness_seconds",
            "From an event's acceptance (its webhook's 2xx) to the answer of the write that applied it.",
        )
        freshness.add_metric([], *figures.freshness)
        yield freshness
        yield from _erasure_metrics(audit_entries, erasures)
        items = CounterMetricFamily(
            "crmsync_source_items",
            "Items of CRM requests not queued: ignored (not mapped) by type, rejected (unusable).",
            labels=["source", "outcome", "type"],
        )
        for (source, outcome, item_type), count in sorted(source_items.items()):
            items.add_metric([source, outcome, item_type], count)
        yield items


def _erasure_metrics(audit_entries: int, counts: dict[str, int] | None) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "crmsync_erasure_audit_entries", "Entries in the erasure audit stream.", value=audit_entries
    )
    if counts is None:
        return
    erasures = GaugeMetricFamily(
        "crmsync_erasures",
        "GDPR erasures in the audit trail by status; overdue ones (not completed by the deadline) are "
        "also counted as pending or failed.",
        labels=["status"],
    )
    for status, count in counts.items():
        erasures.add_metric([status], count)
    yield erasures


class ReconcileCollector:
    """The last `crmsync reconcile` run's drift, from its report in Redis (nothing before the first)."""

    def __init__(self, reports: ReconcileReports) -> None:
        self._reports = reports

    def collect(self) -> Iterator[Metric]:
        try:
            report = self._reports.latest()
        except RedisError:
            return  # crmsync_redis_up (QueueCollector) already says so.
        if report is not None:
            yield from _reconcile_metrics(report)


def _reconcile_metrics(report: ReconcileReport) -> Iterator[Metric]:
    drift = GaugeMetricFamily(
        "crmsync_reconcile_last_run_drift",
        "Changes the last reconcile run planned, by kind (create, update, delete).",
        labels=["kind"],
    )
    for kind in KINDS:
        drift.add_metric([kind], report.counts.get(kind, 0))
    yield drift
    yield GaugeMetricFamily(
        "crmsync_reconcile_last_run_skipped", "Export records the last reconcile run skipped.",
        value=report.counts.get("skipped", 0),
    )  # fmt: skip
    yield GaugeMetricFamily(
        "crmsync_reconcile_last_run_refused", "1 when the last reconcile run was refused (deletions).",
        value=1 if report.refused else 0,
    )  # fmt: skip
    yield GaugeMetricFamily(
        "crmsync_reconcile_last_run_timestamp_seconds", "When the last reconcile run started (unix time).",
        value=datetime.fromisoformat(report.started_at).timestamp(),
    )  # fmt: skip


class SourcesCollector:
    """Which webhook sources this web serves: each of the registry's (1 or 0) and each declared one."""

    def __init__(self, served: Collection[str]) -> None:
        self._served = served

    def collect(self) -> Iterator[Metric]:
        enabled = GaugeMetricFamily(
            "crmsync_source_enabled", "1 when the web serves POST /webhooks/<source>.", labels=["source"]
        )
        for name in dict.fromkeys([*NAMES, *self._served]):
            enabled.add_metric([name], 1 if name in self._served else 0)
        yield enabled


def render_metrics(redis: Redis, settings: Settings, served: Collection[str] = ()) -> bytes:
    """Every metric, in Prometheus's text format; `served` are the sources the web serves."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(WEB_REGISTRY)
    registry.register(QueueCollector(redis, settings.queue_name, settings.erasure_deadline_days))
    registry.register(ReconcileCollector(ReconcileReports(redis, settings.reconcile_report_retention_days)))
    registry.register(SourcesCollector(served))
    return generate_latest(registry)


@bp.get("/metrics")
def metrics() -> Response | tuple[Response, int]:
    """Prometheus scrape endpoint; with METRICS_TOKEN set, it wants `Authorization: Bearer <token>`."""
    settings = current_app.config["CRMSYNC_SETTINGS"]
    if settings.metrics_token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(given, settings.metrics_token.encode()):
            return error_response(401, "unauthorized", "A valid metrics token is required.")
    served = list(current_app.extensions["crmsync_sources"])
    body = render_metrics(current_app.extensions["crmsync_redis"], settings, served)
    return Response(body, content_type=CONTENT_TYPE_LATEST)
