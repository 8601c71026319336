"""Gunicorn settings for the web process (`gunicorn --config python:crmsync.gunicorn_conf ...`).

Everything comes from the environment, as on Heroku: PORT, WEB_CONCURRENCY.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
from datetime import UTC, datetime
from typing import Any

from gunicorn.glogging import Logger
from gunicorn.workers.gthread import ThreadWorker

from crmsync.core.logs import configure
from crmsync.core.settings import Settings, SettingsError

# prometheus-client picks its multiprocess mode when first imported, so the directory must be in the
# environment before any gunicorn worker imports the app. Heroku dynos have a private /tmp.
_OWN_MULTIPROC_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _OWN_MULTIPROC_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="crmsync-prometheus-")
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads (gthread, see HeaderDeadlineWorker) let a worker process take the next request while one
# waits for its Redis round trip, and keep connections alive (sync workers close every one); see
# docs/benchmarks.md.
threads = int(os.environ.get("WEB_THREADS", "4"))
# With gthread, `timeout` restarts a worker process whose main loop stopped answering; it does not
# end a slow request in a thread. gunicorn hands a new connection to a thread only once it has sent
# something (else it waits in the poller, `keepalive` seconds at most); from then on a client has
# BODY_TIMEOUT_SECONDS to send its headers (HeaderDeadlineWorker below: the connection is closed),
# then as long again for its body (webhooks/body.py: answered 408). A restart lets in-flight
# requests finish within Heroku's 30 s window.
worker_class = "crmsync.gunicorn_conf.HeaderDeadlineWorker"
timeout = 20
graceful_timeout = 25
keepalive = 5
errorlog = "-"
forwarded_allow_ips = "*"
# gunicorn 25+ opens a control socket at one fixed path per user by default, which two gunicorns on
# one machine (a dev run next to the tests) would take from each other; crmsync does not use it.
control_socket_disable = True


class JsonAccessLogger(Logger):
    """One JSON line per request on stdout, built with json.dumps so that no path or header can break
    the line; the path is logged without its query string and carries no personal data."""

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
        self.access_log.info(json.dumps(line))


accesslog = "-"
logger_class = JsonAccessLogger


def on_starting(server: Any) -> None:
    """Refuse to start, with one clear line, when a setting is missing or malformed."""
    try:
        Settings.from_env(role="web")
    except SettingsError as exc:
        sys.exit(f"crmsync: configuration error: {exc}")
    # Counters left by a previous run of this master would be summed into this one's.
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))


def on_exit(server: Any) -> None:
    """Remove the metrics directory this master made itself (not one given in the environment)."""
    if _OWN_MULTIPROC_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def child_exit(server: Any, worker: Any) -> None:
    """A worker process ended: its live gauges are dropped (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


class HeaderDeadlineWorker(ThreadWorker):
    """gunicorn's gthread worker, with a bound on how long a client may take to send its headers.

    gunicorn reads a request's headers in a worker thread with no time limit, so a client that sends
    half its headers and stalls would hold that thread for good: 8 of them stop the web process.
    Each connection's turn in a thread starts a deadline that `pre_request` (headers complete)
    cancels; if it passes first, the socket's read side is shut and gunicorn closes the connection.
    """

    def init_process(self) -> None:
        # Imported here, in the worker: importing webhooks in the master would load prometheus-client
        # before PROMETHEUS_MULTIPROC_DIR is set above.
        from webhooks.body import cut_off_after

        self.cut_off_after = cut_off_after
        self.header_timeout = Settings.from_env(role="web").body_timeout_seconds
        super().init_process()

    def handle(self, conn: Any) -> Any:
        _headers.deadline = self.cut_off_after(conn.sock, self.header_timeout)
        try:
            return super().handle(conn)
        finally:
            _headers.deadline.cancel()


_headers = threading.local()


def pre_request(worker: Any, req: Any) -> None:
    """The headers are in: the time to send them is no longer counted (the body has its own)."""
    deadline = getattr(_headers, "deadline", None)
    if deadline is not None:
        deadline.cancel()


def post_worker_init(worker: Any) -> None:
    """Application logs as JSON lines on stdout, like the worker's."""
    configure(os.environ.get("LOG_LEVEL", "INFO"))
