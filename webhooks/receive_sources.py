"""`POST /webhooks/hubspot`, `/webhooks/salesforce`, `/webhooks/pipedrive`: the CRMs' own webhooks.

Authenticate (401, nothing recorded), read the body into a batch (400 if it cannot be read at all),
accept all its events with its ignored and rejected items in one Redis round trip (503 and nothing
queued if Redis is down), acknowledge with 200 — Salesforce with the SOAP Ack. An invalid item is
rejected on its own: answering 4xx for it would make HubSpot drop the batch and Salesforce retry it
for 24 hours. A source whose settings are not set answers 404. See docs/crm-sources.md.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, Response
from redis.exceptions import RedisError

from .body import BodyError
from .connection import close_connection
from .errors import error_response
from .intake import Intake
from .metrics import record_webhook
from .receive import inbound_request, read_request_body, unproxied
from .sources import CrmSource
from .sources.items import AuthenticationFailed, SourceBatch, UnparseableBody
from .sources.salesforce import ACK_RESPONSE, CONTENT_TYPE, soap_fault

__all__ = ["bp"]

bp = Blueprint("receive_sources", __name__)
log = logging.getLogger("crmsync.webhooks")


@bp.post("/webhooks/<any(hubspot, salesforce, pipedrive):name>")
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
        source.authenticate(inbound_request(incoming, body))
        batch = source.read(body)
    except AuthenticationFailed as exc:
        return _refuse(source, 401, exc.reason, str(exc))
    except UnparseableBody as exc:
        return _refuse(source, 400, exc.reason, str(exc))
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


def _log_batch(source: str, batch: SourceBatch, summary: dict[str, int]) -> None:
    """One line per request, and one per rejected item (its reason and ids, never a value)."""
    log.info("webhook batch", extra={"event": "webhook_batch", "source": source, **summary})
    for item in batch.rejected:
        extra: dict[str, Any] = {"event": "item_rejected", "source": source, "reason": item.reason}
        log.warning("item rejected", extra={**extra, "identifiers": item.identifiers})


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
