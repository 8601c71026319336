"""`POST /webhooks/crm` (crmsync's own contract, webhooks/sources/standard.py): verify, validate,
enqueue, answer — in milliseconds, nothing slow inline. 404 unless WEBHOOK_SECRET is set."""

from __future__ import annotations

import json
import logging
from typing import Any, cast

from flask import Blueprint, Flask, Request, Response, current_app, request
from redis.exceptions import RedisError
from werkzeug.local import LocalProxy

from crmsync.core.counters import count_rejection
from crmsync.core.events import Event
from crmsync.core.logs import ACCESS_LOG_FIELDS
from crmsync.core.settings import Settings

from .body import BodyError, read_body
from .connection import close_connection
from .errors import error_response
from .intake import Intake
from .metrics import record_webhook
from .sources.items import AuthenticationFailed, InboundRequest, UnparseableBody
from .sources.standard import InvalidEvent, StandardSource

__all__ = ["bp", "unproxied", "read_request_body", "inbound_request", "request_headers"]

bp = Blueprint("receive", __name__)
log = logging.getLogger("crmsync.webhooks")


@bp.post("/webhooks/crm")
def receive_crm_event() -> tuple[Response, int]:
    incoming, app = unproxied()
    source: StandardSource | None = app.extensions["crmsync_standard_source"]
    if source is None:
        return error_response(404, "not_found", "This source is not enabled (WEBHOOK_SECRET is not set).")
    if incoming.mimetype != "application/json":
        return _reject(415, "unsupported_media_type", "Content-Type must be application/json.", close=True)
    try:
        body = read_request_body(incoming, app.config["CRMSYNC_SETTINGS"])
    except BodyError as exc:
        return _reject(exc.status, exc.reason, str(exc), close=True)
    try:
        webhook_id = source.authenticate(inbound_request(incoming, body))
    except AuthenticationFailed as exc:
        return _reject(401, exc.reason, str(exc))
    try:
        event = source.read(body, webhook_id).event
    except UnparseableBody as exc:
        return _reject(400, "malformed_json", str(exc))
    except InvalidEvent as exc:
        return _reject(422, exc.reason, str(exc), errors=exc.messages)
    intake: Intake = app.extensions["crmsync_intake"]
    try:
        accepted = intake.accept(Event(webhook_id=webhook_id, **event))
    except RedisError:
        # Answering 503 (never 202) makes the CRM redeliver once Redis is back: nothing is lost.
        log.exception("queue unavailable", extra={"event": "webhook_rejected", "reason": "redis_unavailable"})
        record_webhook("unknown", "rejected", "queue_unavailable")
        return error_response(503, "queue_unavailable", "The event queue is unavailable; retry later.")
    outcome = "queued" if accepted.is_new else "duplicate"
    received = {
        "event": "webhook_received",
        "webhook_id": webhook_id,
        "job_id": accepted.job_id,
        "type": event["type"],
        "external_id": event["data"]["external_id"],
        "outcome": outcome,
    }
    if ACCESS_LOG_FIELDS in incoming.environ:
        # Under gunicorn the request's access log line carries these (crmsync/server/access_log.py):
        # one line per webhook instead of two.
        incoming.environ[ACCESS_LOG_FIELDS] = received
    else:
        log.info("webhook %s", outcome, extra=received)
    record_webhook(event["type"], outcome)
    answer = json.dumps({"status": outcome, "job_id": accepted.job_id})
    return Response(answer, mimetype="application/json"), 202 if accepted.is_new else 200


def _reject(
    status: int, reason: str, message: str, close: bool = False, **extra: object
) -> tuple[Response, int]:
    """Answer a rejection, counted; `close` when the body was left unread (see connection.py)."""
    log.info("webhook rejected", extra={"event": "webhook_rejected", "status": status, "reason": reason})
    record_webhook("unknown", "rejected", reason)
    try:
        count_rejection(current_app.extensions["crmsync_redis"])
    except RedisError:
        pass  # The dashboard's last-hour figure may miss it; the rejection itself must still answer.
    response, status = error_response(status, reason, message, **extra)
    return (close_connection(response) if close else response), status


def unproxied() -> tuple[Request, Flask]:
    """The current request and app, taken from behind Flask's proxies once: every attribute read
    through a proxy first raises and catches an AttributeError (~8 K instructions; docs/benchmarks.md)."""
    return (cast("LocalProxy[Request]", request)._get_current_object(),
            cast("LocalProxy[Flask]", current_app)._get_current_object())  # fmt: skip


def read_request_body(incoming: Request, settings: Settings) -> bytes:
    """The whole body of `incoming`, within MAX_BODY_BYTES and BODY_TIMEOUT_SECONDS; or a BodyError
    (webhooks/body.py)."""
    return read_body(incoming.environ, incoming.content_length, settings.max_body_bytes,
                     settings.body_timeout_seconds)  # fmt: skip


def inbound_request(incoming: Request, body: bytes) -> InboundRequest:
    """`incoming` as the sources see it; `target` is the path and query as the client sent them (a
    signature may cover them byte for byte)."""
    environ = incoming.environ
    target = environ.get("RAW_URI") or environ.get("REQUEST_URI") or incoming.full_path.rstrip("?")
    return InboundRequest(
        method=incoming.method,
        scheme=incoming.scheme,
        host=incoming.host,
        target=target,
        headers=request_headers(environ),
        body=body,
        # Parsed only when there is one (~5 K instructions for an empty one).
        query=incoming.args if environ.get("QUERY_STRING") else {},
    )


def request_headers(environ: dict[str, Any]) -> dict[str, str]:
    """The request's headers by lower-case name, read off the WSGI environ as werkzeug's
    EnvironHeaders does, without its title-casing of every name (~10 µs a request)."""
    headers = {name[5:].replace("_", "-").lower(): value for name, value in environ.items()
               if name.startswith("HTTP_") and name not in _BODY_HEADERS_AS_HTTP}  # fmt: skip
    for name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(name):
            headers[name.replace("_", "-").lower()] = environ[name]
    return headers


# A client's own `Content-Type` header arrives as CONTENT_TYPE; these duplicates are not headers.
_BODY_HEADERS_AS_HTTP = frozenset({"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"})
