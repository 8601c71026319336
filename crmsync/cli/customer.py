"""`crmsync customer EXTERNAL_ID`: why the platform shows what it shows for one customer.

The same view as the dashboard's customer page (crmsync/operations/customer.py), straight from
Redis, so it works on a one-off dyno with nothing but REDIS_URL. Identifiers, versions and
outcomes only: never a name, a description or a label. A Salesforce id is looked up in its
18-character form first (the one the Salesforce source keeps), so either form finds the customer.
"""

from __future__ import annotations

import json
import sys

import click

from crmsync.cli.settings import command_settings
from crmsync.core.display import printable
from crmsync.core.redis_conn import connect
from crmsync.core.salesforce_ids import is_salesforce_id, salesforce_id_18
from crmsync.operations.customer import CustomerView, Version, read_customer
from webhooks.mappings import MappingError, mappings_from_env
from webhooks.sources import salesforce

__all__ = ["customer_command"]


@click.command("customer")
@click.argument("external_id")
@click.option("--json", "as_json", is_flag=True, help="The whole view as one JSON object.")
def customer_command(external_id: str, as_json: bool) -> None:
    """Show one customer's ordering ledger and its jobs: versions, webhook ids, outcomes, no values."""
    settings = command_settings()
    redis = connect(settings.redis_url)
    view = read_customer(redis, settings.queue_name, salesforce_form(external_id))
    if not view.known and view.external_id != external_id:
        view = read_customer(redis, settings.queue_name, external_id)
    if as_json:
        click.echo(json.dumps(view.to_json()))
    else:
        _print(view)
    if not view.known:
        click.echo(f"crmsync: nothing is known about customer {external_id!r} (no ledger, no jobs)", err=True)
        sys.exit(1)


def salesforce_form(external_id: str) -> str:
    """The id as the Salesforce source keeps it: a Salesforce id (after a Salesforce mapping's prefix)
    in its 18-character form, so the 15-character one an operator copied from a report finds it."""
    try:
        prefixes = salesforce.KIND.id_prefixes(mappings_from_env().of(salesforce.NAME))
    except MappingError:
        prefixes = {""}
    for prefix in sorted(prefixes, key=len, reverse=True):
        record_id = external_id.removeprefix(prefix)
        if external_id.startswith(prefix) and is_salesforce_id(record_id):
            return prefix + salesforce_id_18(record_id)
    return external_id


def _print(view: CustomerView) -> None:
    click.echo(f"customer {printable(view.external_id)}")
    click.echo("ledger (the version that last wrote each: CRM timestamp, webhook id)")
    for name, version in view.fields.items():
        click.echo(f"  {name:<12} {_version(version)}")
    click.echo(f"  {'deleted':<12} {_version(view.deleted)}")
    click.echo(f"  {'erased':<12} {_version(view.erased)}")
    if view.merged_into:
        click.echo(f"  {'merged into':<12} {view.merged_into} by {_version(view.merged_at)}")
    if view.hold_seconds is not None:
        hold = f"held for {view.hold_seconds:.1f} s more after an unanswered request"
    else:
        hold = "locked by a worker applying an event" if view.locked else "none"
    click.echo(f"  {'hold':<12} {hold}")
    click.echo(f"jobs ({len(view.jobs)}{f', {view.more_jobs} older not shown' if view.more_jobs else ''}),"
               " newest event first")  # fmt: skip
    for job in view.jobs:
        detail = job.outcome or job.failure_class or ""
        if job.scheduled_for:
            detail = f"{detail} retry at {job.scheduled_for}".strip()
        if job.superseded_by_erasure:
            detail = f"{detail} scrubbed by erasure {job.superseded_by_erasure}".strip()
        click.echo(
            f"  {printable(job.job_id)}  {printable(job.type):<26} {printable(job.event_timestamp)}  "
            f"{printable(job.webhook_id)}  {job.status:<9} "
            f"attempts={job.attempts} replays={job.replays}  {printable(detail)}".rstrip()
        )


def _version(version: Version | None) -> str:
    return f"{printable(version.timestamp)}  {printable(version.webhook_id)}" if version else "-"
