"""The ingest baseline: a bare Flask endpoint that answers 202, served with the same gunicorn settings.

`gunicorn --config python:crmsync.gunicorn_conf "bench.bare_app:create_app()"` — whatever crmsync's
own endpoint costs beyond this is verification, validation, the enqueue and logging.
"""

from __future__ import annotations

import os
import uuid

from flask import Flask, Response, jsonify, request
from redis import Redis

__all__ = ["create_app", "create_redis_app"]


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
