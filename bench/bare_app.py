"""The ingest baseline: a bare Flask endpoint that answers 202, served with the same gunicorn settings.

`gunicorn --config python:crmsync.server.gunicorn_conf "bench.bare_app:create_app()"` — whatever crmsync's
own endpoint costs beyond this is verification, validation, the enqueue and logging.

Two steps between the floor and crmsync split that cost (`python -m bench.ingest --decompose`): the
floor plus crmsync's Standard Webhooks verification and contract validation, and the same with
crmsync's accept (the script that dedupes, writes and queues the RQ job) instead of the `SET`. Neither
has crmsync's metrics, log fields, body deadline or dashboard routes.
"""

from __future__ import annotations

import os
import uuid

from flask import Flask, Response, jsonify, request
from redis import Redis

from crmsync.core.events import Event
from crmsync.core.queue import EventQueue
from crmsync.core.settings import Settings
from webhooks.signature import verify_signature
from webhooks.sources.standard import KIND as STANDARD

__all__ = ["create_app", "create_redis_app", "create_verifying_app", "create_enqueueing_app"]


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/webhooks/crm")
    def accept() -> tuple[Response, int]:
        return jsonify({"status": "queued"}), 202

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    return app


def create_redis_app() -> Flask:
    """The floor under any durable acceptance: the bare endpoint plus one Redis round trip (a SET
    of the raw body). crmsync cannot answer faster than this and still never lose an event."""
    app = Flask(__name__)
    redis = Redis.from_url(os.environ["REDIS_URL"])

    @app.post("/webhooks/crm")
    def accept() -> tuple[Response, int]:
        redis.set(f"bench:{uuid.uuid4().hex}", request.get_data(), ex=600)
        return jsonify({"status": "queued"}), 202

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    return app


def create_verifying_app() -> Flask:
    """The floor plus the checks crmsync's contract cannot skip: the Standard Webhooks signature
    (every configured secret, the timestamp's tolerance) and the event's JSON and schema; then the
    floor's `SET` of the body. A delivery failing them raises: answered 500, counted by the bench."""
    return _contract_app(enqueue=False)


def create_enqueueing_app() -> Flask:
    """`create_verifying_app` with crmsync's accept (`EventQueue.accept`: the delivery id
    remembered, the RQ job and its payload written and queued, the customer's job index, the
    minute's counters, in one script) instead of the `SET`."""
    return _contract_app(enqueue=True)


def _contract_app(enqueue: bool) -> Flask:
    app = Flask(__name__)
    settings = Settings.from_env(role="web")
    standard = STANDARD.settings_from_env(os.environ)
    if standard is None:
        raise SystemExit("set WEBHOOK_SECRET")
    redis = Redis.from_url(settings.redis_url)
    source = STANDARD.build(standard, None)
    queue = EventQueue(redis, settings)

    @app.post("/webhooks/crm")
    def accept() -> tuple[Response, int]:
        body = request.get_data()
        webhook_id = verify_signature(request.headers, body, standard.secrets,
                                      standard.tolerance_seconds).webhook_id  # fmt: skip
        event = source.read(body, webhook_id).event
        if not enqueue:
            redis.set(f"bench:{webhook_id}", body, ex=600)
            return jsonify({"status": "queued"}), 202
        accepted = queue.accept(Event(webhook_id=webhook_id, **event))
        return jsonify({"status": "queued", "job_id": accepted.job_id}), 202

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    return app
