"""Gunicorn settings for the web process (`gunicorn --config python:crmsync.gunicorn_conf ...`).

Everything comes from the environment, as on Heroku: PORT, WEB_CONCURRENCY.
"""

from __future__ import annotations

import os
from typing import Any

from crmsync.logs import configure

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "sync"
# Requests are short (verify, validate, one Redis round trip); a stuck one is killed well before
# the router's 30 s limit, and a restart lets in-flight requests finish within Heroku's window.
timeout = 20
graceful_timeout = 25
keepalive = 5
# Keep one JSON line per request on stdout; the path carries no personal data.
accesslog = "-"
access_log_format = (
    '{"event":"http_request","method":"%(m)s","path":"%(U)s","status":%(s)s,'
    '"duration_ms":%(M)s,"bytes":%(B)s,"remote":"%(h)s"}'
)
errorlog = "-"
forwarded_allow_ips = "*"


def post_worker_init(worker: Any) -> None:
    """Application logs as JSON lines on stdout, like the worker's."""
    configure(os.environ.get("LOG_LEVEL", "INFO"))
