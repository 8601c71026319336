"""The ingest baseline: a bare Flask endpoint that answers 202, served with the same gunicorn settings.

`gunicorn --config python:crmsync.gunicorn_conf "bench.bare_app:create_app()"` — whatever crmsync's
own endpoint costs beyond this is verification, validation, the enqueue and logging.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify

__all__ = ["create_app"]


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/webhooks/crm")
    def accept() -> tuple[Response, int]:
        return jsonify({"status": "queued"}), 202

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    return app
