"""`POST /webhooks/crm`: verify, validate, enqueue, answer — in milliseconds, nothing slow inline."""

from __future__ import annotations

import json
import logging

from flask import Blueprint, Response, current_app, jsonify, request
from redis.exceptions import RedisError

from crmsync.activity import count_rejection

from .errors import error_response
from .intake import Intake
from .metrics import record_webhook
from .schemas import ValidationError, load_event
from .signature import SignatureError, verify_signature

__all__ = ["bp"]

bp = Blueprint("receive", __name__)
log = logging.getLogger("crmsync.webhooks")


@bp.post("/webhooks/crm")
def receive_crm_event() -> tuple[Response, int]:
    settings = current_app.config["CRMSYNC_SETTINGS"]
    if not request.mimetype or request.mimetype != "application/json":
        return _reject(415, "unsupported_media_type", "Content-Type must be application/json.")
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        return _reject(413, "payload_too_large", f"The body exceeds {settings.max_body_bytes} bytes.")
    # Read at most one byte past the limit, so a body without Content-Length cannot exhaust memory.
    body = request.stream.read(settings.max_body_bytes + 1)
    if len(body) > settings.max_body_bytes:
        return _reject(413, "payload_too_large", f"The body exceeds {settings.max_body_bytes} bytes.")
    try:
        delivery = verify_signature(
            request.headers, body, settings.webhook_secrets, settings.tolerance_seconds
        )
    except SignatureError as exc:
        return _reject(401, exc.reason, str(exc))
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return _reject(400, "malformed_json", "The body is not valid JSON.")
    try:
        event = load_event(payload)
    except ValidationError as exc:
        return _reject(
            422, "invalid_event", "The event does not match the webhook contract.", errors=exc.messages
        )
    intake: Intake = current_app.extensions["crmsync_intake"]
    try:
        accepted = intake.accept(delivery.webhook_id, event)
    except RedisError:
        # Answering 503 (never 202) makes the CRM redeliver once Redis is back: nothing is lost.
        log.exception("queue unavailable", extra={"event": "webhook_rejected", "reason": "redis_unavailable"})
        record_webhook("unknown", "rejected", "queue_unavailable")
        return error_response(503, "queue_unavailable", "The event queue is unavailable; retry later.")
    outcome = "queued" if accepted.is_new else "duplicate"
    log.info(
        "webhook %s",
        outcome,
        extra={
            "event": "webhook_received",
            "webhook_id": delivery.webhook_id,
            "job_id": accepted.job_id,
            "type": event["type"],
            "external_id": event["data"]["external_id"],
            "outcome": outcome,
        },
    )
    record_webhook(event["type"], outcome)
    return jsonify({"status": outcome, "job_id": accepted.job_id}), 202 if accepted.is_new else 200


def _reject(status: int, reason: str, message: str, **extra: object) -> tuple[Response, int]:
    log.info("webhook rejected", extra={"event": "webhook_rejected", "status": status, "reason": reason})
    record_webhook("unknown", "rejected", reason)
    try:
        count_rejection(current_app.extensions["crmsync_redis"])
    except RedisError:
        pass  # The dashboard's last-hour figure may miss it; the rejection itself must still answer.
    return error_response(status, reason, message, **extra)
