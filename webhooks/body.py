"""Reading a request body whole, within a size limit and a deadline, or not at all.

A client that stalls (or trickles a byte at a time) must not hold a web thread: past the deadline
the socket's read side is shut, the blocked read returns, and the request is answered 408. A body
shorter than its Content-Length (the client closed early) or with broken chunked framing is never
acted on. After any of these the rest of the body is unread, so the connection must close.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from typing import Any

from gunicorn.http.errors import ParseException
from werkzeug.exceptions import ClientDisconnected

__all__ = [
    "BodyError",
    "BodyTooLarge",
    "BodyTimeout",
    "IncompleteBody",
    "MalformedBody",
    "read_body",
    "Deadline",
    "cut_off_after",
    "BODY_ARRIVED",
]

# A WSGI environ key, true when the server handed the app a request whose whole body had already
# arrived (crmsync/server/buffering_worker.py's BufferingThreadWorker): reading it cannot stall, so it
# needs no deadline (whose watcher thread would wake for each request).
BODY_ARRIVED = "crmsync.body_arrived"


class BodyError(Exception):
    """The request body cannot be used; `status` and `reason` are the answer."""

    status = 400
    reason = "malformed_body"


class BodyTooLarge(BodyError):
    status = 413
    reason = "payload_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"The body exceeds {limit} bytes.")


class BodyTimeout(BodyError):
    status = 408
    reason = "request_timeout"

    def __init__(self, seconds: float) -> None:
        super().__init__(f"The body did not arrive within {seconds:g} s.")


class IncompleteBody(BodyError):
    reason = "incomplete_body"

    def __init__(self) -> None:
        super().__init__("The connection ended before the body was complete.")


class MalformedBody(BodyError):
    reason = "malformed_body"

    def __init__(self) -> None:
        super().__init__("The body's chunked transfer coding is malformed.")


def read_body(environ: dict[str, Any], declared: int | None, limit: int, seconds: float) -> bytes:
    """The whole body of the request, `declared` (Content-Length) bytes long if given; or a BodyError."""
    if declared is not None and declared > limit:
        raise BodyTooLarge(limit)
    # gunicorn and werkzeug's server both hand the app the client socket; a test client has none.
    sock = (
        None
        if environ.get(BODY_ARRIVED)
        else environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    )
    watch = cut_off_after(sock, seconds)
    try:
        # One byte past the limit, so a body without Content-Length cannot exhaust memory.
        body = environ["wsgi.input"].read(limit + 1 if declared is None else declared)
    except ParseException:  # gunicorn: a bad chunk size, extension or terminator
        raise MalformedBody() from None
    except (OSError, ClientDisconnected):  # the peer reset or closed, a short chunk, the cut below
        body = None
    finally:
        expired = watch.cancel()
    if expired:
        raise BodyTimeout(seconds)
    if body is None or (declared is not None and len(body) < declared):
        raise IncompleteBody()
    if len(body) > limit:
        raise BodyTooLarge(limit)
    return bytes(body)


def cut_off_after(sock: socket.socket | None, seconds: float) -> Deadline:
    """Shut `sock`'s read side in `seconds` unless the returned Deadline is cancelled first."""
    return _DEADLINES.watch(sock, seconds)


class Deadline:
    """A socket whose read side is shut at `deadline` (time.monotonic()) unless cancelled first."""

    def __init__(self, sock: socket.socket | None, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.done = False
        self.expired = False

    def cancel(self) -> bool:
        """Stop watching; whether the deadline had already cut the read off."""
        with _DEADLINES.lock:
            self.done = True
            self.sock = None
            return self.expired


class _Deadlines:
    """One thread per process that shuts the read side of sockets whose headers or body are overdue.

    A socket timeout alone would not do: it bounds each recv(), so a client sending a byte just
    before each one expires could hold the thread for as long as it likes.
    """

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket | None, seconds: float) -> Deadline:
        watch = Deadline(sock, time.monotonic() + seconds)
        if sock is None:
            watch.done = True  # nothing to cut
            return watch
        with self.lock:
            heapq.heappush(self._heap, (watch.deadline, next(self._order), watch))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="read-deadlines", daemon=True)
                self._thread.start()
            if self._heap[0][2] is watch:
                self.lock.notify()  # the earliest deadline now: the thread must wake up sooner
        return watch

    def _run(self) -> None:
        with self.lock:
            while True:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].done or self._heap[0][0] <= now):
                    watch = heapq.heappop(self._heap)[2]
                    if not watch.done:
                        _cut_off(watch)
                self.lock.wait(self._heap[0][0] - now if self._heap else None)


def _cut_off(watch: Deadline) -> None:
    watch.done = watch.expired = True
    try:
        # The blocked recv() returns at once; the answer can still be written.
        if watch.sock is not None:
            watch.sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass  # already closed by the client


_DEADLINES = _Deadlines()
