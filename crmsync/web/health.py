"""Liveness and readiness probes for the platform's router and for operators."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from redis.exceptions import RedisError

from webhooks.errors import error_response

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up and serving requests (always 200: liveness), and whether Redis answers, for
    the operator (readiness, which routing may act on, is /readyz)."""
    try:
        current_app.extensions["crmsync_redis"].ping()
    except RedisError:
        return jsonify({"status": "ok", "redis": "unreachable"})
    return jsonify({"status": "ok", "redis": "ok"})


@bp.get("/readyz")
def readyz() -> Response | tuple[Response, int]:
    """The process can accept events: Redis answers."""
    try:
        current_app.extensions["crmsync_redis"].ping()
    except RedisError:
        return error_response(503, "redis_unavailable", "Redis is not reachable.")
    return jsonify({"status": "ready"})
