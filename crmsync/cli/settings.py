"""The settings a `crmsync` command runs with, read once the command has started."""

from __future__ import annotations

import os
import sys

import click

from crmsync.core.settings import DEFAULT_REDIS_URL, Role, Settings, SettingsError

__all__ = ["command_settings"]


def command_settings(role: Role = "cli") -> Settings:
    """The settings of `role`; a missing or malformed one ends the command with one line naming it
    (exit status 2, as click's usage errors). Without REDIS_URL, one line says which Redis it uses:
    a production shell that lost it would otherwise read and write a local Redis without a word."""
    if not os.environ.get("REDIS_URL", "").strip():
        click.echo(f"crmsync: REDIS_URL is not set: using {DEFAULT_REDIS_URL}", err=True)
    try:
        return Settings.from_env(role=role)
    except SettingsError as exc:
        click.echo(f"crmsync: configuration error: {exc}", err=True)
        sys.exit(2)
