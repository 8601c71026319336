"""Redis connections for every process, from `REDIS_URL`."""

from __future__ import annotations

from redis import Redis

__all__ = ["connect", "as_text"]


def connect(url: str) -> Redis:
    """A client for `url`. Heroku Redis serves `rediss://` with a self-signed certificate, which its
    documentation says to accept without verification (the channel is still encrypted)."""
    options: dict[str, object] = {"health_check_interval": 30, "socket_keepalive": True}
    if url.startswith("rediss://"):
        options["ssl_cert_reqs"] = None
    return Redis.from_url(url, **options)


def as_text(value: bytes | str, errors: str = "strict") -> str:
    """A Redis reply as text: clients built without `decode_responses` answer bytes."""
    return value.decode(errors=errors) if isinstance(value, bytes) else value
