"""`crmsync import` and `crmsync reconcile`: backfill the platform from a CRM export, and find and
repair drift between them (crmsync/operations/importer.py and reconcile.py do the work)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from tqdm import tqdm

from crmsync.cli.settings import command_settings
from crmsync.core.display import printable
from crmsync.core.queue import EventQueue
from crmsync.core.redis_conn import connect
from crmsync.operations.export_events import utc_timestamp
from crmsync.operations.export_mappings import SOURCES, MappingUnavailable, mapping_for
from crmsync.operations.exports import ExportError, csv_header, read_export
from crmsync.operations.importer import ImportSummary, import_records
from crmsync.operations.reconcile import ListingFailed, ReconcileRun, reconcile
from crmsync.operations.reconcile_reports import KINDS, ReconcileReport, ReconcileReports
from crmsync.operations.records import CLOCK_SKEW, ExportMapping, map_records, parse_time
from jobs.id_cache import IdCache
from jobs.platform_api import PlatformApi
from webhooks.sources.registry import STANDARD

__all__ = ["import_command", "reconcile_command", "EXIT_DRIFT", "EXIT_REFUSED", "EXIT_FAILED"]

EXIT_DRIFT = 1  # --check, and the run found drift
EXIT_REFUSED = 3  # the plan deletes too much (or with unreadable lines): nothing was applied
EXIT_FAILED = 4  # the platform could not be listed
SHOWN_PER_KIND = 20
T = TypeVar("T")


def _source_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options both commands take: --source, --object, --as-of, --json."""
    for option in reversed(
        [
            click.option(
                "--source",
                type=click.Choice(SOURCES),
                default=STANDARD,
                show_default=True,
                help="Which CRM produced the export (its mapping says which keys mean what).",
            ),
            click.option(
                "--object", "object_type", default="", help="The record type, where a source has several."
            ),
            click.option(
                "--as-of",
                default=None,
                help="The export's time (RFC 3339) for records without a "
                "version field [default: the file's modification time].",
            ),
            click.option("--json", "as_json", is_flag=True, help="Print one JSON object, for scripts."),
        ]
    ):
        command = option(command)
    return command


