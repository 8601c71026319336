"""`crmsync erasures`: the GDPR erasures' audit trail, for an operator."""

from __future__ import annotations

import json

import click

__all__ = ["erasures_command"]


@click.command("erasures")
@click.option("--status", type=click.Choice(["pending", "completed", "failed", "overdue"]))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def erasures_command(status: str | None, as_json: bool) -> None:
    """List GDPR erasures from the audit trail, newest first; overdue and failed ones stand out."""
    from datetime import UTC, datetime

    from crmsync.cli.settings import command_settings
    from crmsync.core.display import printable
    from crmsync.core.redis_conn import connect
    from crmsync.erasure.audit import list_erasures
    from crmsync.operations.erasures import with_status

    settings = command_settings()
    now = datetime.now(UTC)
    records = list_erasures(connect(settings.redis_url), settings.erasure_deadline_days)
    for record in with_status(records, status, now):
        row = record.to_json(now)
        if as_json:
            click.echo(json.dumps(row))
            continue
        verdict = record.status.upper() + (" OVERDUE" if row["overdue"] else "")
        purchases = " ".join(f"{pid}={outcome}" for pid, outcome in row["purchases"].items())
        ids = f"{printable(record.webhook_id)}  {printable(record.external_id)}"
        line = f"{row['received_at']}  {verdict:<17} {ids}  {purchases}"
        if record.failure:
            line += f"  ({printable(record.failure)})"
        needs_action = row["overdue"] or record.status == "failed"
        click.echo(click.style(line, fg="red") if needs_action else line)
