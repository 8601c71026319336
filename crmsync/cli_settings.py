"""The settings a `crmsync` command runs with, read once the command has started."""

from __future__ import annotations

import sys

import click

from crmsync.core.settings import Role, Settings, SettingsError

__all__ = ["command_settings"]


def command_settings(role: Role = "cli") -> Settings:
    """The settings of `role`; a missing or malformed one ends the command with one line naming it
    (exit status 2, as click's usage errors)."""
    try:
        return Settings.from_env(role=role)
    except SettingsError as exc:
        click.echo(f"crmsync: configuration error: {exc}", err=True)
        sys.exit(2)
