"""`POST /webhooks/<name>`: the one receive path, for every source of the registry and every declared
one (`/webhooks/crm` is the standard source's older path). See docs/crm-sources.md.

Authenticate (401, nothing recorded), read the body into a batch (400 if it cannot be read at all;
the standard source answers 422 for an event off its contract), accept all its events with its ignored
and rejected items in one Redis round trip (503 and nothing queued if Redis is down), and answer as
the source does: the CRMs 200 with what became of the items (Salesforce with the SOAP Ack), the
standard source 202 with the job id (200 for a redelivery). An invalid item of a CRM's batch is
rejected on its own: answering 4xx for it would make HubSpot drop the batch and Salesforce retry it
for 24 hours. A source whose settings are not set answers 404. Nothing slow runs inline.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, current_app, request
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from crmsync.core.counters import count_rejection
from crmsync.core.logs import ACCESS_LOG_FIELDS

from .body import BodyError
from .connection import close_connection
from .errors import error_response, http_error_response
from .inbound import inbound_request, read_request_body, unproxied
from .intake import Intake
from .metrics import record_unexpected_error, record_webhook
from .sources.items import SourceBatch, SourceError
from .sources.kind import Source
from .sources.registry import STANDARD, kind_named
from .sources.standard import ALIAS

__all__ = ["bp"]

bp = Blueprint("receive", __name__)
log = logging.getLogger("crmsync.webhooks")
# What the one log line of a request's rejected items holds: its most frequent reasons, first ids.
LOGGED_REASONS = 10
LOGGED_IDENTIFIERS = 5


@bp.post("/webhooks/<name>")
def receive_webhook(name: str) -> tuple[Response, int]:
    incoming, app = unproxied()
    source: Source | None = app.extensions["crmsync_sources"].get(name)
    if source is None:
        return error_response(404, "not_found", _not_enabled(name))
    if source.media_type and incoming.mimetype != source.media_type:
        return _refuse(source, 415, "unsupported_media_type", f"Content-Type must be {source.media_type}.",
                       close=True)  # fmt: skip
    try:
        body = read_request_body(incoming, app.config["CRMSYNC_SETTINGS"])
    except BodyError as exc:
        return _refuse(source, exc.status, exc.reason, str(exc), close=True)
    try:
        batch = source.receive(inbound_request(incoming, body))
    except SourceError as exc:
        return _refuse(source, exc.status, exc.reason, str(exc), details=exc.details)
    intake: Intake = app.extensions["crmsync_intake"]
    try:
        accepted = intake.accept_batch(batch)
    except RedisError:
        # Nothing of the request was recorded: the CRM's redelivery brings all of it again.
        extra = {"event": "webhook_rejected", "source": source.name, "reason": "redis_unavailable"}
        log.exception("queue unavailable", extra=extra)
        return _refuse(source, 503, "queue_unavailable", "The event queue is unavailable; retry later.",
                       counted=False)  # fmt: skip
    for mapped, outcome in zip(batch.events, accepted, strict=True):
        record_webhook(mapped.event["type"], "queued" if outcome.is_new else "duplicate")
    message, fields = source.receipt(batch, accepted)
    if ACCESS_LOG_FIELDS in incoming.environ:
        # Under gunicorn the request's access log line carries these (crmsync/server/access_log.py):
        # one line per webhook instead of two.
        incoming.environ[ACCESS_LOG_FIELDS] = fields
    else:
        log.info(message, extra=fields)
    if batch.rejected or batch.unexpected_error is not None:
        _log_rejected(source.name, batch)
    reply = source.accepted(batch, accepted)
    return Response(reply.body, content_type=reply.content_type), reply.status


@bp.post(f"/webhooks/{ALIAS}")
def receive_standard_alias() -> tuple[Response, int]:
    """The standard source's older path, where deployed senders still post."""
    return receive_webhook(STANDARD)


@bp.errorhandler(Exception)
def unexpected_error(exc: Exception) -> tuple[Response, int]:
    """The app's boundary for an unforeseen failure (webhooks/errors.py), answered in the source's
    own format: Salesforce reads only SOAP, so its 500 is a SOAP `Server` fault (it retries later)."""
    if isinstance(exc, HTTPException):  # a blueprint's handler for Exception would take these too
        return http_error_response(exc)
    endpoint = request.endpoint or "unknown"
    log.exception("unhandled error", extra={"event": "unhandled_error", "method": request.method,
                                            "path": request.path})  # fmt: skip
    record_unexpected_error(endpoint)
    message = "The server failed to handle the request."
    name = (request.view_args or {}).get("name", STANDARD)
    source: Source | None = current_app.extensions["crmsync_sources"].get(name)
    reply = source.refused(500, "internal_error", message, {}) if source is not None else None
    if reply is None:
        return error_response(500, "internal_error", message)
    return Response(reply.body, content_type=reply.content_type), reply.status


def _not_enabled(name: str) -> str:
    try:
        settings = " and ".join(kind_named(STANDARD if name == ALIAS else name).enabled_by)
    except ValueError:
        return f"The {name} source is not enabled."
    return f"The {name} source is not enabled (set {settings})."


def _log_rejected(source: str, batch: SourceBatch) -> None:
    """When items were rejected, one line with their count by reason and the ids of the first few
    (never a value): a hostile batch costs two lines, not one per item."""
    if batch.rejected:
        extra: dict[str, Any] = {
            "event": "items_rejected",
            "source": source,
            "rejected": len(batch.rejected),
            "reasons": dict(Counter(item.reason for item in batch.rejected).most_common(LOGGED_REASONS)),
            "first": [item.identifiers for item in batch.rejected[:LOGGED_IDENTIFIERS]],
        }
        log.warning("items rejected", extra=extra)
    if batch.unexpected_error is not None:
        # A bug: no check foresaw it. Its item was rejected alone; the traceback once per request.
        error = batch.unexpected_error
        log.error("item unreadable", exc_info=(type(error), error, error.__traceback__),
                  extra={"event": "item_unreadable", "source": source})  # fmt: skip


def _refuse(
    source: Source,
    status: int,
    reason: str,
    message: str,
    close: bool = False,
    details: Mapping[str, Any] | None = None,
    counted: bool = True,
) -> tuple[Response, int]:
    """Refuse the whole request, in the source's format. Nothing of it goes to Redis (an
    unauthenticated caller cannot write there), except, for a source that `counts_refusals`, one to
    the dashboard's count. `close` when the body was left unread (see connection.py)."""
    log.info("webhook refused", extra={"event": "webhook_rejected", "source": source.name, "status": status,
                                         "reason": reason})  # fmt: skip
    record_webhook("unknown", "rejected", reason)
    if counted and source.counts_refusals:
        try:
            count_rejection(current_app.extensions["crmsync_redis"])
        except RedisError:
            pass  # The dashboard's last-hour figure may miss it; the refusal itself must still answer.
    reply = source.refused(status, reason, message, details or {})
    if reply is None:
        response, status = error_response(status, reason, message, **(details or {}))
    else:
        response, status = Response(reply.body, content_type=reply.content_type), reply.status
    return (close_connection(response) if close else response), status
