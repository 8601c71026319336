"""`crmsync web`: the web process (the Procfile's `web`), gunicorn with crmsync's settings."""

from __future__ import annotations

import os
import sys

import click

from crmsync.core.settings import SettingsError, web_processes

__all__ = ["web_command", "GUNICORN"]

# The app and its server settings (crmsync/server/gunicorn_conf.py); options given to the command go
# between the two.
GUNICORN = ("gunicorn", "--config", "python:crmsync.server.gunicorn_conf")
APP = "crmsync.web:create_app()"


@click.command("web", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("gunicorn_options", nargs=-1, type=click.UNPROCESSED)
def web_command(gunicorn_options: tuple[str, ...]) -> None:
    """Run the web process: gunicorn with crmsync's settings (PORT, WEB_CONCURRENCY, WEB_THREADS and
    the service's own); any GUNICORN_OPTIONS are gunicorn's."""
    # gunicorn reads WEB_CONCURRENCY as it is imported, before any config file: a malformed one
    # ("abc", or set but empty) would end it in a traceback. Checked here, and handed on as read.
    try:
        workers, _ = web_processes(os.environ)
    except SettingsError as exc:
        click.echo(f"crmsync: configuration error: {exc}", err=True)
        sys.exit(2)
    environ = {**os.environ, "WEB_CONCURRENCY": str(workers)}
    # The process becomes gunicorn's master: the platform's signals (SIGTERM) go to it directly.
    os.execve(sys.executable, [sys.executable, "-m", *GUNICORN, *gunicorn_options, APP], environ)
