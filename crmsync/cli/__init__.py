"""The `crmsync` command: crmsync's own commands, and nothing else.

A plain click group, not Flask's: Flask's builds the app (and so needs the web's settings) just to
list the commands, and adds its own (`run`, `shell`, `routes`) and options (-e/--env-file, --app).
Each command's module is imported only when that command runs, so that `crmsync --help` (and every
command) starts without importing the others' dependencies: tests/test_cli.py times it.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import click

from crmsync import __version__
from crmsync.cli.sender import SAMPLE_SOURCES, SAMPLE_TYPES

if TYPE_CHECKING:
    import requests

# The commands of other modules: name -> (module:attribute, the short help `crmsync --help` shows).
# The help is written here so that listing the commands imports none of them (tests/test_cli.py
# checks that each entry is the command of that name).
LAZY_COMMANDS = {
    "customer": (
        "crmsync.cli.customer:customer_command",
        "Show one customer's ordering ledger and its jobs.",
    ),
    "dev": ("crmsync.cli.dev:dev_command", "Run web, worker, the sandbox API and (without REDIS_URL) Redis."),
    "discard": ("crmsync.cli.failures:discard_command", "Discard failed jobs for good."),
    "failed": ("crmsync.cli.failures:failed_command", "List failed jobs, newest failure first."),
    "import": ("crmsync.cli.reconcile:import_command", "Queue every record of a CRM export as an upsert."),
    "mappings": ("crmsync.cli.sources:mappings_command", "The CRM sources' field mappings."),
    "reconcile": ("crmsync.cli.reconcile:reconcile_command", "Find (and repair) drift from a CRM export."),
    "replay": ("crmsync.cli.failures:replay_command", "Replay failed jobs by id, or all matching a filter."),
    "sandbox": ("sandbox.cli:sandbox_command", "Serve local stand-ins for the platform's APIs."),
    "sources": ("crmsync.cli.sources:sources_command", "What the CRM sources ignored or rejected."),
    "web": ("crmsync.cli.web:web_command", "Run the web process: gunicorn with crmsync's settings."),
}


class Commands(click.Group):
    """crmsync's commands, each imported when it runs. A Redis that does not answer ends any of them
    with one line naming it."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in LAZY_COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, attribute = LAZY_COMMANDS[cmd_name][0].split(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if name in LAZY_COMMANDS:
                rows.append((name, LAZY_COMMANDS[name][1]))
            elif not (command := self.commands[name]).hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        from crmsync.core.redis_conn import redact_url
        from crmsync.core.settings import DEFAULT_REDIS_URL

        try:
            return super().invoke(ctx)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            url = redact_url(os.environ.get("REDIS_URL", "").strip() or DEFAULT_REDIS_URL)
            click.echo(f"crmsync: cannot reach Redis at {url}: {_first_line(exc)}", err=True)
            ctx.exit(1)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@click.group(cls=Commands)
@click.version_option(__version__, prog_name="crmsync", message="%(prog)s %(version)s")
def main() -> None:
    """crmsync: apply a CRM's webhooks to the customer platform."""


@main.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@click.option("--scheduler/--no-scheduler", default=True, help="Also move due retries back to the queue.")
def worker_command(burst: bool, scheduler: bool) -> None:
    """Run a worker dyno: WORKER_CONCURRENCY workers that apply queued events to the platform."""
    from crmsync.cli.settings import command_settings
    from crmsync.core.logs import configure as configure_logs
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
    import requests

    from crmsync.cli.sender import SAMPLE_IDS, SAMPLE_NAMES, sample_event, send_event, send_sample
    from crmsync.core.settings import SettingsError, parse_secrets

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
        # Whole, on one line: a Salesforce Ack is a few hundred bytes, and cut short it reads as broken.
        return " ".join(response.text.split())


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"crmsync: {message}", err=True)
    sys.exit(code)


@main.command("erasures")
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
