"""`crmsync worker`: the worker process (the Procfile's `worker`)."""

from __future__ import annotations

import os

import click

__all__ = ["worker_command"]


@click.command("worker")
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
