"""GDPR erasure on the personal-data API: one purchase at a time, each step done once."""

from __future__ import annotations

from collections.abc import Iterable

from redis import Redis

from crmsync.keys import erasure_steps_key

from .documents import DELETE_PERSONAL_CUSTOMER_DATA
from .errors import PayloadErrors
from .platform_api import PlatformApi

__all__ = ["erase_personal_data"]

# Steps are remembered well past the longest retry schedule, so a replay does not redo them either.
STEPS_TTL_SECONDS = 35 * 86_400


def erase_personal_data(api: PlatformApi, redis: Redis, webhook_id: str, purchase_ids: Iterable[int]) -> int:
    """Anonymise every purchase; return how many were anonymised by this attempt.

    Each finished purchase is recorded, so when the third purchase fails the retry resumes there
    instead of repeating the first two.
    """
    steps = erasure_steps_key(webhook_id)
    done = {int(member) for member in redis.smembers(steps)}
    erased = 0
    for purchase_id in purchase_ids:
        if purchase_id in done:
            continue
        data = api.execute(DELETE_PERSONAL_CUSTOMER_DATA, {"purchaseId": purchase_id})
        if not (data.get("deletePersonalCustomerData") or {}).get("updatedPurchase"):
            raise PayloadErrors(f"deletePersonalCustomerData returned no purchase for purchase {purchase_id}")
        with redis.pipeline() as pipe:
            pipe.sadd(steps, purchase_id)
            pipe.expire(steps, STEPS_TTL_SECONDS)
            pipe.execute()
        erased += 1
    return erased
