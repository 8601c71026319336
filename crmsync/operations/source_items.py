"""What the CRM sources ignored and rejected, as operators see it (`crmsync sources`, the dashboard).

Rejected items are kept with their reason and identifiers only (never a value), the last
REJECTED_ITEMS_KEPT of them for REJECTED_ITEMS_TTL_SECONDS; ignored and rejected items are counted
per source and type (crmsync.core.counters).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from redis import Redis

from crmsync.core.counters import VERSION_FALLBACK, read_source_items
from crmsync.core.keys import REJECTED_ITEMS_KEY
from crmsync.core.redis_conn import as_text
from webhooks.sources.registry import kind_named

__all__ = [
    "RejectedItem",
    "rejected_items",
    "ignored_counts",
    "rejected_counts",
    "rejected_type_counts",
    "VersionFallback",
    "version_fallbacks",
]


@dataclass(frozen=True)
class RejectedItem:
    """One item a source could not map: when, from which source, why, and its identifiers."""

    at: datetime
    source: str
    reason: str
    identifiers: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(timespec="seconds"), "source": self.source, "reason": self.reason,
                "identifiers": self.identifiers}  # fmt: skip


def rejected_items(redis: Redis, limit: int = 100) -> list[RejectedItem]:
    """The last `limit` rejected items, newest first."""
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], redis.xrevrange(REJECTED_ITEMS_KEY, count=limit))
    items = []
    for entry_id, raw in entries:
        fields = {as_text(name): as_text(value) for name, value in raw.items()}
        millis = int(as_text(entry_id).partition("-")[0])
        items.append(
            RejectedItem(
                at=datetime.fromtimestamp(millis / 1000, UTC),
                source=fields.get("source", ""),
                reason=fields.get("reason", ""),
                identifiers=json.loads(fields.get("ids") or "{}"),
            )
        )
    return items


def ignored_counts(redis: Redis) -> dict[tuple[str, str], int]:
    """(source, type) → how many items of that type the source ignored."""
    counts = read_source_items(redis)
    return {
        (source, item_type): n
        for (source, outcome, item_type), n in sorted(counts.items())
        if outcome == "ignored"
    }


def rejected_counts(redis: Redis) -> dict[str, int]:
    """source → how many items it rejected (of every type)."""
    totals: dict[str, int] = {}
    for (source, outcome, _), n in sorted(read_source_items(redis).items()):
        if outcome == "rejected":
            totals[source] = totals.get(source, 0) + n
    return totals


def rejected_type_counts(redis: Redis) -> dict[tuple[str, str], int]:
    """(source, type) → how many items of that type the source rejected."""
    counts = read_source_items(redis)
    return {key[::2]: n for key, n in sorted(counts.items()) if key[1] == "rejected"}


@dataclass(frozen=True)
class VersionFallback:
    """Events a source mapped without their version field: which record type, what stood in, how many."""

    source: str
    record_type: str
    used: str
    count: int

    @property
    def fix(self) -> str:
        """What the operator changes so the CRM's own clock orders these events."""
        try:
            return kind_named(self.source).version_fix
        except ValueError:  # a declared source
            return "send the record's last-modified time"

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "record_type": self.record_type, "used": self.used,
                "count": self.count, "fix": self.fix}  # fmt: skip


def version_fallbacks(redis: Redis) -> list[VersionFallback]:
    """Every (source, record type, stand-in) that ordered events without their version field."""
    fallbacks = []
    for (source, outcome, item_type), n in sorted(read_source_items(redis).items()):
        if outcome == VERSION_FALLBACK:
            record_type, _, used = item_type.rpartition(":")
            fallbacks.append(VersionFallback(source, record_type, used, n))
    return fallbacks
