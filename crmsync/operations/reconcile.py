"""`crmsync reconcile`: find and repair the drift between a CRM export and the platform.

1. List every platform customer (pages of 100, `after` cursors, `isSystem: false`, sorted by
   creation) into a compact index: external id → field digests.
2. Stream the export through the source's mapping and plan: create, update (field names only),
   delete (only with `delete_missing`), unchanged.
3. Refuse a plan that deletes more than `max_deletes` (default: 10 % of the platform's customers
   with an external id) or that deletes while some lines of the export were unreadable.
4. With `apply`, read the export a second time and queue the plan's steps as events through the
   normal pipeline; the ledger lets a webhook newer than the export win.
5. Keep the run's report in Redis.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crmsync.core.errors import RetryableError, SyncError
from crmsync.core.events import Event
from crmsync.core.queue import Accepted
from jobs.documents import LIST_CUSTOMERS
from jobs.id_cache import IdCache
from jobs.platform_api import PlatformApi

from .export_events import reconcile_event
from .exports import read_export
from .reconcile_plan import PlatformIndex, ReconcilePlan, default_max_deletes, plan_reconcile, refusal
from .reconcile_reports import ReconcileReport, ReconcileReports
from .records import CustomerRecord, ExportMapping, RecordSkipped, Skipped, map_records

__all__ = ["ReconcileRun", "ListingFailed", "list_platform", "reconcile", "Accept"]

# Accepts one event as a delivery (crmsync.core.queue.EventQueue.accept).
Accept = Callable[[Event], Accepted]
LISTING_ATTEMPTS = 5


class ListingFailed(RuntimeError):
    """The platform's customers could not all be listed: no plan can be trusted, none is made."""


@dataclass(frozen=True)
class ReconcileRun:
    """What one `crmsync reconcile` was asked to do."""

    export: Path
    mapping: ExportMapping
    as_of: str
    object: str = ""
    apply: bool = False
    delete_missing: bool = False
    max_deletes: int | None = None


def list_platform(
    api: PlatformApi, on_page: Callable[[int, int], None] | None = None, ids: IdCache | None = None
) -> tuple[PlatformIndex, int]:
    """Index every non-system customer; return the index and the number of pages read. `on_page` is
    told each page's size and the listing's total (for a progress bar). Each page's platform ids go
    into the id cache `ids`, which spares the repairs' writes their lookups."""
    index, after, pages = PlatformIndex(), None, 0
    while True:
        connection = _page(api, after)["customers"]
        for node in connection["nodes"]:
            index.add(node)
        if ids is not None:
            ids.put_many((str(node["externalId"]), str(node["id"])) for node in connection["nodes"]
                         if node.get("externalId") and node.get("id"))  # fmt: skip
        pages += 1
        if on_page is not None:
            on_page(len(connection["nodes"]), int(connection.get("totalCount") or 0))
        if not connection["pageInfo"]["hasNextPage"]:
            return index, pages
        after = connection["pageInfo"]["endCursor"]


def _page(api: PlatformApi, after: str | None) -> dict[str, Any]:
    """One page; a brief failure (rate limit, 5xx, timeout) is retried, honouring Retry-After."""
    for attempt in range(LISTING_ATTEMPTS):
        try:
            return api.execute(LIST_CUSTOMERS, {"after": after})
        except RetryableError as exc:
            if attempt == LISTING_ATTEMPTS - 1:
                raise ListingFailed(f"listing the platform's customers failed: {exc}") from None
            time.sleep(exc.retry_after if exc.retry_after is not None else 2**attempt)
        except SyncError as exc:
            raise ListingFailed(f"listing the platform's customers failed: {exc}") from None
    raise AssertionError("unreachable")


def reconcile(
    run: ReconcileRun,
    api: PlatformApi,
    accept: Accept,
    reports: ReconcileReports,
    on_page: Callable[[int, int], None] | None = None,
    ids: IdCache | None = None,
) -> ReconcileReport:
    """List, plan, check, (apply,) and keep the report; return it."""
    started = datetime.now(UTC)
    run_id = f"{started:%Y%m%dT%H%M%S}Z-{secrets.token_hex(3)}"
    index, pages = list_platform(api, on_page, ids)
    plan = plan_reconcile(index, map_records(read_export(run.export), run.mapping), run.delete_missing)
    max_deletes = run.max_deletes if run.max_deletes is not None else default_max_deletes(plan)
    refused = refusal(plan, max_deletes) if run.delete_missing else ""
    job_ids: list[str] = []
    if run.apply and not refused:
        job_ids = _apply(run, run_id, plan, accept)
    report = ReconcileReport.of(
        plan,
        run_id=run_id,
        started_at=started.isoformat(timespec="seconds"),
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        source=run.mapping.source,
        object=run.object,
        export=run.export.name,
        outcome="refused" if refused else ("applied" if run.apply else "planned"),
        max_deletes=max_deletes if run.delete_missing else None,
        refused=refused,
        queued=len(job_ids),
        pages=pages,
        job_ids=job_ids,
    )
    reports.save(report)
    return report


def _apply(run: ReconcileRun, run_id: str, plan: ReconcilePlan, accept: Accept) -> list[str]:
    """Queue the plan's steps; the export is read again for the values of its creates and updates."""
    creates, updates = set(plan.create), dict(plan.update)
    job_ids = []
    for item in map_records(read_export(run.export), run.mapping):
        step = None if isinstance(item, Skipped) else _step(item, creates, updates)
        if step is None:
            continue
        assert isinstance(item, CustomerRecord)
        kind, fields = step
        try:
            event = reconcile_event(run_id, kind, item.external_id, run.as_of, item, fields)
        except RecordSkipped as exc:
            plan.skipped.add(Skipped(item.line, str(exc), item.external_id))
            continue
        job_ids.append(accept(event).job_id)
    for external_id in plan.delete:
        job_ids.append(accept(reconcile_event(run_id, "delete", external_id, run.as_of)).job_id)
    return job_ids


def _step(
    item: CustomerRecord, creates: set[str], updates: dict[str, list[str]]
) -> tuple[str, tuple[str, ...]] | None:
    """This record's step in the plan, taken once (a duplicate record later in the file is not)."""
    if item.external_id in creates:
        creates.discard(item.external_id)
        return "create", ()
    fields = updates.pop(item.external_id, None)
    return None if fields is None else ("update", tuple(fields))
