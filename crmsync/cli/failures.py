"""`crmsync failed | replay | discard`: the dashboard's failed-jobs actions from a shell.

They talk to Redis directly through crmsync.operations (the same code the dashboard runs), so they
work on a one-off dyno (`heroku run crmsync failed`) with nothing but REDIS_URL.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from typing import Any

import click

from crmsync.cli.settings import command_settings
from crmsync.core.display import printable
from crmsync.core.redis_conn import connect
from crmsync.operations import (
    ActionResult,
    FailedJobs,
    FailureFilter,
    MissingReason,
    parse_moment,
)

__all__ = ["failed_command", "replay_command", "discard_command"]


def _moment(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if not value:
        return None
    try:
        return parse_moment(value)
    except ValueError as exc:
        raise click.BadParameter("use a time like 2026-11-22T10:00:00Z or a time ago like 2h") from exc


def filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The failure filter, as the dashboard offers it."""
    for option in reversed(
        [
            click.option("--type", "event_type", help="Event type, e.g. customer.created."),
            click.option("--failure-class", help="e.g. api_rejected, graphql_error, payload_error."),
            click.option("--external-id", help="The CRM's id of the customer."),
            click.option(
                "--since", callback=_moment, help="Last failure at or after: a time or a time ago (2h)."
            ),
            click.option("--until", callback=_moment, help="Last failure at or before."),
        ]
    ):
        command = option(command)
    return command


def _failed_jobs() -> FailedJobs:
    settings = command_settings()
    return FailedJobs(connect(settings.redis_url), settings)


def _operator() -> str:
    return f"cli:{getpass.getuser()}"


def _report(results: list[ActionResult]) -> None:
    for result in results:
        click.echo(f"{printable(result.job_id)}\t{result.status}")
    done = sum(result.status in ("replayed", "discarded") for result in results)
    click.echo(f"{done} of {len(results)} done", err=True)


@click.command("failed")
@filter_options
@click.option("--page", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--per-page", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def failed_command(
    event_type: str | None,
    failure_class: str | None,
    external_id: str | None,
    since: Any,
    until: Any,
    page: int,
    per_page: int,
    as_json: bool,
) -> None:
    """List failed jobs (newest failure first): identifiers and why they failed, no customer data."""
    where = FailureFilter(event_type, failure_class, external_id, since, until)
    found = _failed_jobs().find(where, page=page, per_page=per_page)
    for job in found.items:
        if as_json:
            click.echo(json.dumps(job.to_json()))
            continue
        last = job.last_failed_at.isoformat(timespec="seconds") if job.last_failed_at else "-"
        click.echo(
            f"{printable(job.job_id)}\t{printable(job.type)}\t{printable(job.external_id)}\t"
            f"{job.failure_class}\tattempts={job.attempts}\treplays={job.replays}\t{last}\t"
            f"{printable(job.message)}"
        )
    click.echo(f"page {found.page} of {found.pages}, {found.total} failed job(s)", err=True)


@click.command("replay")
@click.argument("job_ids", nargs=-1)
@click.option("--all-matching", is_flag=True, help="Replay every failed job the filter matches.")
@filter_options
def replay_command(
    job_ids: tuple[str, ...],
    all_matching: bool,
    event_type: str | None,
    failure_class: str | None,
    external_id: str | None,
    since: Any,
    until: Any,
) -> None:
    """Replay failed jobs by id, or --all-matching a filter, each with a fresh retry budget."""
    if bool(job_ids) == all_matching:
        raise click.UsageError("give job ids, or --all-matching (with filter options), not both")
    jobs = _failed_jobs()
    if all_matching:
        where = FailureFilter(event_type, failure_class, external_id, since, until)
        _report(jobs.replay_matching(where, _operator()))
    else:
        _report(jobs.replay(job_ids, _operator()))


@click.command("discard")
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--reason", required=True, help="Why these events are dropped (kept with the record).")
def discard_command(job_ids: tuple[str, ...], reason: str) -> None:
    """Discard failed jobs for good, recording identifiers and the reason."""
    try:
        _report(_failed_jobs().discard(job_ids, reason, _operator()))
    except MissingReason as exc:
        raise click.UsageError(str(exc)) from exc
