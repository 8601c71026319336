"""The dashboard's JSON API under `/dashboard/api`, for scripts and tools; the pages do the same.

POSTs need the CSRF token in `X-CSRF-Token` (from `GET /dashboard/api/csrf-token`); without it they
answer 403 JSON. Bodies and answers hold identifiers only.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from flask import Response, current_app, g, jsonify, request
from marshmallow import RAISE, Schema, ValidationError, fields, validates_schema

from crmsync.operations import MissingReason
from crmsync.operations.activity import read_activity, read_snapshot
from crmsync.operations.customer import read_customer
from crmsync.operations.erasures import erasure_counts, with_status
from crmsync.operations.source_items import (
    ignored_counts,
    rejected_counts,
    rejected_items,
    rejected_type_counts,
    version_fallbacks,
)
from webhooks.decoding import MalformedJSON, decode_json
from webhooks.errors import error_response

from . import bp
from .csrf import issue_token
from .params import (
    BadFilter,
    erasure_records,
    erasure_status,
    failed_jobs,
    failure_filter,
    operator,
    reconcile_reports,
)

MAX_PER_PAGE = 500


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class FilterFields(_Strict):
    """The failure filter in a JSON body: the fields of the page's query string, each a string."""

    type = fields.String()
    failure_class = fields.String()
    external_id = fields.String()
    since = fields.String()
    until = fields.String()


class ReplayRequest(_Strict):
    job_ids = fields.List(fields.String())
    all_matching = fields.Boolean(truthy={True}, falsy={False})
    filter = fields.Nested(FilterFields)

    @validates_schema
    def one_selection(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("job_ids" in data) == bool(data.get("all_matching")):
            raise ValidationError('Send "job_ids" (a list) or "all_matching": true.')


class DiscardRequest(_Strict):
    job_ids = fields.List(fields.String(), required=True)
    reason = fields.String()


_REPLAY, _DISCARD = ReplayRequest(), DiscardRequest()


@bp.errorhandler(BadFilter)
def bad_filter(exc: BadFilter) -> tuple[Response, int]:
    return error_response(400, "invalid_filter", str(exc))


@bp.get("/api/csrf-token")
def api_csrf_token() -> Response:
    return jsonify({"csrf_token": issue_token(current_app.config["CRMSYNC_SETTINGS"], g.dashboard_user)})


@bp.get("/api/overview")
def api_overview() -> Response:
    settings = current_app.config["CRMSYNC_SETTINGS"]
    return jsonify(asdict(read_snapshot(current_app.extensions["crmsync_redis"], settings.queue_name)))


@bp.get("/api/customer")
def api_customer() -> Response | tuple[Response, int]:
    """`?external_id=X`: the customer's ledger (versions, webhook ids) and jobs (statuses, outcomes)."""
    external_id = (request.args.get("external_id") or "").strip()
    if not external_id:
        return error_response(400, "invalid_request", "Give the customer's external_id.")
    settings = current_app.config["CRMSYNC_SETTINGS"]
    view = read_customer(current_app.extensions["crmsync_redis"], settings.queue_name, external_id)
    return jsonify({**view.to_json(), "known": view.known})


@bp.get("/api/activity")
def api_activity() -> Response:
    """Events per minute over the last two hours: accepted webhooks, and job attempts by outcome."""
    activity = read_activity(current_app.extensions["crmsync_redis"])
    return jsonify({"first_minute": activity.first_minute, "series": activity.series})


@bp.get("/api/sources")
def api_sources() -> Response:
    redis = current_app.extensions["crmsync_redis"]
    ignored = [{"source": source, "type": item_type, "count": count}
               for (source, item_type), count in ignored_counts(redis).items()]  # fmt: skip
    rejected_by_type = [{"source": source, "type": item_type, "count": count}
                        for (source, item_type), count in rejected_type_counts(redis).items()]  # fmt: skip
    fallbacks = [fallback.to_json() for fallback in version_fallbacks(redis)]
    return jsonify({"ignored": ignored, "rejected_counts": rejected_counts(redis),
                    "rejected_by_type": rejected_by_type,
                    "rejected": [item.to_json() for item in rejected_items(redis, limit=100)],
                    "version_fallbacks": fallbacks})  # fmt: skip


@bp.get("/api/failed")
def api_failed() -> Response:
    per_page = min(MAX_PER_PAGE, max(1, request.args.get("per_page", 50, type=int)))
    page = failed_jobs().find(
        failure_filter(request.args), page=request.args.get("page", 1, type=int), per_page=per_page
    )
    return jsonify(
        {
            "items": [job.to_json() for job in page.items],
            "total": page.total,
            "page": page.page,
            "pages": page.pages,
            "per_page": page.per_page,
        }
    )


@bp.post("/api/replay")
def api_replay() -> Response | tuple[Response, int]:
    """`{"job_ids": [...]}` or `{"all_matching": true, "filter": {"type": ..., "since": "2h", ...}}`."""
    body = _load(_REPLAY)
    if body.get("all_matching"):
        results = failed_jobs().replay_matching(failure_filter(body.get("filter", {})), operator())
    else:
        results = failed_jobs().replay(body["job_ids"], operator())
    return jsonify({"results": [asdict(result) for result in results]})


@bp.post("/api/discard")
def api_discard() -> Response | tuple[Response, int]:
    """`{"job_ids": [...], "reason": "..."}`."""
    body = _load(_DISCARD)
    try:
        results = failed_jobs().discard(body["job_ids"], body.get("reason", ""), operator())
    except MissingReason as exc:
        return error_response(400, "reason_required", str(exc))
    return jsonify({"results": [asdict(result) for result in results]})


@bp.get("/api/replays")
def api_replays() -> Response:
    return jsonify({"items": [replayed.to_json() for replayed in failed_jobs().recent_replays()]})


@bp.get("/api/erasures")
def api_erasures() -> Response:
    """`?status=pending|completed|failed|overdue`: the erasures, newest first, and the counts of all."""
    status = erasure_status(request.args)
    now, records = datetime.now(UTC), erasure_records()
    return jsonify(
        {
            "items": [record.to_json(now) for record in with_status(records, status, now)],
            "counts": erasure_counts(records, now),
            "deadline_days": current_app.config["CRMSYNC_SETTINGS"].erasure_deadline_days,
        }
    )


class InvalidRequest(Exception):
    """A JSON API body that is not JSON or breaks its schema; `errors` are marshmallow's messages."""

    def __init__(self, errors: Any) -> None:
        super().__init__("The request body does not match the API.")
        self.errors = errors


@bp.errorhandler(InvalidRequest)
def invalid_request(exc: InvalidRequest) -> tuple[Response, int]:
    return error_response(400, "invalid_request", str(exc), errors=exc.errors)


def _load(schema: Schema) -> dict[str, Any]:
    """The request's JSON body loaded with `schema`, or InvalidRequest naming what is wrong."""
    try:
        body = decode_json(request.get_data())
    except MalformedJSON as exc:
        raise InvalidRequest({"_schema": [str(exc)]}) from None
    try:
        return dict(schema.load(body))
    except ValidationError as exc:
        raise InvalidRequest(exc.messages) from None


@bp.get("/api/reconcile")
def api_reconcile() -> Response:
    """The kept reconcile reports, newest first (as `crmsync reconcile --history --json`)."""
    return jsonify({"reports": [report.to_json() for report in reconcile_reports().recent()]})