@click.command("import")
@click.argument("export", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_source_options
def import_command(export: Path, source: str, object_type: str, as_of: str | None, as_json: bool) -> None:
    """Queue every record of a CRM export (CSV, JSON array or NDJSON) as an upsert event.

    Records go through the normal pipeline (queue, worker, ordering, retries). Running the same
    import again sends nothing to the platform.
    """
    settings = command_settings()
    mapping = _mapping(source, object_type, export)
    version = _as_of(export, as_of)
    redis = connect(settings.redis_url)
    accept = EventQueue(redis, settings).accept
    with _progress(export, "importing", quiet=as_json) as on_bytes:
        lines = read_export(export, progress=on_bytes)
        summary = _exported(lambda: import_records(map_records(lines, mapping), version, redis, accept))
    if as_json:
        click.echo(
            json.dumps({"source": source, "object": object_type, "as_of": version, **summary.to_json()})
        )
        return
    _print_import(summary)


@click.command("reconcile")
@click.argument("export", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_source_options
@click.option(
    "--apply", is_flag=True, help="Queue the plan's changes (without it: a dry run, nothing is sent)."
)
@click.option("--delete-missing", is_flag=True, help="Delete platform customers the export does not have.")
@click.option(
    "--max-deletes",
    type=click.IntRange(min=0),
    default=None,
    help="Refuse a plan deleting more [default: 10% of those with an external id].",
)
@click.option("--check", is_flag=True, help="Exit with status 1 when the run found drift (for cron alerts).")
@click.option("--history", is_flag=True, help="List the kept reports of earlier runs instead.")
def reconcile_command(
    export: Path | None,
    source: str,
    object_type: str,
    as_of: str | None,
    as_json: bool,
    apply: bool,
    delete_missing: bool,
    max_deletes: int | None,
    check: bool,
    history: bool,
) -> None:
    """Compare a CRM export with every platform customer; plan (and with --apply, queue) the
    creates, updates and deletes that make the platform match it.

    Exit status: 0 success (drift or not), 1 drift found with --check, 2 a usage or
    settings error or an unreadable export (with --check, one whose every record was
    skipped), 3 refused (too many deletions, or deletions with unreadable lines: nothing
    applied), 4 the platform could not be listed.
    """
    settings = command_settings()
    reports = ReconcileReports(connect(settings.redis_url), settings.reconcile_report_retention_days)
    if history:
        _print_history(reports.recent(), as_json)
        return
    if export is None:
        raise click.UsageError("give the export FILE to reconcile (or --history)")
    if settings.customers_api is None:
        click.echo(
            "crmsync: configuration error: reconcile needs CUSTOMERS_API_URL and CUSTOMERS_API_TOKEN",
            err=True,
        )
        sys.exit(2)
    run = ReconcileRun(
        export=export,
        mapping=_mapping(source, object_type, export),
        as_of=_as_of(export, as_of),
        object=object_type,
        apply=apply,
        delete_missing=delete_missing,
        max_deletes=max_deletes,
    )
    redis = connect(settings.redis_url)
    accept = EventQueue(redis, settings).accept
    api = PlatformApi("customers", settings.customers_api, settings.api_timeout_seconds)
    ids = IdCache(redis, enabled=settings.id_cache)
    try:
        with _listing_progress(quiet=as_json) as on_page:
            report = _exported(lambda: reconcile(run, api, accept, reports, on_page, ids))
    except ListingFailed as exc:
        click.echo(f"crmsync: {exc}; nothing was planned or applied", err=True)
        sys.exit(EXIT_FAILED)
    finally:
        api.close()
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        _print_report(report)
    if report.refused:
        sys.exit(EXIT_REFUSED)
    if check and _nothing_compared(report):
        # No drift found in an export none of whose records could be read is no all-clear.
        click.echo(f"crmsync: cannot read the export: all {report.counts['skipped']} records were skipped; "
                   "nothing was compared", err=True)  # fmt: skip
        sys.exit(2)
    if check and report.drift:
        sys.exit(EXIT_DRIFT)


def _nothing_compared(report: ReconcileReport) -> bool:
    """Whether every record of the export was skipped (and there was at least one)."""
    counts = report.counts
    return counts["skipped"] > 0 and not any(counts[kind] for kind in ("create", "update", "unchanged"))


def _mapping(source: str, object_type: str, export: Path) -> ExportMapping:
    """The source's mapping, once the export's CSV header (if any) fits it: a wrong or misspelled
    column stops the command before anything is listed or queued, rather than skipping every row."""
    try:
        mapping = mapping_for(source, object_type)
    except MappingUnavailable as exc:
        raise click.UsageError(str(exc)) from None
    columns = csv_header(export)
    if columns is not None:
        _exported(lambda: mapping.check_columns(columns))
    return mapping


def _as_of(export: Path, given: str | None) -> str:
    """The version of records without one: --as-of, else when the export file was last written.

    Never in the future: the ledger would then call every webhook until that time stale, so a typo
    in the year (or a file copied with a bad clock) would silently stop the sync of those customers.
    """
    if given is None:
        moment = datetime.fromtimestamp(export.stat().st_mtime, UTC)
        if moment > datetime.now(UTC) + CLOCK_SKEW:
            raise click.UsageError(
                f"{export.name} was modified in the future ({moment:%Y-%m-%d %H:%M} UTC): give --as-of"
            )
        return utc_timestamp(moment)
    try:
        version = parse_time(given, "--as-of")
    except ValueError as exc:
        raise click.BadParameter(f"{exc}; e.g. 2026-11-20T09:30:00Z", param_hint="--as-of") from None
    if datetime.fromisoformat(version) > datetime.now(UTC) + CLOCK_SKEW:
        raise click.BadParameter(
            "must not be in the future: newer webhooks would be ignored", param_hint="--as-of"
        )
    return version


def _exported(work: Callable[[], T]) -> T:
    """Run `work`, turning an export that cannot be read at all into a one-line error."""
    try:
        return work()
    except ExportError as exc:
        click.echo(f"crmsync: cannot read the export: {exc}", err=True)
        sys.exit(2)


@contextmanager
def _progress(export: Path, label: str, quiet: bool) -> Iterator[Callable[[int], object]]:
    """A progress bar over the export's bytes on a terminal (stderr); nothing when not a terminal."""
    with tqdm(
        total=export.stat().st_size,
        desc=label,
        unit="B",
        unit_scale=True,
        leave=False,
        disable=True if quiet else None,
        file=sys.stderr,
    ) as bar:
        yield bar.update


@contextmanager
def _listing_progress(quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A progress bar over the platform's customers, its total set from the first page."""
    with tqdm(
        desc="listing the platform",
        unit=" customers",
        leave=False,
        disable=True if quiet else None,
        file=sys.stderr,
    ) as bar:

        def on_page(size: int, total: int) -> None:
            if total and bar.total != total:
                bar.total = total
            bar.update(size)

        yield on_page


def _print_import(summary: ImportSummary) -> None:
    click.echo(
        f"{summary.read} records read: {summary.queued} queued, {summary.up_to_date} already up to date, "
        f"{summary.already_queued} already queued, {summary.skipped.count} skipped"
    )
    for skipped in summary.skipped.kept[:SHOWN_PER_KIND]:
        click.echo(f"  skipped line {skipped.line}: {printable(skipped.reason)}")
    if summary.skipped.count > SHOWN_PER_KIND:
        click.echo(
            f"  ... and {summary.skipped.count - SHOWN_PER_KIND} more skipped (--json lists up to 1,000)"
        )


def _print_report(report: ReconcileReport) -> None:
    counts = report.counts
    click.echo(
        f"platform: {counts['platform_customers']} customers in {report.pages} page(s), "
        f"{counts['without_external_id']} without an external id (never touched)"
    )
    plan = ", ".join(f"{kind} {counts[kind]}" for kind in (*KINDS, "unchanged", "skipped"))
    click.echo(f"plan: {plan}")
    for kind in KINDS:
        ids = report.external_ids[kind]
        shown = [
            printable(f"{i} ({', '.join(report.updated_fields[i])})" if kind == "update" else i) for i in ids
        ]
        more = (
            f" ... and {len(ids) - SHOWN_PER_KIND} more (--json lists them all)"
            if len(ids) > SHOWN_PER_KIND
            else ""
        )
        if ids:
            click.echo(f"  {kind}: {' '.join(shown[:SHOWN_PER_KIND])}{more}")
    if counts["not_in_export"]:
        click.echo(
            f"  {counts['not_in_export']} platform customer(s) not in the export (--delete-missing: delete)"
        )
    for skipped in report.skipped_records[:SHOWN_PER_KIND]:
        click.echo(f"  skipped line {skipped['line']}: {printable(skipped['reason'])}")
    if counts["skipped"] > SHOWN_PER_KIND:
        click.echo(f"  ... and {counts['skipped'] - SHOWN_PER_KIND} more skipped (--json lists up to 1,000)")
    if report.refused:
        click.echo(click.style(f"REFUSED: {report.refused}; nothing was applied", fg="red"), err=True)
    elif report.outcome == "applied":
        click.echo(f"applied: {report.queued} event(s) queued (crmsync failed lists any that fail)")
    else:
        click.echo("dry run: nothing was sent (--apply queues the plan)")
    click.echo(f"report {report.run_id} kept (crmsync reconcile --history)")


def _print_history(reports: list[ReconcileReport], as_json: bool) -> None:
    for report in reports:
        if as_json:
            click.echo(json.dumps(report.to_json()))
            continue
        counts = " ".join(f"{kind}={report.counts.get(kind, 0)}" for kind in (*KINDS, "unchanged", "skipped"))
        what = f"{report.outcome:<8} {report.source:<10} {counts}"
        click.echo(f"{report.started_at}  {report.run_id}  {printable(what)}  {printable(report.export)}")
