"""Gunicorn settings for the web process (`gunicorn --config python:crmsync.gunicorn_conf ...`).

Everything comes from the environment, as on Heroku: PORT, WEB_CONCURRENCY, WEB_THREADS.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import socket
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from functools import partial
from typing import Any

from gunicorn.glogging import Logger
from gunicorn.workers.gthread import _DEFER, ThreadWorker

from crmsync.core.logs import ACCESS_LOG_FIELDS, SAFE_FIELDS, configure, line_formatter, plain_logs
from crmsync.core.settings import Settings, SettingsError, positive_int
from webhooks.mappings import DEFAULT_MAPPINGS, MappingError, Mappings, load_mappings
from webhooks.sources import sources_sharing_ids


def _process_settings() -> tuple[int, int]:
    """WEB_CONCURRENCY and WEB_THREADS, checked before gunicorn reads them: refuse to start, with one
    clear line, rather than with gunicorn's traceback (or workers that fail to boot, over and over)."""
    try:
        return positive_int(os.environ, "WEB_CONCURRENCY", 2), positive_int(os.environ, "WEB_THREADS", 4)
    except SettingsError as exc:
        sys.exit(f"crmsync: configuration error: {exc}")


# Threads (gthread, see BufferingThreadWorker) let a worker process take the next request while one
# waits for its Redis round trip, and keep connections alive (sync workers close every one); see
# docs/benchmarks.md. Checked before the metrics directory below is made, which an exit would leave.
workers, threads = _process_settings()

# prometheus-client picks its multiprocess mode when first imported, so the directory must be in the
# environment before any gunicorn worker imports the app. Heroku dynos have a private /tmp.
_OWN_MULTIPROC_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _OWN_MULTIPROC_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="crmsync-prometheus-")
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
# With gthread, `timeout` restarts a worker process whose main loop stopped answering; it does not
# end a slow request in a thread. BufferingThreadWorker gives a request to a thread only once it has
# arrived whole, and answers 408 to one still incomplete BODY_TIMEOUT_SECONDS after its first byte.
# A restart lets in-flight requests finish within Heroku's 30 s window.
worker_class = "crmsync.gunicorn_conf.BufferingThreadWorker"
timeout = 20
graceful_timeout = 25
keepalive = 5
errorlog = "-"
# gunicorn trusts no client's X-Forwarded-* (a `*` here took a client's leftmost X-Forwarded-Proto as
# the scheme): the app trusts what TRUSTED_PROXY_HOPS proxies set, and only that (crmsync/web/proxies.py).
forwarded_allow_ips = ""
# gunicorn 25+ opens a control socket at one fixed path per user by default, which two gunicorns on
# one machine (a dev run next to the tests) would take from each other; crmsync does not use it.
control_socket_disable = True


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


accesslog = "-"
logger_class = JsonAccessLogger


def on_starting(server: Any) -> None:
    """Refuse to start, with one clear line, when a setting is missing or malformed."""
    try:
        settings = Settings.from_env(role="web")
        mappings = load_mappings(settings.mappings_file) if settings.mappings_file else DEFAULT_MAPPINGS
    except (SettingsError, MappingError) as exc:
        on_exit(server)  # gunicorn calls it only after a start
        sys.exit(f"crmsync: configuration error: {exc}")
    _warn_if_redis_is_unreachable(server, settings.redis_url)
    _warn_of_shared_ids(server, settings, mappings)
    # Counters left by a previous run of this master would be summed into this one's.
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))


def _warn_if_redis_is_unreachable(server: Any, url: str) -> None:
    """Start anyway (Redis may come first or later; /readyz answers 503 meanwhile), but say so: every
    webhook is refused until Redis answers."""
    from redis.exceptions import RedisError

    from crmsync.core.redis_conn import connect, redact_url

    client = connect(url)
    try:
        client.ping()
    except RedisError as exc:
        server.log.warning(
            f"Redis at {redact_url(url)} is not reachable ({type(exc).__name__}): webhooks are answered "
            "503 until it is (GET /readyz)"
        )
    finally:
        client.close()


def _warn_of_shared_ids(server: Any, settings: Settings, mappings: Mappings) -> None:
    """Once per start (here, in the master): CRM sources whose ids can name the same customer."""
    shared = sources_sharing_ids(settings, mappings)
    if shared:
        server.log.warning(
            "CRM sources share external ids: set external_id_prefix on each source's mapping",
            extra={"event": "external_ids_may_collide", "sources": shared},
        )


