"""The `crmsync` command: crmsync's own commands, and nothing else.

A plain click group, not Flask's: Flask's builds the app (and so needs the web's settings) just to
list the commands, and adds its own (`run`, `shell`, `routes`) and options (-e/--env-file, --app).
Each command's module is imported only when that command runs, so that `crmsync --help` (and every
command) starts without importing the others' dependencies: tests/test_cli.py times it.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import click

from crmsync import __version__

# crmsync's commands: name -> (module:attribute, the short help `crmsync --help` shows).
# The help is written here so that listing the commands imports none of them (tests/test_cli.py
# checks that each entry is the command of that name).
LAZY_COMMANDS = {
    "customer": (
        "crmsync.cli.customer:customer_command",
        "Show one customer's ordering ledger and its jobs.",
    ),
    "dev": ("crmsync.cli.dev:dev_command", "Run web, worker, the sandbox API and (without REDIS_URL) Redis."),
    "discard": ("crmsync.cli.failures:discard_command", "Discard failed jobs for good."),
    "erasures": (
        "crmsync.cli.erasures:erasures_command",
        "List GDPR erasures from the audit trail, newest first.",
    ),
    "failed": ("crmsync.cli.failures:failed_command", "List failed jobs, newest failure first."),
    "import": ("crmsync.cli.reconcile:import_command", "Queue every record of a CRM export as an upsert."),
    "mappings": ("crmsync.cli.sources:mappings_command", "The CRM sources' field mappings."),
    "reconcile": ("crmsync.cli.reconcile:reconcile_command", "Find (and repair) drift from a CRM export."),
    "replay": ("crmsync.cli.failures:replay_command", "Replay failed jobs by id, or all matching a filter."),
    "sandbox": ("sandbox.cli:sandbox_command", "Serve local stand-ins for the platform's APIs."),
    "send-sample": (
        "crmsync.cli.send_sample:send_sample_command",
        "Send a signed sample webhook; exit 1 unless it is accepted.",
    ),
    "sources": (
        "crmsync.cli.sources:sources_command",
        "The CRM sources, which are enabled, what they ignored or rejected.",
    ),
    "web": ("crmsync.cli.web:web_command", "Run the web process: gunicorn with crmsync's settings."),
    "worker": ("crmsync.cli.worker:worker_command", "Run a worker dyno: workers that apply queued events."),
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
