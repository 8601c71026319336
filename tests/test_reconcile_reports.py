"""Reconcile reports in Redis, as the dashboard's Reconcile page, its API and `/metrics` show them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import requests
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from crmsync.core.keys import RECONCILE_REPORTS_KEY, reconcile_report_key
from crmsync.operations.exports import ExportLine
from crmsync.operations.reconcile_plan import PlatformIndex, ReconcilePlan, plan_reconcile
from crmsync.operations.reconcile_reports import STORED_IDS_PER_KIND, ReconcileReport, ReconcileReports
from crmsync.operations.records import StandardMapping, map_records
from tests.support import AUTH

NAME = "Orbital Freight"


def planned() -> ReconcilePlan:
    """A plan with one of each kind: create crm-new, update crm-upd (name), delete crm-gone, one skipped."""
    index = PlatformIndex()
    for external_id in ("crm-same", "crm-upd", "crm-gone"):
        index.add({"externalId": external_id, "name": external_id, "description": "", "labels": []})
    lines = [
        ExportLine(2, {"external_id": "crm-same", "name": "crm-same"}),
        ExportLine(3, {"external_id": "crm-upd", "name": NAME}),
        ExportLine(4, {"external_id": "crm-new", "name": "New"}),
        ExportLine(5, error="not valid JSON (Expecting value)"),
    ]
    return plan_reconcile(index, map_records(lines, StandardMapping()), delete_missing=True)


def save(redis: Redis, run_id: str, outcome: str = "planned", refused: str = "") -> ReconcileReport:
    report = ReconcileReport.of(
        planned(),
        run_id=run_id,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        source="standard",
        object="",
        export="export.ndjson",
        outcome=outcome,
        refused=refused,
        max_deletes=0,
        pages=1,
    )
    ReconcileReports(redis, 30).save(report)
    return report


def test_the_reconcile_page_lists_the_runs_newest_first_and_flags_a_refused_one(
    dashboard: str, redis: Redis
) -> None:
    save(redis, "20261123T100000Z-aaaaaa")
    save(redis, "20261123T110000Z-bbbbbb", "refused", "1 line(s) of the export could not be read")
    page = requests.get(f"{dashboard}/reconcile", auth=AUTH, timeout=5)
    assert page.status_code == 200
    html = page.text
    assert html.index("20261123T110000Z-bbbbbb") < html.index("20261123T100000Z-aaaaaa")
    assert "⚠ refused" in html and 'class="refused needs-action"' in html
    assert '<td class="count create">1</td>' in html and '<td class="count update">1</td>' in html
    assert NAME not in html


def test_a_run_page_names_the_ids_and_the_fields_never_the_values(dashboard: str, redis: Redis) -> None:
    save(redis, "20261123T100000Z-aaaaaa", "refused", "1 line(s) of the export could not be read")
    page = requests.get(f"{dashboard}/reconcile/20261123T100000Z-aaaaaa", auth=AUTH, timeout=5)
    assert page.status_code == 200
    assert "Refused: 1 line(s) of the export could not be read" in page.text
    for text in ("crm-new", "crm-upd</td><td>name</td>", "crm-gone", "not valid JSON (Expecting value)"):
        assert text in page.text
    assert NAME not in page.text
    assert requests.get(f"{dashboard}/reconcile/nope", auth=AUTH, timeout=5).status_code == 404


def test_the_reconcile_api_returns_the_reports(dashboard: str, redis: Redis) -> None:
    save(redis, "20261123T100000Z-aaaaaa")
    reports = requests.get(f"{dashboard}/api/reconcile", auth=AUTH, timeout=5).json()["reports"]
    assert [(r["run_id"], r["create"], r["update"], r["delete"], r["skipped"]) for r in reports] == [
        ("20261123T100000Z-aaaaaa", 1, 1, 1, 1)
    ]


def test_metrics_carry_the_last_runs_drift(dashboard: str, redis: Redis) -> None:
    base_url = dashboard.removesuffix("/dashboard")
    body = requests.get(f"{base_url}/metrics", timeout=5).text
    assert "crmsync_reconcile_last_run_drift" not in body  # no run yet
    save(redis, "20261123T100000Z-aaaaaa", "refused", "too many")
    samples = {
        (sample.name, sample.labels.get("kind", "")): sample.value
        for family in text_string_to_metric_families(requests.get(f"{base_url}/metrics", timeout=5).text)
        for sample in family.samples
    }
    assert [
        samples[("crmsync_reconcile_last_run_drift", kind)] for kind in ("create", "update", "delete")
    ] == [1, 1, 1]
    assert samples[("crmsync_reconcile_last_run_skipped", "")] == 1
    assert samples[("crmsync_reconcile_last_run_refused", "")] == 1
    assert samples[("crmsync_reconcile_last_run_timestamp_seconds", "")] > 0


def test_a_stored_report_keeps_at_most_so_many_ids_per_kind_with_exact_counts(redis: Redis) -> None:
    plan = ReconcilePlan(create=[f"crm-{n}" for n in range(STORED_IDS_PER_KIND + 5)])
    report = ReconcileReport.of(
        plan,
        run_id="r1",
        started_at="",
        finished_at="",
        source="standard",
        object="",
        export="e.csv",
        outcome="planned",
    )
    ReconcileReports(redis, 30).save(report)
    stored = json.loads(redis.get(reconcile_report_key("r1")) or b"{}")
    assert (len(stored["external_ids"]["create"]), stored["create"], stored["truncated"]) == (
        1000,
        1005,
        True,
    )
    assert len(report.to_json()["external_ids"]["create"]) == 1005  # the command's own output lists them all


def test_reports_older_than_the_retention_leave_the_index(redis: Redis) -> None:
    redis.zadd(RECONCILE_REPORTS_KEY, {"ancient": 1.0})
    save(redis, "20261123T100000Z-aaaaaa")
    assert redis.zrange(RECONCILE_REPORTS_KEY, 0, -1) == [b"20261123T100000Z-aaaaaa"]
