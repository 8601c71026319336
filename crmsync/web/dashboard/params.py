"""What the pages and the JSON API read from a request: the failure filter, the erasure status
filter and the acting operator."""

from __future__ import annotations

from collections.abc import Mapping

from flask import current_app, g

from crmsync.erasure.audit import ErasureRecord, list_erasures
from crmsync.operations import FailedJobs, FailureFilter, parse_moment
from crmsync.operations.erasures import ERASURE_STATUSES
from crmsync.operations.reconcile_reports import ReconcileReports

__all__ = [
    "BadFilter",
    "failure_filter",
    "filter_args",
    "failed_jobs",
    "operator",
    "erasure_status",
    "erasure_records",
]

FILTER_FIELDS = ("type", "failure_class", "external_id", "since", "until")


class BadFilter(ValueError):
    """A filter value could not be read; the message names the field."""


def failure_filter(args: Mapping[str, str]) -> FailureFilter:
    """The filter in query or form fields; `since`/`until` take a time or a time ago (`2h`, `7d`)."""
    moments = {}
    for name in ("since", "until"):
        value = (args.get(name) or "").strip()
        try:
            moments[name] = parse_moment(value) if value else None
        except ValueError as exc:
            raise BadFilter(f"{name}: use a time like 2026-11-22T10:00:00Z or a time ago like 2h") from exc
    return FailureFilter(
        type=(args.get("type") or "").strip() or None,
        failure_class=(args.get("failure_class") or "").strip() or None,
        external_id=(args.get("external_id") or "").strip() or None,
        **moments,
    )


def filter_args(args: Mapping[str, str]) -> dict[str, str]:
    """The filter fields present in `args`, as given, to carry into links and forms."""
    return {name: args[name] for name in FILTER_FIELDS if args.get(name)}


def failed_jobs() -> FailedJobs:
    return FailedJobs(current_app.extensions["crmsync_redis"], current_app.config["CRMSYNC_SETTINGS"])


def reconcile_reports() -> ReconcileReports:
    settings = current_app.config["CRMSYNC_SETTINGS"]
    return ReconcileReports(current_app.extensions["crmsync_redis"], settings.reconcile_report_retention_days)


def operator() -> str:
    """Who acts, as recorded with replays and discards: the dashboard user."""
    return f"dashboard:{g.dashboard_user}"


def erasure_status(args: Mapping[str, str]) -> str | None:
    """The `status` filter of the erasures page and API: one of ERASURE_STATUSES, or none (all)."""
    status = (args.get("status") or "").strip()
    if status and status not in ERASURE_STATUSES:
        raise BadFilter(f"status: use one of {', '.join(ERASURE_STATUSES)}")
    return status or None


def erasure_records() -> list[ErasureRecord]:
    """Every erasure in the audit trail, newest first."""
    settings = current_app.config["CRMSYNC_SETTINGS"]
    return list_erasures(current_app.extensions["crmsync_redis"], settings.erasure_deadline_days)
