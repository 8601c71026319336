"""Reading everything a Redis database holds as text, to prove what it does not hold."""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, cast

from redis import Redis


def every_text(redis: Redis) -> Iterator[tuple[str, str]]:
    """(key, text) for every key and value, whatever the type, with RQ's encodings undone:
    zlib (job `data`, `exc_info`) and base64 + zlib (result streams' `exc_string`)."""
    for raw_key in redis.scan_iter(count=1000):
        key = _text(raw_key)
        for value in [raw_key, *_values(redis, raw_key)]:
            for text in _decodings(value):
                yield key, text


def personal_values_found(redis: Redis, values: Iterable[str]) -> list[tuple[str, str]]:
    """(key, value) for each personal value found anywhere in Redis, case ignored."""
    wanted = [value.lower() for value in values]
    return [(key, value) for key, text in every_text(redis) for value in wanted if value in text.lower()]


def _values(redis: Redis, key: bytes) -> list[Any]:
    kind = _text(redis.type(key))
    if kind == "string":
        return [redis.get(key) or b""]
    if kind == "hash":
        return [item for pair in redis.hgetall(key).items() for item in pair]
    if kind == "list":
        return list(redis.lrange(key, 0, -1))
    if kind == "set":
        return list(redis.smembers(key))
    if kind == "zset":
        return list(redis.zrange(key, 0, -1))
    if kind == "stream":
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], redis.xrange(key))
        return [item for _, fields in entries for pair in fields.items() for item in pair]
    raise AssertionError(f"unexpected Redis type {kind} at {key!r}")


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _decodings(value: bytes) -> Iterator[str]:
    yield value.decode(errors="replace")
    for candidate in (value, _unbase64(value)):
        if candidate:
            try:
                yield zlib.decompress(candidate).decode(errors="replace")
            except zlib.error:
                pass
    unbased = _unbase64(value)
    if unbased:
        yield unbased.decode(errors="replace")


def _unbase64(value: bytes) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""