def on_exit(server: Any) -> None:
    """Remove the metrics directory this master made itself (not one given in the environment)."""
    if _OWN_MULTIPROC_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def child_exit(server: Any, worker: Any) -> None:
    """A worker process ended: its live gauges are dropped (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


# A request's head ends at the first empty line; gunicorn refuses heads over its limits (4 KiB request
# line, 100 fields of 8 KiB), so one past 64 KiB is handed on for gunicorn to refuse.
_HEAD_END, _HEAD_LIMIT = b"\r\n\r\n", 65_536
# How long a busy web process leaves new connections to its siblings, per connection it holds beyond
# its threads, and at most (BufferingThreadWorker.accept).
ACCEPT_PAUSE_SECONDS, ACCEPT_PAUSE_MAX_SECONDS = 0.001, 0.010
_CONTENT_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*([0-9]{1,12})[ \t]*\r?$", re.I | re.M)
_CHUNKED = re.compile(rb"^transfer-encoding[ \t]*:[^\r\n]*chunked", re.I | re.M)
_EXPECT = re.compile(rb"^expect[ \t]*:", re.I | re.M)


class BufferingThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, holding each request until it has arrived whole, as a proxy would.

    gthread hands a connection to a thread as soon as it has sent anything, and the thread then
    waits, with no time limit, for the headers and the body: N clients that stall hold N threads (8
    stop the web process). Here a thread takes only what has arrived, without waiting; while the
    request is incomplete it hands the connection back to gthread's poller (its own "defer", which
    closes one that sends nothing for `keepalive` seconds), so a stalled client holds a socket, not a
    thread. A request still incomplete BODY_TIMEOUT_SECONDS after its first byte (a trickle) is
    answered 408 and closed.

    What it cannot judge goes through as gthread would (TLS, HTTP/2, `Expect: 100-continue`, chunked
    bodies it cannot see the end of): there, a deadline that `pre_request` cancels bounds the wait for
    the headers, and the app bounds the body's (webhooks/body.py).

    It also leaves new connections to a less busy sibling process. Every process polls the one
    listening socket, and gthread accepts whatever is there while it holds under `worker_connections`
    (1,000): one process woken first takes a whole burst of new connections (16 of 16, measured), and
    a kept-alive connection stays with the process that took it, so the others idle while it is bound
    by its one core (docs/benchmarks.md). A process that holds as many connections as it has threads
    accepts no more for a moment that grows with how many it holds beyond that (ACCEPT_PAUSE_SECONDS
    each, at most ACCEPT_PAUSE_MAX_SECONDS), or until one of them closes; a sibling holding fewer
    takes the next. With one process nothing waits.
    """

    _accepting_after = 0.0  # monotonic time before which this process leaves new connections alone

    def init_process(self) -> None:
        # Imported here, in the worker: importing webhooks in the master would load prometheus-client
        # before PROMETHEUS_MULTIPROC_DIR is set above.
        from webhooks.body import cut_off_after

        settings = Settings.from_env(role="web")
        self.cut_off_after = cut_off_after
        self.request_timeout = settings.body_timeout_seconds
        self.max_body_bytes = settings.max_body_bytes
        super().init_process()

    def handle(self, conn: Any) -> Any:
        _headers.body_arrived = False
        if not self.cfg.is_ssl and self.cfg.http2_cleartext == "off":
            verdict = self._hold_until_whole(conn)
            return super().handle(conn) if verdict is None else verdict
        _headers.deadline = self.cut_off_after(conn.sock, self.request_timeout)
        try:
            return super().handle(conn)
        finally:
            _headers.deadline.cancel()

    def accept(self, listener: Any) -> None:
        held = self.nr_conns
        super().accept(listener)
        excess = self.nr_conns - self.cfg.threads
        if self.nr_conns > held and excess >= 0 and self.cfg.workers > 1:
            pause = min((excess + 1) * ACCEPT_PAUSE_SECONDS, ACCEPT_PAUSE_MAX_SECONDS)
            self._accepting_after = time.monotonic() + pause
            self.set_accept_enabled(False)

    def set_accept_enabled(self, enabled: bool) -> None:
        # gthread's loop enables accepting whenever the process holds under `worker_connections`.
        pausing = time.monotonic() < self._accepting_after and self.nr_conns >= self.cfg.threads
        super().set_accept_enabled(enabled and not pausing)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        # Wake up when a pause ends, not a poll timeout (1 s) later.
        pause_left = self._accepting_after - time.monotonic()
        if pause_left > 0 and not self._accepting:
            timeout = min(timeout, pause_left)
        super().wait_for_and_dispatch_events(timeout)

    def finish_request(self, conn: Any, fs: Any) -> None:
        """Park a connection deferred by a stopping worker too (max-requests, a graceful restart).

        gthread parks a deferred connection in its poller only while the worker is alive; once it
        stops, it takes one for a kept-alive connection, fails on its missing parser and drops it
        unanswered, although the shutdown still serves the connections it holds. Here a request
        that was still arriving is waited for (as long as `keepalive`, within the graceful timeout).
        """
        if self.alive or fs.cancelled() or fs.exception() is not None or fs.result() is not _DEFER:
            super().finish_request(conn, fs)
            return
        conn.sock.setblocking(False)
        conn.timeout = time.monotonic() + self.cfg.keepalive
        self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn))

    def _hold_until_whole(self, conn: Any) -> Any:
        """None to handle the request now; gthread's defer marker to wait in the poller; False to drop."""
        arrived: bytes | None = getattr(conn, "crmsync_arrived", None)
        if arrived is None:  # a new request: start from what gunicorn read ahead of the last one
            arrived = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
            conn.crmsync_started = time.monotonic()
        closed = False
        try:
            while len(arrived) <= self.max_body_bytes + _HEAD_LIMIT:
                received = conn.sock.recv(65_536, socket.MSG_DONTWAIT)
                if not received:
                    closed = True
                    break
                arrived += received
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return False
        if not (closed or self._whole(arrived)):
            if time.monotonic() - conn.crmsync_started > self.request_timeout:
                self._answer_timeout(conn)
                return False
            conn.crmsync_arrived = arrived
            return _DEFER
        if closed and not arrived:
            return False
        conn.crmsync_arrived = None  # the next request on this connection starts afresh
        # The app need not guard its read of a body that is here already (webhooks/body.py).
        _headers.body_arrived = self._body_arrived(arrived)
        conn.init()
        conn.parser.unreader.unread(arrived)
        conn.data_ready = True  # gthread must not wait for data already taken off the socket
        return None

    def _answer_timeout(self, conn: Any) -> None:
        """408 in the app's one JSON error shape (webhooks/errors.py); gthread then closes."""
        message = f"The request did not arrive within {self.request_timeout:g} s."
        body = json.dumps({"error": "request_timeout", "message": message}, separators=(",", ":")).encode()
        head = "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nConnection: close\r\n"
        try:
            conn.sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        except OSError:
            pass  # the client is gone

    def _whole(self, arrived: bytes) -> bool:
        """Whether `arrived` holds a whole request, or one to hand on at once (to refuse or to answer)."""
        end = arrived.find(_HEAD_END)
        if end < 0:
            return len(arrived) > _HEAD_LIMIT
        head, body = arrived[:end], arrived[end + len(_HEAD_END) :]
        if _EXPECT.search(head):
            return True  # the client sends its body only after gunicorn's "100 Continue"
        if _CHUNKED.search(head):
            return b"0\r\n\r\n" in body or len(body) > self.max_body_bytes
        length = _CONTENT_LENGTH.search(head)
        return (
            length is None or len(body) >= int(length.group(1)) or int(length.group(1)) > self.max_body_bytes
        )

    @staticmethod
    def _body_arrived(arrived: bytes) -> bool:
        """Whether the first request in `arrived` is here with all of its body (Content-Length)."""
        end = arrived.find(_HEAD_END)
        head, body = arrived[:end], arrived[end + len(_HEAD_END) :]
        length = _CONTENT_LENGTH.search(head)
        if end < 0 or _EXPECT.search(head) or _CHUNKED.search(head) or length is None:
            return False
        return len(body) >= int(length.group(1))


_headers = threading.local()


def pre_request(worker: Any, req: Any) -> None:
    """The headers are in: the time to send them is no longer counted (the body has its own)."""
    deadline = getattr(_headers, "deadline", None)
    if deadline is not None:
        deadline.cancel()


def post_worker_init(worker: Any) -> None:
    """Application logs as JSON lines on stdout, like the worker's; views may add fields to their
    request's access log line (ACCESS_LOG_FIELDS) instead of logging a line of their own."""
    configure(os.environ.get("LOG_LEVEL", "INFO"))
    worker.wsgi = _with_request_facts(worker.wsgi)


def _with_request_facts(app: Any) -> Any:
    """What the worker knows of each request, for the app: whether its body arrived whole before it
    was handed to a thread, and a place for the fields of its access log line."""
    from webhooks.body import BODY_ARRIVED

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        environ[ACCESS_LOG_FIELDS] = {}
        environ[BODY_ARRIVED] = getattr(_headers, "body_arrived", False)
        return app(environ, start_response)

    return wsgi
