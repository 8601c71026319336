"""gunicorn's worker for the web process: gthread's, holding each request until it has arrived whole
(`worker_class` in crmsync/server/gunicorn_conf.py)."""

from __future__ import annotations

import json
import re
import selectors
import socket
import threading
import time
from functools import partial
from typing import Any

from gunicorn.workers.gthread import _DEFER, ThreadWorker

from crmsync.core.settings import Settings

__all__ = ["BufferingThreadWorker", "body_arrived_whole", "stop_header_deadline"]

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
        # before gunicorn_conf sets PROMETHEUS_MULTIPROC_DIR.
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


# What a request's thread knows of it: its headers' deadline (when it went through as gthread would)
# and whether its body arrived whole before the thread took it.
_headers = threading.local()


def stop_header_deadline() -> None:
    """The headers are in: the time to send them is no longer counted (the body has its own)."""
    deadline = getattr(_headers, "deadline", None)
    if deadline is not None:
        deadline.cancel()


def body_arrived_whole() -> bool:
    """Whether the current thread's request arrived with all of its body before the thread took it."""
    return bool(getattr(_headers, "body_arrived", False))
