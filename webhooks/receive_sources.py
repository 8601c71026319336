"""`POST /webhooks/hubspot`, `/webhooks/salesforce`, `/webhooks/pipedrive`: the CRMs' own webhooks,
and `/webhooks/NAME` for each CRM declared under [sources.NAME] in the mappings file.

Authenticate (401, nothing recorded), read the body into a batch (400 if it cannot be read at all),
accept all its events with its ignored and rejected items in one Redis round trip (503 and nothing
queued if Redis is down), acknowledge with 200 — Salesforce with the SOAP Ack. An invalid item is
rejected on its own: answering 4xx for it would make HubSpot drop the batch and Salesforce retry it
for 24 hours. A source whose settings are not set answers 404. See docs/crm-sources.md.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

from flask import Blueprint, Response, request
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from .body import BodyError
from .connection import close_connection
from .errors import error_response, http_error_response
from .intake import Intake
from .metrics import record_unexpected_error, record_webhook
from .receive import inbound_request, read_request_body, unproxied
from .sources import CrmSource
from .sources.configured import ConfiguredSource
from .sources.items import AuthenticationFailed, SourceBatch, TooManyItems, UnparseableBody
from .sources.salesforce import ACK_RESPONSE, CONTENT_TYPE, soap_fault
from .sources.salesforce import NAME as SALESFORCE

__all__ = ["bp"]

bp = Blueprint("receive_sources", __name__)
log = logging.getLogger("crmsync.webhooks")
# What the one log line of a request's rejected items holds: its most frequent reasons, first ids.
LOGGED_REASONS = 10
LOGGED_IDENTIFIERS = 5


# Any name: a source neither built in nor declared answers 404 below (/webhooks/crm is receive.py's).
@bp.post("/webhooks/<name>")
def receive_from_crm(name: str) -> tuple[Response, int]:
    incoming, app = unproxied()
    source: CrmSource | None = app.extensions["crmsync_sources"].get(name)
    if source is None:
        return error_response(404, "not_found", f"The {name} source is not enabled.")
    try:
        body = read_request_body(incoming, app.config["CRMSYNC_SETTINGS"])
    except BodyError as exc:
        return _refuse(source, exc.status, exc.reason, str(exc), close=True)
    try:
        inbound = inbound_request(incoming, body)
        source.authenticate(inbound)
        # A declared source may take its delivery id from a header (a registry unifies this later).
        batch = source.read_request(inbound) if isinstance(source, ConfiguredSource) else source.read(body)
    except AuthenticationFailed as exc:
        return _refuse(source, 401, exc.reason, str(exc))
    except UnparseableBody as exc:
        return _refuse(source, 400, exc.reason, str(exc))
    except TooManyItems as exc:
        return _refuse(source, 413, exc.reason, str(exc))
    intake: Intake = app.extensions["crmsync_intake"]
    try:
        accepted = intake.accept_batch(batch)
    except RedisError:
        # Nothing of the request was recorded: the CRM's redelivery brings all of it again.
        extra = {"event": "webhook_rejected", "source": source.name, "reason": "redis_unavailable"}
        log.exception("queue unavailable", extra=extra)
        return _refuse(source, 503, "queue_unavailable", "The event queue is unavailable; retry later.")
    queued = sum(outcome.is_new for outcome in accepted)
    for mapped, outcome in zip(batch.events, accepted, strict=True):
        record_webhook(mapped.event["type"], "queued" if outcome.is_new else "duplicate")
    summary = {"queued": queued, "duplicates": len(accepted) - queued, "ignored": len(batch.ignored),
               "rejected": len(batch.rejected)}  # fmt: skip
    _log_batch(source.name, batch, summary)
    if source.soap:
        return Response(ACK_RESPONSE, content_type=CONTENT_TYPE), 200
    return Response(json.dumps({"status": "accepted", **summary}), content_type="application/json"), 200


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
    if (request.view_args or {}).get("name") == SALESFORCE:
        return Response(soap_fault(message, server_side=True), content_type=CONTENT_TYPE), 500
    return error_response(500, "internal_error", message)


def _log_batch(source: str, batch: SourceBatch, summary: dict[str, int]) -> None:
    """One line per request; when items were rejected, one more with their count by reason and the ids
    of the first few (never a value): a hostile batch costs two lines, not one per item."""
    log.info("webhook batch", extra={"event": "webhook_batch", "source": source, **summary})
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
    source: CrmSource, status: int, reason: str, message: str, close: bool = False
) -> tuple[Response, int]:
    """Refuse the whole request. Nothing goes to Redis: an unauthenticated caller cannot write there.
    `close` when the body was left unread (see connection.py)."""
    log.info("webhook refused", extra={"event": "webhook_rejected", "source": source.name, "status": status,
                                         "reason": reason})  # fmt: skip
    record_webhook("unknown", "rejected", reason)
    if source.soap:
        response = Response(soap_fault(message, server_side=status >= 500), content_type=CONTENT_TYPE)
    else:
        response, status = error_response(status, reason, message)
    return (close_connection(response) if close else response), status
