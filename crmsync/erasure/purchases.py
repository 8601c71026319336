"""GDPR erasure on the personal-data API: one purchase at a time, each step done once, each audited."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from redis import Redis

from crmsync.core.errors import GraphQLErrors, PayloadErrors, SyncError
from crmsync.core.keys import ERASURE_STEPS_TTL_SECONDS, erasure_steps_key

from .audit import ErasureAudit

__all__ = ["erase_personal_data", "PurchaseErasure", "PurchasesNotErased"]


class PurchasesNotErased(GraphQLErrors):
    """The API refused some purchases (unknown id, ...): retrying the same request cannot help."""


@dataclass
class PurchaseErasure:
    """What one attempt did: how many purchases it anonymised, and which ones the API refused."""

    erased: int = 0
    refused: dict[int, str] = field(default_factory=dict)

    def raise_if_refused(self) -> None:
        if self.refused:
            details = "; ".join(f"purchase {pid}: {message}" for pid, message in self.refused.items())
            raise PurchasesNotErased(f"{len(self.refused)} purchase(s) not erased: {details}")


def erase_personal_data(
    anonymise: Callable[[int], None],
    redis: Redis,
    webhook_id: str,
    external_id: str,
    purchase_ids: Iterable[int],
    audit: ErasureAudit,
) -> PurchaseErasure:
    """Anonymise every purchase not anonymised yet, recording each outcome in the audit trail.

    Each finished purchase is remembered, so when the third purchase fails (the API is briefly
    unavailable) the retry resumes there instead of repeating the first two. A purchase the API
    refuses (an unknown id) does not stop the others: erase everything that can be erased, then let
    the caller fail the erasure for the refused ones. `anonymise(purchase_id)` is the API call
    (jobs.personal_data.anonymise_purchase); it raises a SyncError when the purchase is not erased.
    """
    steps = erasure_steps_key(webhook_id)
    done = {int(member) for member in redis.smembers(steps)}
    outcome = PurchaseErasure()
    for purchase_id in purchase_ids:
        if purchase_id in done:
            continue
        try:
            anonymise(purchase_id)
        except (GraphQLErrors, PayloadErrors) as exc:
            verdict = "not_found" if "not found" in str(exc).lower() else "rejected"
            audit.purchase(webhook_id, external_id, purchase_id, verdict, str(exc))
            outcome.refused[purchase_id] = str(exc)
            continue
        except SyncError as exc:
            audit.purchase(webhook_id, external_id, purchase_id, "failed", f"{exc.failure_class}: {exc}")
            raise
        with redis.pipeline() as pipe:
            pipe.sadd(steps, purchase_id)
            pipe.expire(steps, ERASURE_STEPS_TTL_SECONDS)
            pipe.execute()
        audit.purchase(webhook_id, external_id, purchase_id, "erased")
        outcome.erased += 1
    return outcome
