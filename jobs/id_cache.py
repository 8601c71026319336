"""The platform id of each customer, by external id, so that a write needs no lookup first.

The platform mutates only by its own id, and has no lookup by external id but a query: without this
cache every write costs two requests. An entry is written by every create, update and lookup (and by
reconcile's listing), and removed by a delete. It is a hint, never the truth: a write whose cached id
the platform no longer knows (the customer was deleted out of band) drops the entry, looks the
customer up and tries once more (jobs/customers.py). It holds ids only, never customer data.
"""

from __future__ import annotations

from collections.abc import Iterable

from redis import Redis

from crmsync.core.keys import CUSTOMER_ID_TTL_SECONDS, customer_ids_key
from crmsync.core.redis_conn import as_text

__all__ = ["IdCache", "NO_CACHE"]


class IdCache:
    """External id → platform id, in Redis (shared by every worker and dyno)."""

    def __init__(self, redis: Redis | None, enabled: bool = True, ttl: int = CUSTOMER_ID_TTL_SECONDS) -> None:
        self._redis = redis
        # Off only for a benchmark's baseline (ID_CACHE=off): every write then looks up first.
        self.enabled = enabled and redis is not None
        self._ttl = ttl

    def get(self, external_id: str) -> str | None:
        """The cached platform id, or None."""
        if not self.enabled:
            return None
        assert self._redis is not None
        found = self._redis.hget(customer_ids_key(external_id), external_id)
        return as_text(found) if found is not None else None

    def put(self, external_id: str, customer_id: str) -> None:
        """Remember that `external_id` is the platform's `customer_id`."""
        self.put_many([(external_id, customer_id)])

    def put_many(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Remember several (external id, platform id) pairs in one round trip."""
        if not self.enabled or self._redis is None:
            return
        with self._redis.pipeline(transaction=False) as pipe:
            for external_id, customer_id in pairs:
                key = customer_ids_key(external_id)
                pipe.hset(key, external_id, customer_id)
                pipe.expire(key, self._ttl)
            pipe.execute()

    def drop(self, external_id: str) -> None:
        """Forget `external_id`'s platform id (deleted, or found gone). Done even when the cache is off
        for reads (ID_CACHE=off): an entry written before must not outlive what it names."""
        if self._redis is None or not external_id:
            return
        self._redis.hdel(customer_ids_key(external_id), external_id)


# No cache: every write looks its customer up first (merges' lookups by external id, and tests).
NO_CACHE = IdCache(None, enabled=False)
