"""The `crmsync` command: Flask's CLI (`crmsync routes`, `crmsync run`, ...) plus crmsync's own."""

from __future__ import annotations

import json
import os
import sys

import click
from flask import Flask
from flask.cli import FlaskGroup, NoAppException

from crmsync.core.logs import configure as configure_logs
from crmsync.core.redis_conn import connect
from crmsync.core.settings import Settings, SettingsError, parse_secrets
from crmsync.web import create_app
from sandbox.cli import sandbox_command

from .dev import dev_command
from .failures_cli import discard_command, failed_command, replay_command


def _create_app() -> Flask:
    # Flask builds the app even to list commands; a missing setting is one clear line, not a traceback.
    try:
        return create_app()
    except SettingsError as exc:
        raise NoAppException(f"the web app needs its settings: {exc}") from None


@click.group(cls=FlaskGroup, create_app=_create_app)
def main() -> None:
    """crmsync: apply a CRM's webhooks to the customer platform."""


@main.command("worker", with_appcontext=False)
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@click.option("--scheduler/--no-scheduler", default=True, help="Also move due retries back to the queue.")
def worker_command(burst: bool, scheduler: bool) -> None:
    """Run a worker that applies queued events to the platform."""
    from jobs.worker import run_worker

    settings = _settings("worker")
    configure_logs(os.environ.get("LOG_LEVEL", "INFO"))
    run_worker(settings, connect(settings.redis_url), burst=burst, with_scheduler=scheduler)


@main.command("send-sample", with_appcontext=False)
@click.argument("url", default="http://127.0.0.1:8000/webhooks/crm")
@click.option("--external-id", default="crm-0001", show_default=True)
@click.option("--name", default="Mars Missions", show_default=True)
def send_sample_command(url: str, external_id: str, name: str) -> None:
    """Send a signed sample `customer.created` webhook (signed with WEBHOOK_SECRET) to URL."""
    from crmsync.sender import sample_event, send_event

    secrets = parse_secrets(os.environ.get("WEBHOOK_SECRET", ""))
    if not secrets:
        raise click.UsageError("set WEBHOOK_SECRET to the secret the service verifies with")
    response = send_event(url, secrets[0], sample_event(external_id, name))
    click.echo(f"HTTP {response.status_code} {json.dumps(response.json())}")


@main.command("erasures", with_appcontext=False)
@click.option("--status", type=click.Choice(["pending", "completed", "failed", "overdue"]))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def erasures_command(status: str | None, as_json: bool) -> None:
    """List GDPR erasures from the audit trail, newest first; overdue and failed ones stand out."""
    from datetime import UTC, datetime

    from crmsync.erasure.audit import list_erasures
    from crmsync.operations.erasures import with_status

    settings = _settings("cli")
    now = datetime.now(UTC)
    records = list_erasures(connect(settings.redis_url), settings.erasure_deadline_days)
    for record in with_status(records, status, now):
        row = record.to_json(now)
        if as_json:
            click.echo(json.dumps(row))
            continue
        verdict = record.status.upper() + (" OVERDUE" if row["overdue"] else "")
        purchases = " ".join(f"{pid}={outcome}" for pid, outcome in row["purchases"].items())
        line = f"{row['received_at']}  {verdict:<17} {record.webhook_id}  {record.external_id}  {purchases}"
        if record.failure:
            line += f"  ({record.failure})"
        needs_action = row["overdue"] or record.status == "failed"
        click.echo(click.style(line, fg="red") if needs_action else line)


def _settings(role: str) -> Settings:
    try:
        return Settings.from_env(role=role)  # type: ignore[arg-type]
    except SettingsError as exc:
        click.echo(f"crmsync: configuration error: {exc}", err=True)
        sys.exit(2)


main.add_command(sandbox_command)
main.add_command(dev_command)
main.add_command(failed_command)
main.add_command(replay_command)
main.add_command(discard_command)
