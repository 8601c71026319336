"""The `crmsync` command: crmsync's own commands, and Flask's `routes`, `shell` and `run`.

A plain click group, not Flask's: Flask's builds the app (and so needs the web's settings) just to
list the commands, and offers -e/--env-file (python-dotenv) and --app, which crmsync does not use.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click
import requests
from flask import Flask
from flask.cli import NoAppException, ScriptInfo, routes_command, run_command, shell_command
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from crmsync import __version__
from crmsync.cli_settings import command_settings
from crmsync.core.logs import configure as configure_logs
from crmsync.core.redis_conn import connect, redact_url
from crmsync.core.settings import DEFAULT_REDIS_URL, Settings, SettingsError, parse_secrets
from crmsync.sender import SAMPLE_SOURCES, SAMPLE_TYPES
from crmsync.web import create_app
from sandbox.cli import sandbox_command
from webhooks.mappings import MappingError

from .customer_cli import customer_command
from .dev import dev_command
from .failures_cli import discard_command, failed_command, replay_command
from .reconcile_cli import import_command, reconcile_command
from .sources_cli import mappings_command, sources_command


class Commands(click.Group):
    """crmsync's commands. A Redis that does not answer ends any of them with one line naming it."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            url = redact_url(os.environ.get("REDIS_URL", "").strip() or DEFAULT_REDIS_URL)
            click.echo(f"crmsync: cannot reach Redis at {url}: {_first_line(exc)}", err=True)
            ctx.exit(1)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _create_app() -> Flask:
    """The app for Flask's `routes`, `shell` and `run`. Only `run` serves webhooks, so only it needs
    the web's settings: listing the routes works without any."""
    serves = click.get_current_context().command.name == "run"
    try:
        return create_app(Settings.from_env(role="web" if serves else "cli"))
    except (SettingsError, MappingError) as exc:
        raise NoAppException(f"the web app needs its settings: {exc}") from None


@click.group(cls=Commands)
@click.version_option(__version__, prog_name="crmsync", message="%(prog)s %(version)s")
@click.pass_context
def main(ctx: click.Context) -> None:
    """crmsync: apply a CRM's webhooks to the customer platform."""
    # Flask's commands (routes, shell, run) build the app through this, only when they run.
    ctx.obj = ScriptInfo(create_app=_create_app, set_debug_flag=False, load_dotenv_defaults=False)


@main.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@click.option("--scheduler/--no-scheduler", default=True, help="Also move due retries back to the queue.")
def worker_command(burst: bool, scheduler: bool) -> None:
    """Run a worker dyno: WORKER_CONCURRENCY workers that apply queued events to the platform."""
    from jobs.dyno_processes import run_worker_dyno

    settings = command_settings("worker")
    configure_logs(os.environ.get("LOG_LEVEL", "INFO"))
    run_worker_dyno(settings, burst=burst, with_scheduler=scheduler)


@main.command("send-sample")
@click.argument("url", required=False)
@click.option(
    "--source", type=click.Choice(SAMPLE_SOURCES), default="crm", show_default=True,
    help="The format: crmsync's own contract (signed with WEBHOOK_SECRET), or a CRM's own.",
)  # fmt: skip
@click.option(
    "--type", "event_type", type=click.Choice(SAMPLE_TYPES), default=SAMPLE_TYPES[0], show_default=True,
    help="The event type (crmsync's own contract only).",
)  # fmt: skip
@click.option("--external-id", help="The record's id [default: crm-0001; a CRM's sample has its own].")
@click.option("--name", help="The name a created customer gets [default: each source's sample has its own].")
@click.option(
    "--purchase-id", "purchase_ids", type=click.IntRange(min=1), multiple=True,
    help="A purchase to erase (repeatable) [default: the sandbox fixture's purchases].",
)  # fmt: skip
def send_sample_command(
    url: str | None,
    source: str,
    event_type: str,
    external_id: str | None,
    name: str | None,
    purchase_ids: tuple[int, ...],
) -> None:
    """Send a signed sample webhook to URL (default http://127.0.0.1:8000/webhooks/SOURCE); exit 1
    unless it is accepted. Signed with the service's own settings: WEBHOOK_SECRET, or for a CRM
    HUBSPOT_CLIENT_SECRET, SALESFORCE_ORGANIZATION_IDS + SALESFORCE_WEBHOOK_TOKEN,
    PIPEDRIVE_WEBHOOK_USER + PIPEDRIVE_WEBHOOK_PASSWORD."""
    from crmsync.sender import SAMPLE_IDS, SAMPLE_NAMES, sample_event, send_event, send_sample

    url = url or f"http://127.0.0.1:8000/webhooks/{source}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        _fail(f"send-sample needs an http:// or https:// URL, got {url!r}", 2)
    if source != "crm" and (event_type != SAMPLE_TYPES[0] or purchase_ids):
        _fail(
            f"--type and --purchase-id are for --source crm; the {source} sample creates a customer",
            2,
        )
    external_id = external_id or SAMPLE_IDS[source]
    name = name or SAMPLE_NAMES[source]
    try:
        if source == "crm":
            secrets = parse_secrets(os.environ.get("WEBHOOK_SECRET", ""))
            if not secrets:
                _fail("set WEBHOOK_SECRET to the secret the service verifies with", 2)
            response = send_event(url, secrets[0], sample_event(event_type, external_id, name, purchase_ids))
        else:
            response = send_sample(source, url, os.environ, external_id, name)
    except SettingsError as exc:
        _fail(f"configuration error: {exc}", 2)
    except ValueError as exc:
        _fail(str(exc), 2)
    except requests.ConnectionError:
        _fail(f"nothing answers at {url} (is crmsync running? `crmsync dev` starts it)")
    except requests.Timeout:
        _fail(f"{url} did not answer within 10 s")
    except requests.RequestException as exc:
        _fail(f"could not send to {url}: {type(exc).__name__}")
    click.echo(f"HTTP {response.status_code} {_body(response)}")
    if not response.ok:
        sys.exit(1)


def _body(response: requests.Response) -> str:
    try:
        return json.dumps(response.json())
    except ValueError:
        return " ".join(response.text.split())[:200]


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"crmsync: {message}", err=True)
    sys.exit(code)


@main.command("erasures")
@click.option("--status", type=click.Choice(["pending", "completed", "failed", "overdue"]))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def erasures_command(status: str | None, as_json: bool) -> None:
    """List GDPR erasures from the audit trail, newest first; overdue and failed ones stand out."""
    from datetime import UTC, datetime

    from crmsync.core.display import printable
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


main.add_command(routes_command)
main.add_command(shell_command)
main.add_command(run_command)
main.add_command(sandbox_command)
main.add_command(dev_command)
main.add_command(customer_command)
main.add_command(failed_command)
main.add_command(replay_command)
main.add_command(discard_command)
main.add_command(import_command)
main.add_command(reconcile_command)
main.add_command(mappings_command)
main.add_command(sources_command)
