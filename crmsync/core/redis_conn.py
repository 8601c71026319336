"""Redis connections for every process, from `REDIS_URL`."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from redis import Redis
from redis.exceptions import NoScriptError

__all__ = ["connect", "as_text", "redact_url", "LuaScript"]


def connect(url: str) -> Redis:
    """A client for `url`. Heroku Redis serves `rediss://` with a self-signed certificate, which its
    documentation says to accept without verification (the channel is still encrypted)."""
    options: dict[str, object] = {"health_check_interval": 30}
    if not url.startswith("unix://"):
        options["socket_keepalive"] = True  # a TCP option: a unix socket connection refuses it
    if url.startswith("rediss://"):
        options["ssl_cert_reqs"] = None
    return Redis.from_url(url, **options)


def as_text(value: bytes | str, errors: str = "strict") -> str:
    """A Redis reply as text: clients built without `decode_responses` answer bytes."""
    return value.decode(errors=errors) if isinstance(value, bytes) else value


def redact_url(url: str) -> str:
    """`url` without its password (in the user info or a `password=` parameter), for messages."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if has_password else f"***@{host}"
    query = re.sub(r"(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    # Built by hand: urlunsplit would drop the empty host of unix:///path.
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


class LuaScript:
    """A Lua script run by its SHA1, loaded again when Redis does not know it (restarted, flushed):
    what redis-py's `register_script` gives, without the ~25 K instructions its `Script.__call__`
    spends per call on the way to the same EVALSHA (an import, copies of the arguments, deprecation
    checks), for the one script on the web's hot path (docs/benchmarks.md)."""

    def __init__(self, redis: Redis, source: str) -> None:
        self._redis = redis
        self._source = source
        self._sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return self._redis.execute_command("EVALSHA", self._sha, len(keys), *keys, *args)
        except NoScriptError:
            self._sha = self._redis.script_load(self._source)
            return self._redis.execute_command("EVALSHA", self._sha, len(keys), *keys, *args)
