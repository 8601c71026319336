"""The web process's access log: one line per request, as JSON (or plain, for `crmsync dev`), carrying
what the view said about its request (crmsync/server/gunicorn_conf.py wires both in)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from gunicorn.glogging import Logger

from crmsync.core.logs import ACCESS_LOG_FIELDS, SAFE_FIELDS, line_formatter, plain_logs

from .buffering_worker import body_arrived_whole

__all__ = ["JsonAccessLogger", "with_request_facts"]


class JsonAccessLogger(Logger):
    """One JSON line per request on stdout, built with json.dumps so that no path or header can break
    the line; the path is logged without its query string and carries no personal data. gunicorn's
    own lines (starting, workers booting and exiting) take the app's format too (plain with
    LOG_FORMAT=plain, as `crmsync dev` runs it)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(line_formatter())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        status = str(resp.status).split(None, 1)[0]
        line = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": "info",
            "logger": "gunicorn.access",
            "msg": "request",
            "event": "http_request",
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "status": int(status) if status.isdigit() else status,
            "duration_ms": round(request_time.total_seconds() * 1000, 1),
            "bytes": getattr(resp, "sent", None) or 0,
            "remote": environ.get("REMOTE_ADDR"),
            "request_id": environ.get("HTTP_X_REQUEST_ID"),  # set by Heroku's router
        }
        # What the view said about the request (a webhook's ids and outcome): safe fields only.
        fields = environ.get(ACCESS_LOG_FIELDS) or {}
        line.update((name, fields[name]) for name in SAFE_FIELDS if fields.get(name) is not None)
        if plain_logs():
            facts = " ".join(f"{name}={value}" for name, value in list(line.items())[5:] if value is not None)
            self.access_log.info(f"{line['ts'][11:19]} info    gunicorn.access: request {facts}")
            return
        self.access_log.info(json.dumps(line))


def with_request_facts(app: Any) -> Any:
    """What the worker knows of each request, for the app: whether its body arrived whole before it
    was handed to a thread, and a place for the fields of its access log line."""
    from webhooks.body import BODY_ARRIVED

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        environ[ACCESS_LOG_FIELDS] = {}
        environ[BODY_ARRIVED] = body_arrived_whole()
        return app(environ, start_response)

    return wsgi
