"""The reconcile plan: what to create, update and delete so the platform matches an export.

Pure computation over a compact index of the platform — for each external id, a digest of each
customer field (24 bytes), never the values — and the export's customer records, streamed. The
plan names the fields an update would change, never their values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from crmsync.core.events import CUSTOMER_FIELDS, normalize_labels

from .records import DIGEST_BYTES, CustomerRecord, Skipped, SkippedLog, field_digests

__all__ = [
    "PlatformIndex",
    "ReconcilePlan",
    "plan_reconcile",
    "platform_fields",
    "refusal",
    "default_max_deletes",
]

# With --delete-missing and no --max-deletes, at most this share of the platform's customers that
# have an external id may be deleted in one run: a truncated or empty export must not wipe it.
DEFAULT_MAX_DELETE_SHARE = 0.10


def platform_fields(node: Mapping[str, Any]) -> dict[str, Any]:
    """A platform Customer node's synced fields, normalised as records are (see records.py)."""
    return {
        "name": node.get("name") or "",
        "description": node.get("description") or "",
        "labels": normalize_labels(list(node.get("labels") or [])),
    }


@dataclass
class PlatformIndex:
    """The platform's customers as {external id: field digests}, and how many have no external id."""

    digests: dict[str, bytes] = field(default_factory=dict)
    without_external_id: int = 0

    def add(self, node: Mapping[str, Any]) -> None:
        """Index one Customer node (`externalId`, `name`, `description`, `labels`)."""
        external_id = node.get("externalId")
        if not external_id:
            # Customers without an external id are never touched: crmsync cannot know their CRM record.
            self.without_external_id += 1
            return
        self.digests[str(external_id)] = field_digests(platform_fields(node))

    @property
    def customers(self) -> int:
        return len(self.digests) + self.without_external_id


@dataclass
class ReconcilePlan:
    """The outcome of comparing an export with the platform, by external id."""

    create: list[str] = field(default_factory=list)
    update: dict[str, list[str]] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)
    # Platform customers the export lacks, when deleting them was not asked for (--delete-missing).
    not_in_export: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: SkippedLog = field(default_factory=SkippedLog)
    platform_customers: int = 0
    without_external_id: int = 0

    @property
    def drift(self) -> int:
        """How many changes the plan holds."""
        return len(self.create) + len(self.update) + len(self.delete)

    @property
    def unreadable(self) -> int:
        """Lines that could not be read at all: which customers they held is unknown."""
        return self.skipped.unreadable

    def counts(self) -> dict[str, int]:
        return {
            "create": len(self.create),
            "update": len(self.update),
            "delete": len(self.delete),
            "unchanged": self.unchanged,
            "skipped": self.skipped.count,
            "not_in_export": len(self.not_in_export),
            "platform_customers": self.platform_customers,
            "without_external_id": self.without_external_id,
        }


def plan_reconcile(
    index: PlatformIndex, items: Iterable[CustomerRecord | Skipped], delete_missing: bool
) -> ReconcilePlan:
    """Compare the export's records (streamed) with the index; `index` is consumed."""
    plan = ReconcilePlan(platform_customers=index.customers, without_external_id=index.without_external_id)
    seen: set[str] = set()
    for item in items:
        if isinstance(item, Skipped):
            plan.skipped.add(item)
            # A record skipped for a bad field still names its customer: it must not look missing.
            if item.external_id:
                seen.add(item.external_id)
                index.digests.pop(item.external_id, None)
            continue
        if item.external_id in seen:
            plan.skipped.add(
                Skipped(item.line, "duplicate external id: an earlier record has it", item.external_id)
            )
            continue
        seen.add(item.external_id)
        on_platform = index.digests.pop(item.external_id, None)
        if on_platform is None:
            if "name" in item.fields:
                plan.create.append(item.external_id)
            else:
                plan.skipped.add(
                    Skipped(item.line, "not on the platform, and no name to create it with", item.external_id)
                )
            continue
        changed = changed_fields(on_platform, field_digests(item.fields), item.fields)
        if changed:
            plan.update[item.external_id] = changed
        else:
            plan.unchanged += 1
    missing = list(index.digests)
    index.digests.clear()
    if delete_missing:
        plan.delete = missing
    else:
        plan.not_in_export = missing
    return plan


def changed_fields(on_platform: bytes, in_export: bytes, carried: Mapping[str, Any]) -> list[str]:
    """The names of the fields the record carries whose digest differs from the platform's."""
    changed = []
    for position, name in enumerate(CUSTOMER_FIELDS):
        part = slice(position * DIGEST_BYTES, (position + 1) * DIGEST_BYTES)
        if name in carried and on_platform[part] != in_export[part]:
            changed.append(name)
    return changed


def default_max_deletes(plan: ReconcilePlan) -> int:
    """10 % of the platform's customers that have an external id, rounded down."""
    return int((plan.platform_customers - plan.without_external_id) * DEFAULT_MAX_DELETE_SHARE)


def refusal(plan: ReconcilePlan, max_deletes: int) -> str:
    """Why the plan must not be applied (empty when it may be)."""
    if not plan.delete:
        return ""
    if len(plan.delete) > max_deletes:
        return f"{len(plan.delete)} deletion(s) planned, more than the {max_deletes} allowed (--max-deletes)"
    if plan.unreadable:
        # Their customers would look missing from the export and be deleted by mistake.
        return f"{plan.unreadable} line(s) of the export could not be read; deletions are not safe"
    return ""
