"""The web process under clients that stall, trickle, cut their body short, break chunked framing or
send too much, through gunicorn with crmsync's own config (crmsync/server/gunicorn_conf.py), as deployed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from tests.support import SECRET, WEBHOOK_SECRET, free_port, signed_request

ROOT = Path(__file__).resolve().parent.parent
BODY_TIMEOUT_SECONDS = 2


def deleted(number: int = 0) -> dict[str, object]:
    return {
        "type": "customer.deleted",
        "timestamp": "2026-11-22T10:00:00Z",
        "data": {"external_id": f"crm-{number}"},
    }


def queued_jobs(redis: Redis) -> list[str]:
    return Queue("crmsync", connection=redis, serializer=JSONSerializer).get_job_ids()


@pytest.fixture(scope="module")
def gunicorn_server(redis_url: str) -> Iterator[tuple[str, int]]:
    """gunicorn with the production config (2 processes of 4 threads), BODY_TIMEOUT_SECONDS=2."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if name != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(REDIS_URL=redis_url, PORT=str(port), WEBHOOK_SECRET=WEBHOOK_SECRET, WEB_CONCURRENCY="2",
               WEB_THREADS="4", BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT_SECONDS))  # fmt: skip
    command = ["gunicorn", "--config", "python:crmsync.server.gunicorn_conf", "crmsync.web:create_app()"]
    process = subprocess.Popen([sys.executable, "-m", *command], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, "gunicorn exited"
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok:
                break
        except requests.RequestException:
            assert time.monotonic() < deadline, "gunicorn never answered"
            time.sleep(0.05)
    yield "127.0.0.1", port
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


@pytest.fixture
def server(gunicorn_server: tuple[str, int], redis: Redis) -> tuple[str, int]:
    """The gunicorn server's address, with Redis emptied for this test."""
    return gunicorn_server


def url(server: tuple[str, int]) -> str:
    return f"http://{server[0]}:{server[1]}/webhooks/crm"


def head(headers: dict[str, str], **extra: str) -> bytes:
    lines = ["POST /webhooks/crm HTTP/1.1", "Host: crmsync.test"]
    lines += [f"{name}: {value}" for name, value in {**headers, **extra}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a 30 s guard, never reached)."""
    connection.settimeout(30)
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def deliver(server: tuple[str, int], number: int) -> requests.Response:
    headers, body = signed_request(SECRET, deleted(number))
    return requests.post(url(server), data=body, headers=headers, timeout=30)


def test_stalled_bodies_do_not_keep_valid_deliveries_out(server: tuple[str, int], redis: Redis) -> None:
    # 16 clients send their headers and half a body, then nothing: twice the 8 threads there are.
    stalled = []
    for number in range(16):
        headers, body = signed_request(SECRET, deleted(number))
        connection = socket.create_connection(server)
        connection.sendall(head(headers, **{"Content-Length": str(len(body))}) + body[: len(body) // 2])
        stalled.append(connection)
    # Meanwhile, with all of them still open, 20 valid deliveries are each accepted.
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = [
            response.status_code for response in pool.map(lambda n: deliver(server, n), range(100, 120))
        ]
    assert statuses == [202] * 20
    # None of them ever held a thread; each is closed once it has sent nothing for `keepalive` (5 s).
    for connection in stalled:
        assert answer(connection) == b""
        connection.close()
    assert len(queued_jobs(redis)) == 20


def test_stalled_headers_do_not_keep_valid_deliveries_out(server: tuple[str, int], redis: Redis) -> None:
    # 16 clients send half their headers, then nothing: gunicorn alone would wait on each for good.
    stalled = []
    for _ in range(16):
        connection = socket.create_connection(server)
        connection.sendall(b"POST /webhooks/crm HTTP/1.1\r\nHost: crmsync.test\r\nContent-Type: appl")
        stalled.append(connection)
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = [response.status_code for response in pool.map(lambda n: deliver(server, n), range(20))]
    assert statuses == [202] * 20
    # None of them ever held a thread; each is closed once it has sent nothing for `keepalive` (5 s).
    for connection in stalled:
        assert answer(connection) == b""
        connection.close()
    assert len(queued_jobs(redis)) == 20


def test_a_body_trickled_a_byte_at_a_time_is_cut_off_at_the_deadline(server: tuple[str, int]) -> None:
    # A timeout on each read would never fire: a byte arrives every 0.2 s, for as long as allowed.
    headers, body = signed_request(SECRET, deleted())
    connection = socket.create_connection(server)
    connection.sendall(head(headers, **{"Content-Length": str(len(body) + 10_000)}) + body)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.2):
            try:
                connection.sendall(b" ")
            except OSError:
                return

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        reply = answer(connection)
    finally:
        stop.set()
        sender.join()
        connection.close()
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:80]
    assert b'"error":"request_timeout"' in reply


def test_a_body_cut_short_by_the_client_is_never_queued(server: tuple[str, int], redis: Redis) -> None:
    # Signed as sent, but shorter than its Content-Length: the client closed before the end.
    headers, body = signed_request(SECRET, deleted())
    connection = socket.create_connection(server)
    connection.sendall(head(headers, **{"Content-Length": str(len(body) + 100)}) + body)
    connection.shutdown(socket.SHUT_WR)
    reply = answer(connection)
    connection.close()
    assert reply.startswith(b"HTTP/1.1 400 "), reply[:80]
    assert b'"error":"incomplete_body"' in reply
    assert queued_jobs(redis) == []


@pytest.mark.parametrize("chunk_size", [b"zz", b"-1", b"1"])
def test_chunked_body_with_a_malformed_chunk_is_400(
    server: tuple[str, int], redis: Redis, chunk_size: bytes
) -> None:
    headers, body = signed_request(SECRET, deleted())
    connection = socket.create_connection(server)
    chunked = chunk_size + b"\r\n" + body + b"\r\n0\r\n\r\n"
    connection.sendall(head(headers, **{"Transfer-Encoding": "chunked"}) + chunked)
    reply = answer(connection)
    connection.close()
    assert reply.startswith(b"HTTP/1.1 400 "), reply[:80]
    assert b'"error":"malformed_body"' in reply
    assert queued_jobs(redis) == []


def test_pipelined_requests_on_one_connection_are_each_answered(
    server: tuple[str, int], redis: Redis
) -> None:
    # Both requests in one write: the second is already buffered when the first is handled.
    requests_bytes = b""
    for number in range(2):
        headers, body = signed_request(SECRET, deleted(number))
        requests_bytes += head(headers, **{"Content-Length": str(len(body))}) + body
    connection = socket.create_connection(server)
    connection.sendall(requests_bytes + head({}, Connection="close", **{"Content-Length": "0"}))
    reply = answer(connection)
    connection.close()
    assert reply.count(b"HTTP/1.1 202 ") == 2, reply[:300]
    assert len(queued_jobs(redis)) == 2


def test_a_client_that_waits_for_100_continue_is_served(server: tuple[str, int], redis: Redis) -> None:
    # curl sends larger bodies only after "100 Continue": nothing may wait for a body not yet sent.
    headers, body = signed_request(SECRET, deleted())
    connection = socket.create_connection(server)
    connection.settimeout(30)
    connection.sendall(
        head(headers, Expect="100-continue", Connection="close", **{"Content-Length": str(len(body))})
    )
    assert connection.recv(100).startswith(b"HTTP/1.1 100 Continue")
    connection.sendall(body)
    reply = answer(connection)
    connection.close()
    assert b"HTTP/1.1 202 " in reply, reply[:200]
    assert len(queued_jobs(redis)) == 1


def oversize_with_length() -> dict[str, object]:
    return {"data": b"x" * 300_000, "headers": {"content-type": "application/json"}}


def oversize_chunked() -> dict[str, object]:
    return {"data": iter([b"x" * 65536] * 5), "headers": {"content-type": "application/json"}}


def not_json_with_a_large_body() -> dict[str, object]:
    return {"data": b"x" * 200_000, "headers": {"content-type": "text/plain"}}


@pytest.mark.parametrize(
    ("rejected", "status"),
    [(oversize_with_length, 413), (oversize_chunked, 413), (not_json_with_a_large_body, 415)],
)
def test_a_kept_alive_session_goes_on_after_a_request_whose_body_was_refused(
    server: tuple[str, int], redis: Redis, rejected: object, status: int
) -> None:
    with requests.Session() as session:
        refused = session.post(url(server), timeout=30, **rejected())  # type: ignore[operator]
        assert refused.status_code == status
        assert refused.headers["Connection"] == "close"
        headers, body = signed_request(SECRET, deleted())
        assert session.post(url(server), data=body, headers=headers, timeout=30).status_code == 202
    assert len(queued_jobs(redis)) == 1


def test_a_request_still_arriving_when_its_worker_process_restarts_is_answered(redis_url: str) -> None:
    # One process, replaced after two requests (as on a graceful restart): the request of `late` is
    # still arriving when the second request makes its process stop; it must be answered, not dropped.
    port = free_port()
    env = {name: value for name, value in os.environ.items() if name != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(REDIS_URL=redis_url, PORT=str(port), WEBHOOK_SECRET=WEBHOOK_SECRET, WEB_CONCURRENCY="1",
               GUNICORN_CMD_ARGS="--max-requests 2")  # fmt: skip
    command = ["gunicorn", "--config", "python:crmsync.server.gunicorn_conf", "crmsync.web:create_app()"]
    process = subprocess.Popen([sys.executable, "-m", *command], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "gunicorn exited"
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)  # the first request
                break
            except requests.RequestException:
                assert time.monotonic() < deadline, "gunicorn never answered"
                time.sleep(0.05)
        headers, body = signed_request(SECRET, deleted(), "msg_late")
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        with socket.create_connection(("127.0.0.1", port), timeout=30) as late:
            late.sendall(b"POST /webhooks/crm HTTP/1.1\r\nHost: x\r\n")
            # The second request: the process stops taking new ones, and finishes what it holds.
            assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).ok
            late.sendall(head.encode())
            time.sleep(0.5)  # nothing to await: the stopping process reads that part on its own
            late.sendall(f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            answer = late.recv(65_536)
        assert answer.startswith(b"HTTP/1.1 202 "), answer
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_a_burst_of_new_connections_is_spread_over_the_web_processes(server: tuple[str, int]) -> None:
    # gthread lets the process woken first accept every connection waiting (16 of 16 seen), and a
    # kept-alive connection stays with the process that took it: the other one would idle. Five
    # bursts, as a CRM or a router opens them; each process must take a fair part of every one.
    serving: set[int] = set()
    deadline = time.monotonic() + 30
    while len(serving) < 2:  # both processes have loaded the app (a new server's second may not yet)
        assert time.monotonic() < deadline, f"only {serving} served"
        with socket.create_connection(server, timeout=30) as connection:
            ask_healthz([connection])
            serving |= set(connections_by_process(server[1], {connection.getsockname()[1]}))
    for _ in range(5):
        connections = [socket.create_connection(server, timeout=30) for _ in range(16)]
        try:
            ask_healthz(connections)
            held = connections_by_process(
                server[1], {connection.getsockname()[1] for connection in connections}
            )
            assert len(held) == 2 and all(5 <= count <= 11 for count in held.values()), held
        finally:
            for connection in connections:
                connection.close()


def ask_healthz(connections: list[socket.socket]) -> None:
    """`GET /healthz` on every connection at once, then each answer: the connections stay open."""
    for connection in connections:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: crmsync.test\r\n\r\n")
    for connection in connections:
        assert connection.recv(65_536).startswith(b"HTTP/1.1 200 ")


def connections_by_process(port: int, client_ports: set[int]) -> dict[int, int]:
    """How many of the connections from `client_ports` to `port` each server process holds open."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(address.split(":")[1], 16) for address in fields[1:3])
        if local == port and remote in client_ports:
            inodes.add(f"socket:[{fields[9]}]")
    held: dict[int, int] = {}
    for process in Path("/proc").iterdir():
        if not process.name.isdigit() or int(process.name) == os.getpid():
            continue
        try:
            count = sum(os.readlink(fd) in inodes for fd in (process / "fd").iterdir())
        except OSError:
            continue  # gone, or not ours to read
        if count:
            held[int(process.name)] = count
    return held
