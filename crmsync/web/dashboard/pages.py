"""The dashboard's HTML pages. Every state change is a POST form carrying the CSRF token; each
answers with a redirect (303) to a page, so reloading never repeats an action."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import current_app, g, redirect, render_template, request, url_for
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response

from crmsync.core.events import ERASURE_REQUESTED, EVENT_TYPES
from crmsync.operations import MissingReason
from crmsync.operations.activity import read_activity, read_snapshot
from crmsync.operations.customer import read_customer
from crmsync.operations.erasures import ERASURE_STATUSES, erasure_counts, with_status
from crmsync.operations.source_items import (
    ignored_counts,
    rejected_items,
    rejected_type_counts,
    version_fallbacks,
)
from webhooks.sources.registry import DECLARED, NAMES, SOURCES

from . import NAV, bp
from .chart import line_chart
from .csrf import issue_token
from .params import (
    BadFilter,
    erasure_records,
    erasure_status,
    failed_jobs,
    failure_filter,
    filter_args,
    operator,
    reconcile_reports,
)

PER_PAGE = 50
NOTICES = ("replayed", "discarded", "not_failed", "missing")


@bp.context_processor
def page_context() -> dict[str, object]:
    settings = current_app.config["CRMSYNC_SETTINGS"]
    return {"nav": NAV, "csrf_token": issue_token(settings, g.dashboard_user), "user": g.dashboard_user}


@bp.get("/")
def overview() -> str:
    settings = current_app.config["CRMSYNC_SETTINGS"]
    redis = current_app.extensions["crmsync_redis"]
    snapshot = read_snapshot(redis, settings.queue_name)
    activity = read_activity(redis)
    chart = line_chart(
        {name: (activity.labels[name], counts) for name, counts in activity.series.items()},
        activity.first_minute,
    )
    return render_template("dashboard/overview.html", snapshot=snapshot, chart=chart)


@bp.get("/failed")
def failed() -> str | tuple[str, int]:
    filters = filter_args(request.args)
    try:
        where = failure_filter(request.args)
    except BadFilter as exc:
        return render_failed(filters, error=str(exc)), 400
    page = failed_jobs().find(where, page=request.args.get("page", 1, type=int), per_page=PER_PAGE)
    return render_failed(filters, page=page)


def render_failed(filters: dict[str, str], **context: object) -> str:
    notices = {name: request.args.get(name, 0, type=int) for name in NOTICES}
    return render_template(
        "dashboard/failed.html",
        filters=filters,
        event_types=EVENT_TYPES,
        notices={name: count for name, count in notices.items() if count},
        reason_missing=request.args.get("reason_missing") == "1",
        **context,
    )


@bp.get("/jobs/<job_id>")
def failed_job(job_id: str) -> str:
    job = failed_jobs().get(job_id)
    if job is None:
        raise NotFound("No such failed job (it may have been replayed or discarded).")
    return render_template("dashboard/job.html", job=job, history=failed_jobs().history(job_id))


@bp.get("/failed/replay-matching")
def confirm_replay_matching() -> str | tuple[str, int]:
    filters = filter_args(request.args)
    try:
        count = len(failed_jobs().matching_ids(failure_filter(request.args)))
    except BadFilter as exc:
        return render_failed(filters, error=str(exc)), 400
    return render_template("dashboard/confirm_replay.html", filters=filters, count=count)


@bp.post("/failed/replay")
def replay() -> Response:
    jobs, filters = failed_jobs(), filter_args(request.form)
    if request.form.get("all_matching") == "1":
        results = jobs.replay_matching(failure_filter(request.form), operator())
    else:
        results = jobs.replay(request.form.getlist("job_id"), operator())
    return back_to_failed(filters, [result.status for result in results])


@bp.post("/failed/discard")
def discard() -> Response:
    filters = filter_args(request.form)
    try:
        reason = request.form.get("reason", "")
        results = failed_jobs().discard(request.form.getlist("job_id"), reason, operator())
    except MissingReason:
        params: dict[str, Any] = {**filters, "reason_missing": "1"}
        return redirect(url_for("dashboard.failed", **params), code=303)
    return back_to_failed(filters, [result.status for result in results])


def back_to_failed(filters: dict[str, str], statuses: list[str]) -> Response:
    params: dict[str, Any] = {**filters}
    params.update({name: statuses.count(name) for name in NOTICES if statuses.count(name)})
    return redirect(url_for("dashboard.failed", **params), code=303)


@bp.get("/replays")
def replays() -> str:
    return render_template("dashboard/replays.html", replays=failed_jobs().recent_replays())


@bp.get("/sources")
def sources() -> str:
    """What the CRM sources ignored (by type), rejected (by type; the last ones, reason and
    identifiers) and ordered without their version field (with the fix)."""
    redis = current_app.extensions["crmsync_redis"]
    served = current_app.extensions["crmsync_sources"]
    return render_template(
        "dashboard/sources.html",
        # Every source of the registry, served or not, then the declared ones.
        sources=[(kind.name, kind.title, kind.name in served, kind.enabled_by) for kind in SOURCES]
        + [(name, DECLARED.title, True, ()) for name in served if name not in NAMES],
        ignored=ignored_counts(redis),
        rejected_counts=rejected_type_counts(redis),
        rejected=rejected_items(redis, limit=100),
        version_fallbacks=version_fallbacks(redis),
    )


@bp.get("/discarded")
def discarded() -> str:
    return render_template("dashboard/discarded.html", discards=failed_jobs().recent_discards())


@bp.get("/erasures")
def erasures() -> str | tuple[str, int]:
    """The GDPR erasure audit trail, newest first; failed and overdue ones are flagged for action."""
    settings = current_app.config["CRMSYNC_SETTINGS"]
    now, records = datetime.now(UTC), erasure_records()
    context: dict[str, Any] = {
        "statuses": ERASURE_STATUSES,
        "counts": erasure_counts(records, now),
        "deadline_days": settings.erasure_deadline_days,
        "now": now,
        "erasure_type": ERASURE_REQUESTED,
    }
    try:
        status = erasure_status(request.args)
    except BadFilter as exc:
        return render_template("dashboard/erasures.html", status="", error=str(exc), **context), 400
    shown = with_status(records, status, now)
    return render_template("dashboard/erasures.html", status=status or "", erasures=shown, **context)


@bp.get("/customer")
def customer() -> str:
    """One customer's ordering ledger and jobs (`?external_id=`): versions and outcomes, no values."""
    external_id = (request.args.get("external_id") or "").strip()
    view = None
    if external_id:
        settings = current_app.config["CRMSYNC_SETTINGS"]
        view = read_customer(current_app.extensions["crmsync_redis"], settings.queue_name, external_id)
    return render_template("dashboard/customer.html", external_id=external_id, view=view)


@bp.get("/reconcile")
def reconcile_runs() -> str:
    """`crmsync reconcile` runs, newest first: what each found (and did), refused ones flagged."""
    return render_template("dashboard/reconcile.html", reports=reconcile_reports().recent())


@bp.get("/reconcile/<run_id>")
def reconcile_run(run_id: str) -> str:
    """One run's report: the external ids per kind, the fields an update changes, the skipped lines."""
    report = reconcile_reports().get(run_id)
    if report is None:
        raise NotFound("No such reconcile run (its report may have expired).")
    return render_template("dashboard/reconcile_run.html", report=report)
